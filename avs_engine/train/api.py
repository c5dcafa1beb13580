"""What avs-train does, as one library call (the CLI only parses)."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import resolve
from ..data import open_split
from ..errors import ConfigError
from .loop import TrainResult, resolve_device, train
from .recipe import TrainConfig, load_preset_file


def run_training(*, preset_file=None, config=None, generated=False, data_root=None, subset="s4", log_mel="wav", cache_dir=None,
                 init_weights=None, vggish=None, resume=None, device="cpu", project=Path("runs"), name="train",
                 out_dir=None, progress=True, overrides=None, log=print, check_memory=True) -> TrainResult:
    if preset_file is not None:
        model_cfg, recipe = load_preset_file(preset_file)
    elif config is not None:
        model_cfg, recipe = resolve(config), TrainConfig()
    else:
        raise ConfigError("no model: pass --config PRESET, a JSON config or a preset file")
    recipe = recipe.replace(**(overrides or {}))
    resolve_device(device)  # before any data is prepared
    if recipe.threads:
        import torch

        torch.set_num_threads(recipe.threads)
    if generated and data_root is not None:
        raise ConfigError("--generated and --data are exclusive")
    S, T = model_cfg.encoder.img_size, 5
    train_split = open_split("train", S, generated=recipe.generated_train if generated else 0, root=data_root,
                             subset=subset, cache_dir=cache_dir, T=T, progress=progress, log_mel=log_mel)
    val_split = open_split("val", S, generated=recipe.generated_val if generated else 0, root=data_root,
                           subset=subset, cache_dir=cache_dir, T=T, progress=progress, log_mel=log_mel)

    audio_sd = None
    if recipe.audio_pretrain_steps and vggish is None and init_weights is None:
        if not generated:
            raise ConfigError("audio_pretrain_steps needs generated data (it learns which generated kinds sound)")
        from .audio_pretrain import pretrain_audio

        audio_sd = pretrain_audio(model_cfg.audio, train_split, recipe.audio_pretrain_steps,
                                  recipe.audio_pretrain_batch, seed=recipe.seed, log=log, device=resolve_device(device))

    init = None
    if audio_sd is not None:
        def init(model):
            model.audio_backbone.load_state_dict(audio_sd, strict=True)
    elif init_weights is not None or vggish is not None:
        def init(model):
            from ..reference.checkpoint import is_bundle, load_checkpoint

            if init_weights is not None:
                rep = load_checkpoint(model, init_weights, vggish=vggish, allow_missing_fusion=not is_bundle(init_weights),
                                      allow_missing_audio=vggish is None)
            else:
                from ..reference.checkpoint import read_state_dict

                sd, _ = read_state_dict(vggish)
                model.audio_backbone.load_state_dict(sd, strict=True)
                return
            for line in rep.lines():
                log(line)

    if out_dir is None:
        if resume is not None:
            out_dir = Path(resume).parent
        else:
            from ..runtime.outputs import next_run_dir

            out_dir = next_run_dir(project, name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run.json").write_text(json.dumps({
        "model": model_cfg.to_dict(), "train": recipe.to_dict(), "generated": bool(generated),
        "data": str(data_root) if data_root else None, "subset": subset, "init": str(init_weights) if init_weights else None,
    }, indent=2))
    return train(model_cfg, recipe, train_split, val_split, out_dir, device=device, init=init, resume=resume,
                 progress=progress, log=log, check_memory=check_memory)
