"""preprocess: OpenCV resize emulation (bit-exact), Pillow resize, normalisation
against torchvision."""

import numpy as np
import pytest

from avs_engine.errors import ShapeError
from avs_engine.io.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    cv2_resize_bilinear,
    pil_resize_bilinear,
    prepare_frames,
)

cv2 = pytest.importorskip("cv2")

SIZES = [
    # (src w, h) -> (dst w, h)
    ((640, 360), (224, 224)),
    ((160, 96), (224, 224)),
    ((1920, 1080), (224, 224)),
    ((224, 224), (1024, 1024)),
    ((37, 23), (224, 224)),
    ((225, 223), (224, 224)),
    ((448, 448), (224, 224)),   # exact 2x: OpenCV switches to INTER_AREA
    ((101, 77), (50, 39)),
    ((300, 200), (301, 199)),
    ((5, 3), (224, 224)),
    ((1, 1), (7, 5)),
    ((13, 17), (13, 40)),       # one axis unchanged
]


@pytest.mark.parametrize("src,dst", SIZES)
def test_cv2_resize_bit_exact(src, dst):
    rng = np.random.default_rng(hash((src, dst)) % 2**32)
    img = rng.integers(0, 256, (src[1], src[0], 3), dtype=np.uint8)
    ref = cv2.resize(img, dst, interpolation=cv2.INTER_LINEAR)
    out = cv2_resize_bilinear(img, dst)
    assert out.shape == ref.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref)


def test_cv2_resize_random_sizes_and_channels():
    rng = np.random.default_rng(1)
    for i in range(60):
        W, H, w, h = (int(v) for v in rng.integers(1, 300, 4))
        shape = (H, W) if i % 3 == 0 else (H, W, 3 if i % 3 == 1 else 4)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(
            cv2_resize_bilinear(img, (w, h)), cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR),
            err_msg=f"{shape} -> {(w, h)}")


def test_cv2_resize_same_size_is_copy():
    img = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
    out = cv2_resize_bilinear(img, (5, 4))
    np.testing.assert_array_equal(out, img)
    assert out is not img


def test_cv2_resize_rejects_bad_input():
    with pytest.raises(ShapeError):
        cv2_resize_bilinear(np.zeros((4, 4, 3), np.float32), (2, 2))
    with pytest.raises(ShapeError):
        cv2_resize_bilinear(np.zeros((4, 4, 3), np.uint8), (0, 2))


def test_pil_resize_matches_pillow():
    from PIL import Image

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(img).resize((224, 200), Image.BILINEAR))
    np.testing.assert_array_equal(pil_resize_bilinear(img, (224, 200)), ref)


def _torchvision_reference(frames, size, mode):
    """The authors' pipeline: (cv2 squash to 224) -> PIL -> Resize -> ToTensor -> Normalize."""
    torch = pytest.importorskip("torch")
    transforms = pytest.importorskip("torchvision.transforms")
    from PIL import Image

    tf = transforms.Compose([
        transforms.Resize((size, size)),  # PIL bilinear by default
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN.tolist(), IMAGENET_STD.tolist()),
    ])
    out = []
    for f in frames:
        if mode == "avsbench":
            f = cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR)
        out.append(tf(Image.fromarray(f)))
    return torch.stack(out).numpy()


@pytest.mark.parametrize("mode,src_hw,size", [
    ("avsbench", (96, 160), 1024),
    ("avsbench", (361, 641), 256),
    ("direct", (96, 160), 256),
    ("direct", (721, 1283), 512),   # downscale: Pillow antialiases, like torchvision on PIL
])
def test_prepare_frames_matches_torchvision(mode, src_hw, size):
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, *src_hw, 3), dtype=np.uint8)
    ref = _torchvision_reference(frames, size, mode)
    out = prepare_frames(frames, img_size=size, mode=mode)
    assert out.shape == (2, 3, size, size) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


def test_prepare_frames_rejects_bad_input():
    with pytest.raises(ShapeError):
        prepare_frames(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ShapeError):
        prepare_frames(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError):
        prepare_frames(np.zeros((1, 8, 8, 3), np.uint8), mode="letterbox")


def test_io_helpers_import_neither_torch_nor_cv2():
    import subprocess
    import sys

    code = ("import sys, avs_engine.io.preprocess, avs_engine.io.postprocess, "
            "avs_engine.io.writers, avs_engine.runtime.outputs; "
            "print(sorted(m for m in ('torch', 'cv2', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
