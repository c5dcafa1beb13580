"""The folded decoder attention exports and runs on ONNX Runtime with FP32 parity.

The tiny preset's decoder (4 heads over an internal width of 16) has too many
heads for folding to pay (4 x 7 tokens > 16), so its graphs keep SAM's order;
this test builds a tiny variant with 2 decoder heads, where both cross
attentions fold, as they do for vit_b/l/h (8 heads x 7 tokens < 128).
"""

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
import torch

from avs_engine.config import from_name
from avs_engine.export.onnx_export import export_graph
from avs_engine.checks.onnx_parity import FP32_LIMIT, rel_l2
from avs_engine.export.wrappers import export_copy, graph_modules
from avs_engine.exact.folded_decoder import FoldedAttention
from avs_engine.reference import build_model
from avs_engine.artifacts.spec import STAGES, dims_for


@pytest.fixture(scope="module")
def two_head_model():
    base = from_name("tiny")
    cfg = dataclasses.replace(base, decoder=dataclasses.replace(base.decoder, num_heads=2))
    return build_model(cfg, seed=7)


def test_two_head_decoder_folds_both_cross_attentions(two_head_model):
    dec = export_copy(two_head_model).mask_decoder
    G = two_head_model.config.grid
    layer = dec.transformer.layers[0]
    assert isinstance(layer.cross_attn_token_to_image, FoldedAttention)
    assert layer.cross_attn_token_to_image.branch(7, G * G) == "few_queries"
    assert layer.cross_attn_image_to_token.branch(G * G, 7) == "few_keys"
    tiny = export_copy(build_model("tiny", seed=0)).mask_decoder.transformer.layers[0]
    assert tiny.cross_attn_image_to_token.branch(G * G, 7) == "plain"  # 4 heads x 7 > 16


def test_folded_decoder_graph_parity(two_head_model, tmp_path):
    stage = STAGES["mask_decoder"]
    path = tmp_path / "mask_decoder.onnx"
    export_graph(graph_modules(two_head_model)["mask_decoder"], stage, two_head_model.config, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for T in (1, 5):  # one export, dynamic T
        rng = np.random.default_rng()
        x = {t.name: rng.standard_normal(t.concrete(dims_for(two_head_model.config, T))).astype(np.float32)
             for t in stage.inputs}
        with torch.no_grad():
            want = two_head_model.decode(*(torch.from_numpy(v) for v in x.values())).numpy()
        (got,) = sess.run(None, x)
        assert rel_l2(got, want) <= FP32_LIMIT, (T, rel_l2(got, want))
