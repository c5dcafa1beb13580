"""The image-encoder graph at a 64x64 token grid: its global attention runs in query blocks
(no [T*heads, N, N] tensor in the graph) and matches PyTorch to float32 rounding."""

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
import torch

from avs_engine.artifacts.spec import STAGES
from avs_engine.config import from_name
from avs_engine.export.onnx_export import example_inputs, export_graph
from avs_engine.export.wrappers import graph_modules
from avs_engine.reference import build_model
from tests.kernels.test_blocked_attention import _largest_intermediate


@pytest.mark.slow  # ~1 min on 2 quiet cores (8 min under load): a 4096-token encoder, exported and run
def test_encoder_graph_on_a_64x64_grid(tmp_path):
    tiny = from_name("tiny")
    cfg = dataclasses.replace(tiny, encoder=dataclasses.replace(tiny.encoder, img_size=512))  # patch 8: 64x64 tokens
    assert cfg.grid == 64
    model = build_model(cfg, seed=0)
    with torch.no_grad():  # SAM initialises the rel-pos tables to zero: make the bias count
        for blk in model.image_encoder.blocks:
            blk.attn.rel_pos_h.normal_(0, 0.5)
            blk.attn.rel_pos_w.normal_(0, 0.5)
    path = tmp_path / "image_encoder.onnx"
    export_graph(graph_modules(model)["image_encoder"], STAGES["image_encoder"], cfg, path)
    N, heads = cfg.grid * cfg.grid, cfg.encoder.num_heads
    # per frame (T counted as 1), the largest tensor is one query block's scores, not [heads, N, N]
    assert _largest_intermediate(path) == heads * 8 * cfg.grid * N
    x = example_inputs(STAGES["image_encoder"], cfg, T=2, seed=5)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in x.items()})[0]
    with torch.no_grad():
        want = model.encode(**x).numpy()
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5
