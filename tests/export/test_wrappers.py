"""The export-only passes leave the reference alone and compute the same thing."""

import inspect

import torch
from segment_anything.modeling.common import LayerNorm2d

from avs_engine.export.onnx_export import dynamic_shapes, example_inputs
from avs_engine.export.wrappers import GRAPHS, ChannelLayerNorm, export_copy, graph_modules
from avs_engine.artifacts.spec import STAGES


def test_export_copy_swaps_layernorm2d_and_shares_weights(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    copy = export_copy(tiny_model)
    assert not any(isinstance(m, LayerNorm2d) for m in copy.modules())
    assert sum(isinstance(m, ChannelLayerNorm) for m in copy.modules()) == 3  # neck x2, decoder upscaling x1
    # the reference is untouched and the copy holds the very same tensors
    assert sum(isinstance(m, LayerNorm2d) for m in tiny_model.modules()) == 3
    assert copy.image_encoder.blocks[0].mlp is tiny_model.image_encoder.blocks[0].mlp
    assert all(a is b for a, b in zip(copy.parameters(), tiny_model.parameters()))
    assert copy.state_dict().keys() == tiny_model.state_dict().keys()
    # the exact-algebra forms (tests/kernels) are in the copy only
    kinds = {type(m).__name__ for m in copy.modules()} - {type(m).__name__ for m in tiny_model.modules()}
    assert kinds == {"ChannelLayerNorm", "FusedAVFusionBlock", "FoldedAttention", "BlockedAttention", "WindowedBlock",
                     "RelPosMatmulAttention"}
    for ref_block, block in zip(tiny_model.image_encoder.blocks, copy.image_encoder.blocks):
        # windowed blocks are whole WindowedBlocks; global ones keep SAM's block with blocked attention
        assert type(block).__name__ == ("WindowedBlock" if ref_block.window_size else "Block")
        assert block.attn.qkv is ref_block.attn.qkv
    assert copy.image_encoder.neck[1].weight is tiny_model.image_encoder.neck[1].weight
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_channel_layernorm_matches_layernorm2d():
    torch.manual_seed(0)
    ref = LayerNorm2d(32)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    x = torch.randn(3, 32, 8, 8) * 50
    torch.testing.assert_close(ChannelLayerNorm(ref)(x), ref(x), rtol=1e-5, atol=1e-5)


def test_wrappers_compute_the_reference_stages(tiny_model):
    mods = graph_modules(tiny_model)
    cfg = tiny_model.config
    with torch.no_grad():
        x = example_inputs(STAGES["image_encoder"], cfg, T=2)
        torch.testing.assert_close(mods["image_encoder"](**x), tiny_model.encode(**x), rtol=1e-5, atol=1e-5)
        x = example_inputs(STAGES["mask_decoder"], cfg, T=2)
        torch.testing.assert_close(mods["mask_decoder"](**x), tiny_model.decode(**x), rtol=1e-5, atol=1e-5)
        x = example_inputs(STAGES["fusion"], cfg, T=2)
        for got, want in zip(mods["fusion"](**x), tiny_model.fuse(**x)):
            torch.testing.assert_close(got, want)


def test_wrapper_signatures_are_the_spec():
    for name, stage in STAGES.items():
        params = list(inspect.signature(GRAPHS[name].forward).parameters)[1:]  # without self
        assert tuple(params) == stage.input_names, name
        assert set(dynamic_shapes(stage)) == set(stage.input_names)
