"""The ONNX Runtime backend: same masks as the torch backend, torch-free, clear errors."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import avs_engine
from avs_engine.backends import available_backends, create_runner
from avs_engine.errors import BackendError, ShapeError
from avs_engine.checks.onnx_parity import random_clip, rel_l2
from avs_engine.artifacts.spec import STAGE_ORDER
from tests.export import helpers

REPO = Path(avs_engine.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ort_runner(tiny_engine):
    with create_runner("onnxruntime", engine_dir=tiny_engine) as r:
        yield r


def test_available_and_described(ort_runner):
    assert available_backends()["onnxruntime"] == "ok"
    assert ort_runner.precision_used == "fp32"  # CPU default
    assert "CPUExecutionProvider fp32" in ort_runner.description
    assert ort_runner.config.name == "tiny"


def test_same_masks_as_the_torch_backend(ort_runner, tiny_bundle):
    clip = random_clip(ort_runner.config, T=5, seed=3)
    with create_runner("torch", weights=tiny_bundle) as torch_runner:
        ref = torch_runner.run_clip(clip["image"], clip["log_mel"])
    got = ort_runner.run_clip(clip["image"], clip["log_mel"])
    assert rel_l2(got, ref) <= 1e-5
    np.testing.assert_array_equal(got > 0, ref > 0)


def test_stage_by_stage_equals_bound_chain(ort_runner):
    """run() (plain session.run) and run_clip() (I/O binding, OrtValues between stages) agree."""
    clip = random_clip(ort_runner.config, T=2, seed=4)
    a128 = ort_runner.run("audio", {"log_mel": clip["log_mel"]})["a128"]
    enc = ort_runner.run("image_encoder", {"image": clip["image"], "a128": a128})["enc"]
    fused = ort_runner.run("fusion", {"enc": enc, "a128": a128})
    logits = ort_runner.run("mask_decoder", {"enc": enc, **fused})["logits"]
    np.testing.assert_array_equal(ort_runner.run_clip(clip["image"], clip["log_mel"]), logits)


def test_bad_shapes_and_use_before_activate(tiny_engine, ort_runner):
    clip = random_clip(ort_runner.config, T=2, seed=0)
    with pytest.raises(ShapeError, match="log_mel"):
        ort_runner.run("audio", {"log_mel": clip["log_mel"][:, :, :50]})
    with pytest.raises(ShapeError, match="image"):
        ort_runner.run_clip(clip["image"][:, :, :64], clip["log_mel"])
    with pytest.raises(AssertionError, match="before activate"):
        create_runner("onnxruntime", engine_dir=tiny_engine).run_clip(clip["image"], clip["log_mel"])


def test_provider_and_precision_errors(tiny_engine):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendError, match="does not offer CUDAExecutionProvider"):
            create_runner("onnxruntime", engine_dir=tiny_engine, providers="cuda").activate()
    with pytest.raises(BackendError, match="precision"):
        create_runner("onnxruntime", engine_dir=tiny_engine, precision="int4")
    with pytest.raises(BackendError, match="no int8 graphs"):  # fp32 + fp16 exported here
        create_runner("onnxruntime", engine_dir=tiny_engine, precision="int8").activate()


def test_engine_path_imports_no_torch(tiny_engine):
    """A user with numpy + onnxruntime only: import the backend, run a whole clip, no torch."""
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import avs_engine.artifacts.spec
        from avs_engine.backends import create_runner
        from avs_engine.backends.onnxruntime_backend import OnnxRuntimeRunner
        r = OnnxRuntimeRunner({str(tiny_engine)!r}, precision="fp16").activate()
        rng = np.random.default_rng(0)
        logits = r.run_clip(rng.standard_normal((3, 3, 128, 128), dtype=np.float32),
                            rng.standard_normal((3, 1, 96, 64), dtype=np.float32))
        assert logits.shape == (3, 1, 64, 64), logits.shape
        out = r.run("{STAGE_ORDER[0]}", {{"log_mel": np.zeros((1, 1, 96, 64), np.float32)}})
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "segment_anything", "onnx"))
        assert not bad, bad
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_encoder_batch_chunks_give_the_same_result(tiny_engine):
    """Frames are independent: the encoder run 1, 2 or all frames at a time agrees."""
    clip = random_clip(helpers.tiny_model().config, T=5, seed=5)
    outs = {}
    for b in (1, 2, 8):
        with create_runner("onnxruntime", engine_dir=tiny_engine, encoder_batch=b) as r:
            outs[b] = (r.run("image_encoder", {"image": clip["image"], "a128": np.ones((5, 128), np.float32)})["enc"],
                       r.run_clip(clip["image"], clip["log_mel"]))
    for b in (1, 2):
        for got, want in zip(outs[b], outs[8]):
            assert rel_l2(got, want) < 1e-6


def test_cpu_encoder_batch_by_memory():
    from avs_engine.backends.onnxruntime_backend import cpu_encoder_batch
    from avs_engine.config import from_name

    assert cpu_encoder_batch(from_name("vit_b")) == cpu_encoder_batch(from_name("vit_h")) == 1  # GBs per frame
    assert cpu_encoder_batch(from_name("tiny")) >= 64  # a few MB per frame: a whole clip per call


def test_cpu_sessions_plan_memory_without_the_memory_pattern(ort_runner):
    """The memory pattern and planned buffer reuse kept the encoder's intermediates alive (docs/graphs.md):
    every CPU session runs without both."""
    for stage, sess in ort_runner.sessions.items():
        opts = sess.get_session_options()
        assert opts.enable_mem_pattern is False, stage
        assert opts.enable_mem_reuse is False, stage
        assert opts.enable_cpu_mem_arena is True, stage
