"""Audio backbones: VGGish in torchvggish's layout (docs/model.md, section 3) and the small CNN."""

import pytest
import torch

from avs_engine.config import AudioConfig, from_name
from avs_engine.reference.audio_backbone import VGGish, SmallAudioNet, build_audio_backbone

# torchvggish's VGGish state_dict (no PCA parameters: we do not postprocess).
TORCHVGGISH_KEYS = {
    f"{part}.{i}.{w}"
    for part, idx in (("features", (0, 3, 6, 8, 11, 13)), ("embeddings", (0, 2, 4)))
    for i in idx
    for w in ("weight", "bias")
}
TORCHVGGISH_SHAPES = {
    "features.0.weight": (64, 1, 3, 3),
    "features.3.weight": (128, 64, 3, 3),
    "features.6.weight": (256, 128, 3, 3),
    "features.8.weight": (256, 256, 3, 3),
    "features.11.weight": (512, 256, 3, 3),
    "features.13.weight": (512, 512, 3, 3),
    "embeddings.0.weight": (4096, 512 * 4 * 6),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.4.weight": (128, 4096),
}
T = 3


@pytest.fixture(scope="module")
def vggish():
    torch.manual_seed(0)
    return VGGish().eval()  # 72 M parameters: built once for the module


@pytest.fixture(scope="module")
def log_mel():
    return torch.randn(T, 1, 96, 64, generator=torch.Generator().manual_seed(3))


def test_state_dict_is_torchvggish(vggish):
    sd = vggish.state_dict()
    assert set(sd) == TORCHVGGISH_KEYS
    for k, shape in TORCHVGGISH_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k
    assert sum(p.numel() for p in vggish.parameters()) == pytest.approx(72.1e6, rel=0.01)


def test_output_and_nhwc_flatten(vggish, log_mel):
    with torch.no_grad():
        out = vggish(log_mel)
        fmap = vggish.features(log_mel)
        # torchvggish: transpose to NHWC, then flatten, then the embeddings.
        nhwc = vggish.embeddings(fmap.permute(0, 2, 3, 1).reshape(T, -1))
        nchw = vggish.embeddings(fmap.reshape(T, -1))
        one = vggish(log_mel[1:2])
    assert fmap.shape == (T, 512, 6, 4)
    assert out.shape == (T, 128)
    assert (out >= 0).all()  # the final ReLU is kept
    assert (out > 0).any()
    torch.testing.assert_close(out, nhwc, rtol=0, atol=0)
    # The flatten order matters: an NCHW flatten gives a different embedding.
    assert (out - nchw).abs().max() > 1e-4 * out.abs().max()
    torch.testing.assert_close(one, out[1:2], rtol=1e-5, atol=1e-6)  # frames are independent


def test_forward_against_float64(vggish, log_mel):
    """FP32 output against a float64 copy of the same network."""
    import copy

    v64 = copy.deepcopy(vggish).double()
    with torch.no_grad():
        ref = v64(log_mel.double())
        out = vggish(log_mel)
    scale = ref.abs().max().item()
    assert (out.double() - ref).abs().max().item() <= 1e-5 * max(scale, 1e-3)


def test_small_audio_net():
    cfg = from_name("tiny").audio
    net = build_audio_backbone(cfg).eval()
    assert isinstance(net, SmallAudioNet)
    x = torch.randn(T, 1, 96, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = net(x)
    assert out.shape == (T, cfg.embed_dim) and (out >= 0).all()
    with torch.device("meta"):  # no need to allocate VGGish again
        assert isinstance(build_audio_backbone(AudioConfig(kind="vggish", embed_dim=128)), VGGish)
