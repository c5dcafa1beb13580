"""Binary masks as COCO run-length encodings (the compressed string form pycocotools reads and writes).

One mask is ``{"size": [h, w], "counts": "<ascii>"}``:

- the mask is read in **column-major** order (down the first column, then the
  next: ``mask.ravel(order="F")``, as COCO does);
- the run lengths alternate off, on, off, ... and always start with an "off"
  run, which is 0 when the first pixel is on; they add up to ``h * w``;
- ``counts`` is pycocotools' compressed string: each run length (from the
  fourth on, minus the run two places before it) is written as a signed
  little-endian base-32 number, five bits per character, character = 48 +
  (bits | 0x20 when more characters follow); the sign is bit 0x10 of the
  last character.

``pycocotools.mask.decode(rle)`` and :func:`decode` give the same array; numpy
only here, no pycocotools needed. A 1080p mask of a blob is a few hundred
bytes (its PNG is a few kilobytes).
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError

FORMAT = "coco-rle"  # the name result documents give this encoding


def run_lengths(mask: np.ndarray) -> list[int]:
    """bool ``[h, w]`` -> run lengths in column-major order, starting with an "off" run (0 if the first pixel is on)."""
    if mask.ndim != 2:
        raise ShapeError(f"run_lengths: expected a mask [h, w], got shape {mask.shape}")
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return []
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], edges, [flat.size]))
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat[0] else counts


def counts_to_string(counts: list[int]) -> str:
    """Run lengths -> pycocotools' compressed ``counts`` string."""
    out = []
    for i, x in enumerate(counts):
        x = int(x)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative numbers end at -1
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """pycocotools' compressed ``counts`` string -> run lengths."""
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("RLE counts string ends in the middle of a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"RLE counts string has a character outside '0'..'o' at {p}: {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> dict:
    """bool ``[h, w]`` -> ``{"size": [h, w], "counts": str}`` (COCO compressed RLE)."""
    counts = run_lengths(mask)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_string(counts)}


def decode(rle: dict) -> np.ndarray:
    """``{"size": [h, w], "counts": str | list[int]}`` -> bool ``[h, w]``.

    ``counts`` may be the compressed string or the plain list of run lengths
    (COCO's uncompressed form); they must add up to ``h * w``."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (bytes, bytearray)):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    counts = np.asarray(counts, np.int64)
    if (counts < 0).any() or int(counts.sum()) != h * w:
        raise ValueError(f"RLE run lengths add up to {int(counts.sum())}, not h*w = {h * w} (or one is negative)")
    values = np.zeros(counts.size, bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()


def area(rle: dict) -> int:
    """Pixels that are on."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    return int(sum(counts[1::2]))


__all__ = ["FORMAT", "area", "counts_to_string", "decode", "encode", "run_lengths", "string_to_counts"]
