"""The torch backend's encoder attention: SDPA by default (no score matrix), SAM's own code on request;
the same clip to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avs_engine.backends.torch_backend import TorchRunner  # noqa: E402
from avs_engine.checks.compare import rel_l2  # noqa: E402
from avs_engine.errors import BackendError  # noqa: E402
from avs_engine.exact.sdpa_attention import SdpaAttention  # noqa: E402
from avs_engine.reference.build import build_model  # noqa: E402


def test_sdpa_by_default_and_sam_on_request_agree():
    from segment_anything.modeling.image_encoder import Attention

    rng = np.random.default_rng(21)
    sdpa = TorchRunner(model=build_model("tiny", seed=9)).activate()
    sam = TorchRunner(model=build_model("tiny", seed=9), attention="sam").activate()
    kinds = lambda r: {type(b.attn) for b in r.model.image_encoder.blocks}  # noqa: E731
    assert kinds(sdpa) == {SdpaAttention} and kinds(sam) == {Attention}
    S = sdpa.config.encoder.img_size
    image = rng.standard_normal((2, 3, S, S), dtype=np.float32)
    log_mel = rng.standard_normal((2, 1, 96, 64), dtype=np.float32)
    assert rel_l2(sdpa.run_clip(image, log_mel), sam.run_clip(image, log_mel)) < 1e-5
    bias = TorchRunner(model=build_model("tiny", seed=9), attention="sdpa_bias").activate()
    assert {b.attn.form for b in bias.model.image_encoder.blocks} == {"bias"}
    assert rel_l2(bias.run_clip(image, log_mel), sam.run_clip(image, log_mel)) < 1e-5


def test_attention_choices_are_checked():
    with pytest.raises(BackendError, match="one of sdpa, sdpa_bias, sam"):
        TorchRunner(model=build_model("tiny", seed=0), attention="flash")
    with pytest.raises(BackendError, match="softmax statistics stay float32"):
        TorchRunner(model=build_model("tiny", seed=0), attention="sam", dtype="bfloat16")
