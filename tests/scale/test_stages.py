"""The batch job's steps without Ray: batched clips give run_clip's logits; decode -> actor -> writer gives avs-run's
masks; a bad video becomes a failed row with a one-line reason, never an exception."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avs_engine.runtime import ClipSource, ModelStep, rle
from avs_engine.scale.stages import InferenceActor, decode_video, write_video

from .conftest import GOOD


def _batch(rows):
    """Rows -> the numpy batch Ray Data hands an actor (object columns for ragged arrays)."""
    out = {}
    for k in rows[0]:
        vals = [r[k] for r in rows]
        if isinstance(vals[0], np.ndarray):
            col = np.empty(len(vals), object)
            for i, v in enumerate(vals):
                col[i] = v
            out[k] = col
        else:
            out[k] = np.array(vals)
    return out


def test_run_clips_gives_run_clip_logits_bit_for_bit(scale_videos, demo_runner):
    model = ModelStep(demo_runner)
    source = ClipSource(model.img_size)
    clips = []
    for name in ("gen00", "gen01", "gen04"):  # T = 2, 3 and 5: clips of different lengths in one batch
        result = source.open(scale_videos[name])
        clips += [(c.frames, c.log_mel) for c in source.clips(result)]
    ref = [model.logits(f, m) for f, m in clips]
    for max_frames in (0, 3, 7, 64):
        timings = {}
        got = model.run_clips(clips, max_frames, timings)
        assert all(np.array_equal(a, b) for a, b in zip(ref, got)), max_frames
        assert {"audio", "image_encoder", "fusion", "mask_decoder"} <= set(timings)


def test_decode_actor_writer_without_ray_match_avs_run(scale_videos, demo_spec, avs_run_masks, tmp_path):
    names = ["gen00", "gen03", "gen04", "truncated", "no_audio"]
    rows = [decode_video({"video_id": n, "source": str(scale_videos[n])}, img_size=128) for n in names]
    assert [r["ok"] for r in rows] == [True, True, True, False, False]
    assert "not a readable media file" in rows[3]["error"] and "no audio track" in rows[4]["error"]
    assert all(str(scale_videos[n]) not in r["error"] and "\n" not in r["error"] for n, r in zip(names, rows))
    assert rows[2]["frames"].shape == (2, 5, 224, 224, 3) and rows[2]["frames"].dtype == np.uint8
    actor = InferenceActor(demo_spec, max_frames=8)
    batch = actor(_batch(rows))
    assert "frames" not in batch and batch["logits"][2].shape == (2, 5, 1, 64, 64)
    for i, n in enumerate(names):
        row = {k: batch[k][i] for k in batch}
        summary = write_video(row, out_dir=str(tmp_path), mask_format="rle")
        if n not in GOOD:
            assert not summary["ok"] and summary["stage"] == "decode" and summary["output"] == ""
            continue
        assert summary["ok"] and summary["n_seconds"] == GOOD[n][0], summary
        doc = json.loads((tmp_path / n / "result.json").read_text())
        assert doc["video"] == str(scale_videos[n]) and doc["outputs"]["masks"] == "masks.rle.json"
        assert {"decode", "image_encoder", "write"} <= set(doc["timings"]["stages"])
        stored = json.loads((tmp_path / n / "masks.rle.json").read_text())["seconds"]
        masks = [rle.decode(s) for s in stored]
        assert len(masks) == len(avs_run_masks[n])
        assert all(np.array_equal(a, b) for a, b in zip(masks, avs_run_masks[n])), n
        assert [s["area_fraction"] for s in doc["seconds"]] == [float(m.mean()) for m in masks]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen00", "gen03", "gen04"]  # no staging left


def test_actor_isolates_a_video_the_model_refuses(scale_videos, demo_spec):
    rows = [decode_video({"video_id": n, "source": str(scale_videos[n])}, img_size=128) for n in ("gen00", "gen01")]
    rows[1]["log_mel"] = rows[1]["log_mel"][:, :, :, :50]  # a wrong shape: the runner refuses this video only
    batch = InferenceActor(demo_spec)(_batch(rows))
    assert list(batch["ok"]) == [True, False] and batch["stage"][1] == "inference"
    assert "expected shape" in batch["error"][1] and batch["logits"][0].shape[0] == 1


def test_write_failure_is_a_row_not_an_exception(scale_videos, demo_spec, tmp_path):
    row = decode_video({"video_id": "gen00", "source": str(scale_videos["gen00"])}, img_size=128)
    batch = InferenceActor(demo_spec)(_batch([row]))
    row = {k: batch[k][0] for k in batch}
    (tmp_path / "gen00").write_text("a file where the folder goes")
    s = write_video(row, out_dir=str(tmp_path))
    assert not s["ok"] and s["stage"] == "write" and s["error"], s
    assert [p.name for p in tmp_path.iterdir()] == ["gen00"]


@pytest.mark.parametrize("bad", ["http://127.0.0.1:9/none.mp4", "nosuchscheme://x/y.mp4"])
def test_unreachable_url_is_a_failed_row(bad):
    row = decode_video({"video_id": "u", "source": bad}, img_size=128)
    assert not row["ok"] and row["error"].startswith("cannot fetch (") and "\n" not in row["error"], row["error"]
