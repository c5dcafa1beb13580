"""The SDPA attention's index caches keep real tensors only: a trace (ONNX export, torch.compile) runs the
module on fake tensors, and a cached fake tensor would leak into every later eager call."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything.modeling.image_encoder import Attention  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402

from avs_engine.exact import sdpa_attention  # noqa: E402
from avs_engine.exact.sdpa_attention import SdpaAttention  # noqa: E402


def test_a_trace_leaves_no_fake_tensor_in_the_caches(monkeypatch):
    monkeypatch.setattr(sdpa_attention, "_INDEX", {})
    monkeypatch.setattr(sdpa_attention, "_COORDS", {})
    torch.manual_seed(0)
    attn = SdpaAttention(Attention(32, num_heads=2, use_rel_pos=True, input_size=(8, 8)))
    with FakeTensorMode(allow_non_fake_inputs=True):
        traced = attn(torch.randn(1, 8, 8, 32))
    assert type(traced) is not torch.Tensor  # the trace did run on fake tensors
    assert all(type(v) is torch.Tensor for v in [*sdpa_attention._INDEX.values(), *sdpa_attention._COORDS.values()])
    out = attn(torch.randn(1, 8, 8, 32))
    assert type(out) is torch.Tensor and torch.isfinite(out).all()
    assert sdpa_attention._INDEX and sdpa_attention._COORDS  # the eager call filled them
