"""``decode_frames`` (T frames in one call, frame i with its own prompts) against
SAM's own ``MaskDecoder.forward`` run once per frame, as the authors do."""

import copy

import pytest
import torch

from avs_engine.reference import build_model
from avs_engine.reference.mask_decoder import decode_frames

T = 3


@pytest.fixture(scope="module")
def parts():
    model = build_model("tiny", seed=0)
    dec = model.mask_decoder
    g = torch.Generator().manual_seed(1)
    # Randomise every weight (biases start at zero, LayerNorms at 1/0) so that every term shows
    # and the prompts visibly steer the masks.
    with torch.no_grad():
        for p in dec.parameters():
            fan_in = p[0].numel() if p.dim() >= 2 else 1
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5 * (1.0 if p.dim() >= 2 else 0.3))
    C, G = model.config.fusion.dim, model.config.grid
    enc = torch.randn(T, C, G, G, generator=g)
    dense = torch.randn(T, C, G, G, generator=g)
    tok = torch.randn(T, 1, C, generator=g)
    sparse = torch.cat([tok, tok], dim=1)  # two identical tokens, as the fusion gives
    return model, dec, enc, dense, sparse, model.dense_pe()


def test_decode_frames_equals_sam_per_frame(parts):
    model, dec, enc, dense, sparse, pe = parts
    with torch.no_grad():
        batched = decode_frames(dec, enc, dense, sparse, pe)
        per_frame = []
        for i in range(T):
            masks, iou = dec(
                image_embeddings=enc[i : i + 1],
                image_pe=pe,
                sparse_prompt_embeddings=sparse[i : i + 1],
                dense_prompt_embeddings=dense[i : i + 1],
                multimask_output=True,
            )
            assert masks.shape[1] == 3  # the 3 multimask outputs
            per_frame.append(masks.sum(dim=1, keepdim=True))  # ST-BAVA sums them
        ref = torch.cat(per_frame)
        assert batched.shape == ref.shape == (T, 1, 4 * model.config.grid, 4 * model.config.grid)
        # float32, same operations in a different batch layout: ~2e-7 observed on logits of ~0.3.
        torch.testing.assert_close(batched, ref, rtol=0, atol=1e-5)
        # Against a float64 run of SAM's decoder: the batched path's error
        # is at most about twice SAM's own float32 error.
        dec64 = copy.deepcopy(dec).double()
        ref64 = torch.cat(
            [
                dec64(enc[i : i + 1].double(), pe.double(), sparse[i : i + 1].double(), dense[i : i + 1].double(), True)[0]
                .sum(dim=1, keepdim=True)
                for i in range(T)
            ]
        )
        err_batched = (batched.double() - ref64).abs().max().item()
        err_sam = (ref.double() - ref64).abs().max().item()
        assert err_batched <= 2 * err_sam + 1e-7, (err_batched, err_sam)
        # The authors pass dense_embeddings[i] without its batch axis; SAM broadcasts it.
        masks_3d, _ = dec(enc[1:2], pe, sparse[1:2], dense[1], multimask_output=True)
        torch.testing.assert_close(masks_3d.sum(1, keepdim=True), ref[1:2], rtol=0, atol=1e-5)
        # The model's decode stage is this function with the model's dense pe.
        torch.testing.assert_close(model.decode(enc, dense, sparse), batched, rtol=0, atol=0)


def test_decode_frames_pairs_frame_i_with_its_own_tokens(parts):
    """Swapping frames 0 and 1 (image, dense and tokens together) swaps the outputs;
    swapping only the tokens changes them."""
    _, dec, enc, dense, sparse, pe = parts
    perm = torch.tensor([1, 0, 2])
    with torch.no_grad():
        out = decode_frames(dec, enc, dense, sparse, pe)
        out_perm = decode_frames(dec, enc[perm], dense[perm], sparse[perm], pe)
        out_tok = decode_frames(dec, enc, dense, sparse[perm], pe)
    torch.testing.assert_close(out_perm, out[perm], rtol=0, atol=1e-5)
    assert (out_tok[:2] - out[:2]).abs().max() > 1e-3
    torch.testing.assert_close(out_tok[2], out[2], rtol=0, atol=1e-5)


def test_naive_batching_pairs_every_image_with_every_prompt(parts):
    """Why the wrapper exists: SAM's predict_masks repeats each image once per prompt
    set (repeat_interleave). Handing it T images and T prompt sets builds T*T
    image copies against T token sets: the call cannot pair frame i with its own
    prompts (it fails outright here)."""
    _, dec, enc, dense, sparse, pe = parts
    seen = {}

    class Stop(Exception):
        pass

    def grab(module, args):
        seen["src"], seen["tokens"] = args[0].shape[0], args[2].shape[0]
        raise Stop

    h = dec.transformer.register_forward_pre_hook(grab)
    try:
        with torch.no_grad(), pytest.raises(Stop):
            # dense broadcast over the batch so that the image copies reach the transformer
            dec(enc, pe, sparse, dense[:1], multimask_output=True)
    finally:
        h.remove()
    assert seen == {"src": T * T, "tokens": T}
    # Run as SAM intends, T images x T prompt sets gives T*T mask sets: image j // T with prompt j % T...
    with torch.no_grad():
        pairs = torch.stack(
            [dec(enc[i : i + 1], pe, sparse, dense[i : i + 1], multimask_output=True)[0] for i in range(T)]
        ).sum(2)  # [T images, T prompts, L, L]
        diag = decode_frames(dec, enc, dense, sparse, pe)[:, 0]
    assert pairs.shape[:2] == (T, T)
    # ...of which only the diagonal is ST-BAVA's output.
    torch.testing.assert_close(pairs[torch.arange(T), torch.arange(T)], diag, rtol=0, atol=1e-5)
    assert (pairs[0, 1] - diag[0]).abs().max() > 1e-3
    # And the plain batched call with the real per-frame dense prompts is refused by SAM itself.
    with torch.no_grad(), pytest.raises(RuntimeError):
        dec(enc, pe, sparse, dense, multimask_output=True)
