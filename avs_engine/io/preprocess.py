"""Frames -> the image encoder's input, with numpy and Pillow only (no torch, no cv2).

Trained ST-BAVA weights have only seen frames that went through two resizes
(docs/model.md, section 1): AVSBench squashed each frame to 224x224 with OpenCV's default
bilinear resize, and the training code resized those to 1024x1024 with
torchvision's ``Resize`` on a PIL image (Pillow bilinear). ``prepare_frames``
repeats both steps; :func:`cv2_resize_bilinear` reproduces OpenCV's uint8
``INTER_LINEAR`` bit for bit so that OpenCV need not be installed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from avs_engine.errors import ShapeError

# ImageNet statistics (= SAM's pixel_mean / pixel_std divided by 255).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# OpenCV's INTER_RESIZE_COEF_BITS: interpolation weights are 11-bit fixed point.
_COEF_SCALE = 1 << 11
AVSBENCH_SIZE = 224  # side of the squashed frames AVSBench stores
MODES = ("avsbench", "direct")


def _cv2_taps(n_src: int, n_dst: int, clamp_weights: bool):
    """OpenCV's source taps and fixed-point weights along one axis.

    Returns ``(i0, i1, w0, w1)``, each ``[n_dst]``; output = in[i0]*w0 + in[i1]*w1
    with ``w0 + w1 == 2048``.
    """
    # OpenCV: scale = 1 / (dst/src) in double, the source position in float32
    # (half-pixel centres), floor, fraction in float32. Copying those precisions
    # is what makes the weights, and so the result, bit-exact.
    scale = 1.0 / (n_dst / n_src)
    pos = ((np.arange(n_dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0.astype(np.float32)).astype(np.float32)
    if clamp_weights:
        # Horizontal pass: a tap left of the first or right of the last pixel
        # becomes a single full-weight tap on the edge pixel.
        left = i0 < 0
        frac[left], i0[left] = 0.0, 0
        right = i0 >= n_src - 1
        frac[right], i0[right] = 0.0, n_src - 1
    # saturate_cast<short>(float) rounds half to even, as np.rint does.
    w0 = np.rint((np.float32(1.0) - frac) * np.float32(_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(frac * np.float32(_COEF_SCALE)).astype(np.int32)
    # Vertical pass: weights are not clamped, the row index is (same value at the
    # edges since both taps read the edge row).
    i1 = np.clip(i0 + 1, 0, n_src - 1)
    i0 = np.clip(i0, 0, n_src - 1)
    return i0, i1, w0, w1


def cv2_resize_bilinear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV's ``cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)`` for uint8.

    Args:
        img: uint8 ``[H, W]`` or ``[H, W, C]``.
        size: ``(width, height)`` of the output, OpenCV's order.

    Returns:
        uint8 ``[height, width]`` or ``[height, width, C]``, bit-identical to
        OpenCV's result (checked against OpenCV 5.0 for up- and downscales,
        odd sizes, 1/3/4 channels). No antialiasing, as in OpenCV.
    """
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ShapeError(f"cv2_resize_bilinear: expected uint8 [H,W] or [H,W,C], got {img.dtype} {img.shape}")
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ShapeError(f"cv2_resize_bilinear: output size must be positive, got {size}")
    src = img if img.ndim == 3 else img[:, :, None]
    H, W = src.shape[:2]
    if (W, H) == (w, h):
        return img.copy()
    # The exact 2x downscale (OpenCV switches to INTER_AREA there) needs no
    # special case: with weights 1024/1024 the formula below is the same
    # (a+b+c+d+2)>>2 box average.
    x0, x1, a0, a1 = _cv2_taps(W, w, clamp_weights=True)
    y0, y1, b0, b1 = _cv2_taps(H, h, clamp_weights=False)
    # Horizontal pass, exact in int32 (at most 255*2048), only on the rows the
    # vertical pass reads.
    rows = np.unique(np.concatenate([y0, y1]))
    src_rows = src[rows].astype(np.int32)                                  # [R, W, C]
    horiz = src_rows[:, x0] * a0[None, :, None] + src_rows[:, x1] * a1[None, :, None]  # [R, w, C]
    where = np.searchsorted(rows, np.arange(H))  # source row -> index in `rows`
    s0 = horiz[where[y0]]                                                  # [h, w, C]
    s1 = horiz[where[y1]]
    # Vertical pass as OpenCV's uint8 VResizeLinear does it (scalar and SIMD
    # alike): each product is taken on the sum >> 4, keeps its high 16 bits,
    # then a rounding shift by 2: 4 + 16 + 2 = 22 bits in all, but truncated
    # in steps, which is not the same as one (x + 2^21) >> 22.
    b0 = b0[:, None, None]
    b1 = b1[:, None, None]
    out = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2
    out = out.astype(np.uint8)
    return out if img.ndim == 3 else out[:, :, 0]


def pil_resize_bilinear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's bilinear resize, what torchvision's ``Resize`` does to a PIL image.

    Args:
        img: uint8 ``[H, W]`` or ``[H, W, 3]``.
        size: ``(width, height)`` of the output.

    Returns:
        uint8 ``[height, width(, 3)]``. Pillow widens the filter when it
        shrinks (antialiasing); torchvision on PIL images does the same.
    """
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ShapeError(f"pil_resize_bilinear: expected uint8 [H,W] or [H,W,3], got {img.dtype} {img.shape}")
    w, h = int(size[0]), int(size[1])
    pil = Image.fromarray(np.ascontiguousarray(img))
    return np.asarray(pil.resize((w, h), Image.BILINEAR))


def normalize(img: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB -> float32 ``[3, H, W]``, /255 then ImageNet mean/std.

    The operations and their order are torchvision's ``ToTensor`` + ``Normalize``
    in float32, so the result matches it bit for bit.
    """
    x = img.astype(np.float32) / np.float32(255.0)   # [H, W, 3]
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # [3, H, W]


def squash_frame(frame: np.ndarray, img_size: int, mode: str = "avsbench") -> np.ndarray:
    """One RGB frame -> the small uint8 square the clip source ships.

    Args:
        frame: uint8 ``[H, W, 3]``, RGB, any size.
        img_size: side ``S`` of the encoder input (used by ``"direct"`` only).
        mode: ``"avsbench"``: OpenCV bilinear to 224x224, as AVSBench stored its
            frames; ``"direct"``: Pillow bilinear straight to ``S``.

    Returns:
        uint8 ``[224, 224, 3]`` (avsbench) or ``[S, S, 3]`` (direct).
    """
    if mode not in MODES:
        raise ValueError(f"squash_frame: mode must be one of {MODES}, got {mode!r}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ShapeError(f"squash_frame: expected a frame uint8 [H,W,3], got {frame.dtype} {frame.shape}")
    if mode == "avsbench":
        return cv2_resize_bilinear(frame, (AVSBENCH_SIZE, AVSBENCH_SIZE))
    return pil_resize_bilinear(frame, (img_size, img_size))


def squash_frames(frames: np.ndarray, img_size: int, mode: str = "avsbench") -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` -> uint8 ``[T, s, s, 3]`` (:func:`squash_frame` on each)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ShapeError(f"squash_frames: expected frames uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    return np.stack([squash_frame(f, img_size, mode) for f in frames])


def encoder_input(small: np.ndarray, img_size: int) -> np.ndarray:
    """Squashed uint8 frames ``[T, s, s, 3]`` -> float32 ``[T, 3, S, S]``, ImageNet-normalised.

    Frames not yet at ``S`` go through Pillow bilinear (the training code's
    ``Resize`` of the 224x224 AVSBench frames)."""
    if small.dtype != np.uint8 or small.ndim != 4 or small.shape[-1] != 3:
        raise ShapeError(f"encoder_input: expected frames uint8 [T,s,s,3], got {small.dtype} {small.shape}")
    out = np.empty((small.shape[0], 3, img_size, img_size), np.float32)
    # One frame at a time: only one float copy of a frame is alive besides `out`.
    for t, frame in enumerate(small):
        out[t] = normalize(to_encoder_size(frame, img_size))
    return out


def to_encoder_size(frame: np.ndarray, img_size: int) -> np.ndarray:
    """A squashed uint8 frame ``[s, s, 3]`` -> uint8 ``[S, S, 3]`` (Pillow bilinear; unchanged when s = S)."""
    if frame.shape[:2] == (img_size, img_size):
        return frame
    return pil_resize_bilinear(frame, (img_size, img_size))


def prepare_frames(frames: np.ndarray, img_size: int = 1024, mode: str = "avsbench") -> np.ndarray:
    """RGB frames -> the image encoder's input (:func:`squash_frames` then :func:`encoder_input`).

    Args:
        frames: uint8 ``[T, H, W, 3]``, RGB.
        img_size: side ``S`` of the square encoder input.
        mode: ``"avsbench"``: squash to 224x224 with OpenCV's bilinear (as
            AVSBench stored its frames), then Pillow bilinear to ``S`` (as the
            training code did): what trained weights expect. ``"direct"``:
            Pillow bilinear straight to ``S`` (sharper for large frames).

    Returns:
        float32 ``[T, 3, S, S]``, ImageNet-normalised.
    """
    if mode not in MODES:
        raise ValueError(f"prepare_frames: mode must be one of {MODES}, got {mode!r}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ShapeError(f"prepare_frames: expected frames uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    return encoder_input(squash_frames(frames, img_size, mode), img_size)
