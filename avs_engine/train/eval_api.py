"""What avs-eval does, as one library call: score an activated runner on a split."""

from __future__ import annotations

import time

from ..data import open_split
from .evaluate import evaluate_split, runner_predictor


def run_eval(runner, *, model: dict | None = None, generated=0, data_root=None, log_mel="wav", subset="s4", split="test",
             cache_dir=None, limit=None, progress=True) -> dict:
    """AVSBench metrics of ``runner`` (any backend, activated here if it is not; built by
    the model spec of the deployment backends) on ``generated`` held-out generated clips,
    or on the AVSBench ``subset``/``split`` under ``data_root``. ``model``: what the spec says about the
    model (the spec's ``describe``), kept in the result."""
    runner.activate()
    cfg = runner.config
    variant = cfg.fusion.variant
    data = open_split(split if not generated else "test", cfg.encoder.img_size, generated=generated, root=data_root,
                      subset=subset, cache_dir=cache_dir, progress=progress, log_mel=log_mel)
    t0 = time.perf_counter()
    res = evaluate_split(data, runner_predictor(runner), progress=progress, limit=limit)
    elapsed = time.perf_counter() - t0
    source = (f"{generated} generated test clips (held-out seed range)" if generated
              else f"AVSBench {subset} {split} at {data_root}")
    model = dict(model or {"summary": f"{cfg.name} ({runner.description})", "preset": cfg.name, "backend": runner.name})
    if variant and f"fusion {variant}" not in model["summary"]:
        model["summary"] = model["summary"].replace(f"({runner.description})", f"({runner.description}, fusion {variant})", 1)
    model.update(fusion_variant=variant, config=cfg.to_dict())
    return {
        "model": model,
        "data": source,
        "metrics": {"all": res["all"], "burst": res["burst"]},
        "per_video": res["per_video"],
        "elapsed_s": round(elapsed, 2),
        "definition": "AVSBench (docs/metrics.md): IoU of sigmoid>0.5 (empty GT: background fraction), F beta^2=0.3 max over 255 thresholds, 224x224",
    }
