"""COCO RLE: encode/decode against a brute-force reference, the compressed string against known values, the writer's option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avs_engine.runtime import rle


def brute_counts(mask: np.ndarray) -> list[int]:
    """Run lengths the slow way: walk the pixels column by column, starting in the "off" state."""
    h, w = mask.shape
    counts, state, run = [], False, 0
    for x in range(w):
        for y in range(h):
            if bool(mask[y, x]) != state:
                counts.append(run)
                state, run = not state, 0
            run += 1
    counts.append(run)
    return counts


def brute_decode(size, counts) -> np.ndarray:
    h, w = size
    flat, state = [], False
    for c in counts:
        flat += [state] * c
        state = not state
    out = np.zeros((h, w), bool)
    for i, v in enumerate(flat):
        out[i % h, i // h] = v
    return out


def masks(seed=0, n=60):
    rng = np.random.default_rng(seed)
    yield np.zeros((1, 1), bool)
    yield np.ones((1, 1), bool)
    yield np.ones((3, 5), bool)
    yield np.zeros((4, 2), bool)
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = rng.random((h, w)) < rng.random()
        if rng.random() < 0.5:  # blobs: long runs, large deltas in the string form
            m = np.zeros((h, w), bool)
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            m[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = True
        yield m


def test_run_lengths_match_brute_force():
    for m in masks():
        assert rle.run_lengths(m) == brute_counts(m), m.shape


def test_encode_decode_round_trip_and_brute_force_decode():
    for m in masks(seed=1):
        doc = rle.encode(m)
        assert doc["size"] == list(m.shape)
        assert isinstance(doc["counts"], str) and doc["counts"].isascii()
        counts = rle.string_to_counts(doc["counts"])
        assert counts == brute_counts(m)
        np.testing.assert_array_equal(rle.decode(doc), m)
        np.testing.assert_array_equal(brute_decode(m.shape, counts), m)
        np.testing.assert_array_equal(rle.decode({"size": doc["size"], "counts": counts}), m)  # list form
        assert rle.area(doc) == int(m.sum())


def test_string_form_is_pycocotools():
    # Fixed values written by pycocotools.mask.encode (2.0.x) for these masks.
    m = np.zeros((4, 3), bool)
    m[1:3, 1] = True
    assert rle.encode(m)["counts"] == "525"
    big = np.zeros((100, 200), bool)
    big[10:60, 20:150] = True
    assert rle.encode(big)["counts"] == "jn1b1b1" + "0" * 257 + "nk4"
    pycoco = pytest.importorskip("pycocotools.mask", reason="pycocotools is not installed (an optional cross-check)")
    for m in masks(seed=2, n=30):
        ref = pycoco.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ref["counts"].decode() == rle.encode(m)["counts"]


def test_decode_refuses_counts_that_do_not_fill_the_mask():
    with pytest.raises(ValueError, match="add up"):
        rle.decode({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError):
        rle.string_to_counts("\x7f")


def test_writer_rle_option_writes_one_file_with_the_png_masks(tmp_path):
    from PIL import Image

    from avs_engine.io.clips import Window
    from avs_engine.runtime.model_step import ClipPrediction
    from avs_engine.runtime.results import VideoResult
    from avs_engine.runtime.writer import MASKS_DIR, RLE_NAME, VideoWriter

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 1, 16, 16)).astype(np.float32)
    pred = ClipPrediction(Window(0, 3, (0, 1, 2)), logits)
    docs = {}
    for fmt in ("png", "rle"):
        result = VideoResult(path="x.mp4", width=40, height=30, fps=25.0, duration_s=3.0, clip_seconds=3, n_seconds=3)
        w = VideoWriter(result, tmp_path / fmt, mid=64, overlay=False, mask_format=fmt)
        w.put(pred)
        w.close()
        docs[fmt] = (result, w)
    assert not (tmp_path / "rle" / MASKS_DIR).exists()
    stored = json.loads((tmp_path / "rle" / RLE_NAME).read_text())
    assert stored["format"] == "coco-rle" and stored["size"] == [30, 40] and len(stored["seconds"]) == 3
    for s in stored["seconds"]:
        png = np.asarray(Image.open(tmp_path / "png" / MASKS_DIR / f"{s['second'] + 1:06d}.png")) > 0
        np.testing.assert_array_equal(rle.decode(s), png)
    assert [s.area_fraction for s in docs["png"][0].seconds] == [s.area_fraction for s in docs["rle"][0].seconds]
    with pytest.raises(ValueError, match="mask_format"):
        VideoWriter(docs["png"][0], tmp_path / "bad", mid=64, overlay=False, mask_format="jpeg")
