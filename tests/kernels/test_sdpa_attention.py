"""SAM's image-encoder attention on scaled_dot_product_attention: same function, same
gradients, and no [heads, N, N] score tensor anywhere (forward or backward)."""

import copy

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, Block
from torch.utils._python_dispatch import TorchDispatchMode

from avs_engine.exact.relpos_matmul import RelPosMatmulAttention
from avs_engine.exact.sdpa_attention import SdpaAttention, use_sdpa_attention
from avs_engine.reference import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rel_l2(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x - ref).norm() / ref.norm()).item()


def make_attention(dim: int, heads: int, size: int, seed: int, dtype=torch.float32) -> Attention:
    torch.manual_seed(seed)
    attn = Attention(dim, heads, use_rel_pos=True, input_size=(size, size))
    with torch.no_grad():  # SAM initialises the tables to zero: make the bias count
        attn.rel_pos_h.normal_(0, 0.5)
        attn.rel_pos_w.normal_(0, 0.5)
    return attn.to(dtype)


TOL = [(torch.float64, 1e-12), (torch.float32, 1e-5)]
# (dim, heads, H, W): tiny's 8x8 windows and 16x16 global grid, vit_b's 14x14 windows,
# a vit_b-shaped global block on a 20x20 grid, a non-square grid
SHAPES = [(64, 4, 8, 8), (64, 4, 16, 16), (768, 12, 14, 14), (768, 12, 20, 20), (32, 2, 5, 9)]


def _grads(module, x):
    x = x.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    y = module(x)
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
    return y.detach(), x.grad, {n: p.grad for n, p in module.named_parameters()}


@pytest.mark.parametrize("form", SdpaAttention.FORMS)
@pytest.mark.parametrize("dtype,tol", TOL)
@pytest.mark.parametrize("dim,heads,H,W", SHAPES)
def test_forward_and_backward_equal_sam_attention(dtype, tol, dim, heads, H, W, form):
    attn = make_attention(dim, heads, max(H, W), seed=H * W + dim, dtype=dtype)
    x = torch.randn(2, H, W, dim, generator=torch.Generator().manual_seed(dim), dtype=torch.float64).to(dtype)
    y_ref, gx_ref, gp_ref = _grads(attn, x)
    fast = SdpaAttention(attn, form)
    y, gx, gp = _grads(fast, x)
    assert rel_l2(y, y_ref) < tol
    assert rel_l2(gx, gx_ref) < tol
    assert gp.keys() == gp_ref.keys() == {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias", "rel_pos_h", "rel_pos_w"}
    for name in gp:
        assert rel_l2(gp[name], gp_ref[name]) < tol, name


def test_windowed_vit_b_block_with_padding():
    """A vit_b-shaped windowed block on a grid that SAM pads (18 -> 28: four 14x14 windows)."""
    torch.manual_seed(0)
    blk = Block(768, 12, use_rel_pos=True, window_size=14, input_size=(18, 18)).double()
    with torch.no_grad():
        blk.attn.rel_pos_h.normal_(0, 0.5)
        blk.attn.rel_pos_w.normal_(0, 0.5)
    x = torch.randn(1, 18, 18, 768, dtype=torch.float64)
    ref = _grads(blk, x)
    fast_blk = copy.deepcopy(blk)
    assert use_sdpa_attention(fast_blk) == 1
    out = _grads(fast_blk, x)
    assert rel_l2(out[0], ref[0]) < 1e-12 and rel_l2(out[1], ref[1]) < 1e-12
    for name in ref[2]:
        assert rel_l2(out[2][name], ref[2][name]) < 1e-12, name


@pytest.mark.parametrize("dtype,tol", TOL)
def test_tiny_encoder_gradients_to_the_adapters(dtype, tol):
    """The whole tiny encoder (windowed and global blocks, audio adapters feeding every block)."""
    ref = build_model("tiny", seed=0).to(dtype).train()
    with torch.no_grad():
        for blk in ref.image_encoder.blocks:
            blk.attn.rel_pos_h.normal_(0, 0.5)
            blk.attn.rel_pos_w.normal_(0, 0.5)
    fast = copy.deepcopy(ref)
    assert use_sdpa_attention(fast) == len(ref.image_encoder.blocks) == 4
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 3, 128, 128, generator=g, dtype=torch.float64).to(dtype)
    a128 = torch.randn(2, 128, generator=g, dtype=torch.float64).to(dtype)
    outs = []
    for m in (ref, fast):
        enc = m.encode(image, a128)
        (enc * enc.detach().sign()).sum().backward()
        outs.append((enc.detach(), {n: p.grad for n, p in m.image_encoder.named_parameters()}))
    (e_ref, g_ref), (e, g_fast) = outs
    assert rel_l2(e, e_ref) < tol
    assert any(n.startswith("prompt_generator.") for n in g_ref)
    for name, gr in g_ref.items():
        assert rel_l2(g_fast[name], gr) < tol, name


class _Record(TorchDispatchMode):
    """Every op's name and the largest tensor (elements) any op returned."""

    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(func.overloadpacket.__name__)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _largest_allocation(fn) -> int:
    """Bytes of the largest single CPU allocation during ``fn()``, kernels' own buffers included
    (the profiler sees the allocator, the dispatch mode sees op outputs only)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    largest, stack = 0, list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == _EventType.Allocation:
            largest = max(largest, node.extra_fields.alloc_size)
    return largest


def test_no_score_matrix_forward_or_backward():
    """48x48 global grid, 2 heads of width 16: one head's scores are N*N = 5.3M elements, 25x
    any other tensor of the block (the widest: q_ext, 2 x 2304 x 112)."""
    G, dim, heads = 48, 32, 2
    N = G * G
    sam = make_attention(dim, heads, G, seed=0)
    fast = SdpaAttention(sam)
    x = torch.randn(1, G, G, dim, requires_grad=True)

    def step(m):
        def run():
            m(x).square().sum().backward()
        return run

    rec = _Record()
    with rec:
        step(fast)()
    # torch 2.14's CPU flash-attention kernel, forward and backward (not the math path)
    assert {"_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward"} <= rec.ops
    assert not {"softmax", "_softmax", "_safe_softmax"} & rec.ops
    assert rec.largest < N * N // 8
    assert _largest_allocation(step(fast)) < N * N * 4 // 8  # bytes: float32, below an eighth of one head's scores

    rec_sam = _Record()  # the check sees SAM's score matrix
    with rec_sam:
        step(sam)()
    assert rec_sam.largest >= heads * N * N
    assert _largest_allocation(step(sam)) >= heads * N * N * 4


def test_rel_pos_index_is_built_once_and_serves_autograd_after_inference_mode():
    attn = SdpaAttention(make_attention(32, 2, 11, seed=3))  # a size no other test uses
    x = torch.randn(1, 11, 11, 32)
    with torch.inference_mode():
        attn(x)  # fills the caches inside inference_mode
    rec = _Record()
    with rec:
        y = attn(x.requires_grad_(True))
        y.sum().backward()
    assert "arange" not in rec.ops  # index and one-hot coordinates came from the cache
    assert attn.rel_pos_h.grad is not None and attn.rel_pos_h.grad.abs().sum() > 0


def test_pass_swaps_encoder_attention_only_and_keeps_state_dict():
    model = build_model("tiny", seed=0)
    keys = list(model.state_dict())
    model.image_encoder.blocks[0].attn = RelPosMatmulAttention(model.image_encoder.blocks[0].attn)
    decoder_types = [type(m) for m in model.mask_decoder.modules()]
    assert use_sdpa_attention(model) == 4
    assert all(type(b.attn) is SdpaAttention for b in model.image_encoder.blocks)
    assert [type(m) for m in model.mask_decoder.modules()] == decoder_types
    assert list(model.state_dict()) == keys
    assert use_sdpa_attention(model) == 0
