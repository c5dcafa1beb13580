"""The image-encoder graph at a 64x64 token grid: its global attention runs in query blocks
(no [T*heads, N, N] tensor in the graph), matches PyTorch to float32 rounding, and the backend's
CPU session options keep its working set near one block's."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from avs_engine.artifacts.profiles import CPU_SESSION_MEMORY_OPTIONS
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
    N = cfg.grid * cfg.grid
    # the largest tensor is one query block's scores [T*heads, 8*G, N], not [T*heads, N, N]; the symbolic
    # T*heads axis counts as 1
    assert _largest_intermediate(path) == 8 * cfg.grid * N
    x = example_inputs(STAGES["image_encoder"], cfg, T=2, seed=5)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in x.items()})[0]
    with torch.no_grad():
        want = model.encode(**x).numpy()
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5

    # Working set, each in a fresh process: with the backend's options the run's peak above the loaded
    # session stays within a few of the largest tensors; the planner's buffer reuse (ONNX Runtime's
    # default) kept most intermediates allocated to the end of the run.
    # (4 blocks here: 128 against 170 MB; 12 vit_b blocks: 0.47 against 1.18 GB).
    block_scores = cfg.encoder.num_heads * _largest_intermediate(path) * 4  # bytes of [heads, 8*G, N] per frame
    ours = _peak_above_loaded(path, CPU_SESSION_MEMORY_OPTIONS)
    with_reuse = _peak_above_loaded(path, {**CPU_SESSION_MEMORY_OPTIONS, "enable_mem_reuse": True})
    assert ours <= 5 * block_scores, (ours, block_scores)
    assert with_reuse > 1.2 * ours, (with_reuse, ours)


_PEAK = """
import json, sys
import numpy as np, onnxruntime as ort
path, options = sys.argv[1], json.loads(sys.argv[2])
o = ort.SessionOptions()
o.intra_op_num_threads = 1
for k, v in options.items():
    setattr(o, k, v)
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
loaded = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
rng = np.random.default_rng(3)
feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
         for i in s.get_inputs()}
s.run(None, feeds)
print(json.dumps(int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024 - loaded))
"""


def _peak_above_loaded(path, options) -> int:
    """Bytes of RSS high-water mark above the loaded session for one run of one frame, in a fresh process.
    VmHWM, not getrusage: Linux carries the parent's high-water mark into a child's ru_maxrss across exec."""
    r = subprocess.run([sys.executable, "-c", _PEAK, str(path), json.dumps(options)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.strip().splitlines()[-1])
