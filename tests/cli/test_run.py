"""avs-run end to end on generated videos with a tiny random-weight bundle."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from avs_engine.cli.run import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_writes_every_output(tmp_path, tiny_bundle, sample_video):
    project = tmp_path / "runs"
    r = invoke(sample_video, "--weights", tiny_bundle, "--project", project, "--quiet")
    assert r.exit_code == 0, r.output
    assert "Results saved to" in r.stdout
    out = project / "run" / "clip"
    masks = sorted((out / "masks").iterdir())
    # 6.5 s at 25 fps: seconds 0..5 have a sampled frame
    assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(1, 7)]
    for m in masks:
        img = np.asarray(Image.open(m))
        assert img.shape == (96, 160) and set(np.unique(img)) <= {0, 255}
    doc = json.loads((out / "result.json").read_text())
    assert [s["second"] for s in doc["seconds"]] == list(range(6))
    assert doc["model"]["preset"] == "tiny" and len(doc["model"]["weights_sha256"]) == 64
    for s in doc["seconds"]:
        assert 0.0 <= s["area_fraction"] <= 1.0
        # the mask file and the JSON agree
        mask = np.asarray(Image.open(out / "masks" / f"{s['second'] + 1:06d}.png")) > 0
        assert abs(mask.mean() - s["area_fraction"]) < 1e-6
        if s["bbox"] is not None:
            x0, y0, x1, y1 = s["bbox"]
            ys, xs = np.nonzero(mask)
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # half-open
    stages = doc["timings"]["stages"]
    for k in ("decode", "audio", "image_encoder", "fusion", "mask_decoder", "postprocess", "write"):
        assert stages[k]["total_s"] >= 0
    with av.open(str(out / "overlay.mp4")) as c:
        assert c.streams.video[0].width == 160 and c.streams.video[0].height == 96
        assert len(c.streams.audio) == 1
        n = sum(1 for _ in c.decode(video=0))
    assert abs(n - 162) <= 2  # 6.5 s x 25 fps
    assert not list((project / "run").glob(".*"))  # no staging leftovers

    # a second run never overwrites the first
    r2 = invoke(sample_video, "--weights", tiny_bundle, "--project", project, "--quiet", "--no-overlay")
    assert r2.exit_code == 0, r2.output
    assert (project / "run2" / "clip" / "masks" / "000006.png").exists()
    assert not (project / "run2" / "clip" / "overlay.mp4").exists()


def test_run_matches_reference_model(tmp_path, tiny_bundle, sample_video):
    """The masks avs-run writes are the reference model's on the same preprocessed clip."""
    import torch

    from avs_engine.io.clips import iter_clips
    from avs_engine.io.postprocess import logits_to_masks
    from avs_engine.io.preprocess import prepare_frames
    from avs_engine.reference import load_bundle

    r = invoke(sample_video, "--weights", tiny_bundle, "--project", tmp_path, "--quiet", "--no-overlay")
    assert r.exit_code == 0, r.output
    model, _ = load_bundle(tiny_bundle)
    clip = next(iter_clips(str(sample_video), 5))
    with torch.no_grad():
        logits = model(torch.from_numpy(prepare_frames(clip.frames, 128)), torch.from_numpy(clip.log_mel)).numpy()
    masks = logits_to_masks(logits, (96, 160), mid=128)
    for i in range(5):
        written = np.asarray(Image.open(tmp_path / "run" / "clip" / "masks" / f"{i + 1:06d}.png")) > 0
        assert (written == masks[i]).mean() > 0.999


def test_json_output(tmp_path, tiny_bundle, sample_video):
    r = invoke(sample_video, "--weights", tiny_bundle, "--project", tmp_path, "--json", "--no-overlay")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["videos"][0]["clip_seconds"] == 5 and len(doc["videos"][0]["seconds"]) == 6


def test_short_video_runs_with_its_length(tmp_path, tiny_bundle):
    from tests.media_factory import make_video

    v = tmp_path / "short.mp4"
    make_video(v, seconds=3.1, fps=25, size=(64, 48))
    r = invoke(v, "--weights", tiny_bundle, "--project", tmp_path / "runs", "--quiet", "--no-overlay")
    assert r.exit_code == 0, r.output
    assert "shorter than the 5 s window" in r.stderr
    doc = json.loads((tmp_path / "runs" / "run" / "short" / "result.json").read_text())
    assert doc["clip_seconds"] == 3 and len(doc["seconds"]) == 3


def test_bad_inputs_one_line_each_and_batch_goes_on(tmp_path, tiny_bundle, sample_video, silent_video):
    from tests.media_factory import make_garbage_file

    garbage = tmp_path / "garbage.mp4"
    make_garbage_file(garbage)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.mp4"
    project = tmp_path / "runs"
    r = invoke(missing, garbage, empty, silent_video, sample_video, "--weights", tiny_bundle, "--project", project, "--quiet", "--no-overlay")
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4
    for name, line in zip(("missing.mp4", "garbage.mp4", "empty.mp4", "silent.mp4"), errors):
        assert name in line
    assert "--allow-silent" in errors[3]
    # the good video still ran; failed ones left nothing behind
    assert sorted(p.name for p in (project / "run").iterdir()) == ["clip"]


def test_allow_silent(tmp_path, tiny_bundle, silent_video):
    r = invoke(silent_video, "--weights", tiny_bundle, "--project", tmp_path, "--quiet", "--allow-silent")
    assert r.exit_code == 0, r.output
    assert "silence" in r.stderr
    doc = json.loads((tmp_path / "run" / "silent" / "result.json").read_text())
    assert doc["silent_audio"] is True and len(doc["seconds"]) == 3
    with av.open(str(tmp_path / "run" / "silent" / "overlay.mp4")) as c:
        assert len(c.streams.audio) == 0


def test_weights_required_and_checked(tmp_path, sample_video, tiny_bundle):
    r = invoke(sample_video, "--project", tmp_path, "--config", "vit_b")
    assert r.exit_code == 2 and "--weights" in r.stderr
    # an authors'-layout checkpoint of the tiny model does not fit vit_b
    from avs_engine.reference import build_model, save_authors_checkpoint

    ck = tmp_path / "tiny_authors.pth"
    save_authors_checkpoint(build_model("tiny", seed=1), ck)
    r = invoke(sample_video, "--weights", ck, "--config", "vit_b", "--project", tmp_path)
    assert r.exit_code == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "tiny_authors.pth" in r.stderr and "vit_b" in r.stderr
    r = invoke(sample_video, "--weights", ck, "--project", tmp_path)
    assert r.exit_code == 2 and "--config" in r.stderr


def test_unusable_device_is_one_line(tmp_path, tiny_bundle, sample_video):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = invoke(sample_video, "--weights", tiny_bundle, "--device", "cuda", "--project", tmp_path)
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and "CUDA is not available" in r.stderr
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_masks_mostly_agree(tmp_path, tiny_bundle, sample_video, dtype):
    ref = invoke(sample_video, "--weights", tiny_bundle, "--project", tmp_path / "a", "--quiet", "--no-overlay")
    low = invoke(sample_video, "--weights", tiny_bundle, "--project", tmp_path / "b", "--quiet", "--no-overlay", "--dtype", dtype)
    assert ref.exit_code == 0 and low.exit_code == 0, low.output
    for i in range(1, 7):
        a = np.asarray(Image.open(tmp_path / "a" / "run" / "clip" / "masks" / f"{i:06d}.png")) > 0
        b = np.asarray(Image.open(tmp_path / "b" / "run" / "clip" / "masks" / f"{i:06d}.png")) > 0
        iou = (a & b).sum() / max((a | b).sum(), 1)
        assert iou > 0.8, (dtype, i, iou)


def test_fused_block_gives_the_same_masks(tmp_path, tiny_bundle, sample_video):
    ref = invoke(sample_video, "--weights", tiny_bundle, "--project", tmp_path / "a", "--quiet", "--no-overlay")
    fused = invoke(sample_video, "--weights", tiny_bundle, "--project", tmp_path / "b", "--quiet", "--no-overlay", "--fused")
    assert ref.exit_code == 0 and fused.exit_code == 0, fused.output
    for i in range(1, 7):
        a = np.asarray(Image.open(tmp_path / "a" / "run" / "clip" / "masks" / f"{i:06d}.png"))
        b = np.asarray(Image.open(tmp_path / "b" / "run" / "clip" / "masks" / f"{i:06d}.png"))
        assert (a == b).mean() > 0.999


def test_bundled_demo_model_is_the_default(tmp_path, sample_video):
    r = invoke(sample_video, "--project", tmp_path, "--quiet", "--no-overlay", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["model"]["bundled_demo"] is True and doc["model"]["preset"] == "demo"
    r = invoke(sample_video, "--project", tmp_path, "--quiet", "--no-overlay")
    assert "bundled demo model" in r.stderr
