"""An ablation bundle runs, exports and is scored as the variant it was trained as: the variant is in the config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avs_engine.backends import create_runner
from avs_engine.checks.compare import random_clip, rel_l2
from avs_engine.config import ModelConfig, from_name
from avs_engine.errors import ConfigError
from avs_engine.reference import build_model, load_bundle, save_bundle
from avs_engine.reference.variants import apply_variant, variant_of


def _logits(model, clip):
    with torch.inference_mode():
        return model(torch.from_numpy(clip["image"]), torch.from_numpy(clip["log_mel"])).numpy()


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    model = apply_variant(build_model("tiny", seed=3), "no_temporal")
    path = save_bundle(model, tmp_path_factory.mktemp("variant") / "no_temporal.safetensors")
    return model, path


def test_config_validates_the_variant():
    with pytest.raises(ConfigError, match="fusion.variant"):
        ModelConfig.from_dict({"base": "tiny", "fusion": {"variant": "no_fusion"}})
    assert ModelConfig.from_dict({"base": "tiny", "fusion": {"variant": "no_audio_update"}}).fusion.variant == "no_audio_update"


def test_bundle_loads_as_its_variant(ablation):
    model, path = ablation
    loaded, _ = load_bundle(path)
    assert loaded.config.fusion.variant == "no_temporal" and variant_of(loaded) == "no_temporal"
    clip = random_clip(model.config, T=3, seed=1)
    np.testing.assert_array_equal(_logits(loaded, clip), _logits(model, clip))
    full, _ = load_bundle(path)
    apply_variant(full, "full")
    assert rel_l2(_logits(full, clip), _logits(model, clip)) > 1e-3  # the variant really computes something else


def test_torch_runner_on_the_bundle_runs_the_variant(ablation):
    model, path = ablation
    clip = random_clip(model.config, T=2, seed=2)
    with create_runner("torch", weights=path) as runner:
        assert runner.config.fusion.variant == "no_temporal"
        got = runner.run_clip(clip["image"], clip["log_mel"])
    np.testing.assert_allclose(got, _logits(model, clip), rtol=1e-5, atol=1e-5)


def test_bundle_from_before_the_config_field_keeps_its_variant(tmp_path):
    """Older bundles stored the variant next to the config only (metadata ``fusion_variant``)."""
    model = apply_variant(build_model("tiny", seed=4), "no_audio_update")
    cfg = json.loads(model.config.to_json())
    del cfg["fusion"]["variant"]
    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"format": "avs-engine-bundle/1", "config": json.dumps(cfg), "fusion_variant": "no_audio_update"})
    loaded, _ = load_bundle(path)
    assert variant_of(loaded) == "no_audio_update" and loaded.config.fusion.variant == "no_audio_update"


def test_export_of_an_ablation_computes_the_ablation(ablation, tmp_path):
    """The fusion graph (the one stage a variant changes) exported from an ablation computes the ablation."""
    ort = pytest.importorskip("onnxruntime")
    from avs_engine.artifacts.spec import STAGES
    from avs_engine.export.onnx_export import export_graph
    from avs_engine.export.wrappers import graph_modules

    model, _ = ablation
    path = export_graph(graph_modules(model)["fusion"], STAGES["fusion"], model.config, tmp_path / "fusion.onnx")[0]
    rng = np.random.default_rng(5)
    g = model.config.grid
    enc = rng.standard_normal((3, model.config.fusion.dim, g, g), dtype=np.float32)
    a128 = rng.standard_normal((3, model.config.audio.embed_dim), dtype=np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"enc": enc, "a128": a128})
    with torch.inference_mode():
        want = [t.numpy() for t in model.fuse(torch.from_numpy(enc), torch.from_numpy(a128))]
        full = [t.numpy() for t in apply_variant(build_model("tiny", seed=3), "full").fuse(torch.from_numpy(enc), torch.from_numpy(a128))]
    for name, g_, w, f in zip(STAGES["fusion"].output_names, got, want, full):
        assert rel_l2(g_, w) < 1e-5, name
    assert rel_l2(got[0], full[0]) > 1e-3  # and not the full model's fusion


def test_presets_are_the_full_model():
    assert from_name("vit_h").fusion.variant == "full"
