"""Training that fits one card: micro-batches add up to the whole batch, checkpointed blocks give
the same gradients and keep less, the estimate matches a trace, a step that cannot fit is refused
with the numbers before it starts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from avs_engine.errors import ConfigError
from avs_engine.exact.sdpa_attention import use_sdpa_attention
from avs_engine.reference import build_model
from avs_engine.train.loop import accumulate_gradients, set_trainable, train
from avs_engine.train.memory import (CheckpointedBlock, checkpoint_encoder_blocks, estimate_step_memory, refusal)
from avs_engine.train.recipe import TrainConfig

GB = 1e9


def _batch(B=2, T=3, S=128, seed=0):
    rng = np.random.default_rng(seed)
    masks = rng.random((B, T, 224, 224)) > 0.8
    masks[B - 1, 0] = False  # a valid frame without an object: counts for BCE, not for the IoU term
    valid = np.zeros((B, T), bool)
    valid[:, 0] = True  # S4: only the first frame has a mask
    valid[0, T - 1] = True
    return (rng.standard_normal((B, T, 3, S, S), dtype=np.float32), rng.standard_normal((B, T, 1, 96, 64), dtype=np.float32),
            masks, valid)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("target", ["full", "lowres"])
def test_micro_batches_add_up_to_the_whole_batch(target):
    cfg = TrainConfig(batch_clips=2, loss="bce+iou", target=target, freeze=("image_encoder", "audio"))
    model = build_model("tiny", seed=0)
    set_trainable(model, cfg.freeze)
    model.eval()  # no dropout: the two runs must see the same function
    batch = _batch()
    whole = accumulate_gradients(model, batch, cfg, "cpu")
    g_whole = _grads(model)
    model.zero_grad(set_to_none=True)
    parts = accumulate_gradients(model, batch, cfg.replace(micro_batch_clips=1), "cpu")
    g_parts = _grads(model)
    assert abs(whole.item() - parts.item()) < 1e-5 * whole.item()
    assert g_whole.keys() == g_parts.keys() and any(k.startswith("image_encoder.prompt_generator") for k in g_whole)
    scale = torch.cat([g.flatten() for g in g_whole.values()]).norm()
    for k in g_whole:  # some gradients are zero in exact arithmetic (a key bias under softmax): rounding noise only
        assert (g_parts[k] - g_whole[k]).norm() <= 1e-4 * g_whole[k].norm() + 1e-6 * scale, k


def _kept_bytes(model, batch, cfg) -> int:
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            kept[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        accumulate_gradients(model, batch, cfg, "cpu")
    return sum(kept.values())


def test_checkpointed_blocks_same_gradients_less_kept():
    cfg = TrainConfig(batch_clips=2, freeze=("image_encoder", "audio"))
    ref = build_model("tiny", seed=0)
    set_trainable(ref, cfg.freeze)
    ref.eval()
    ck = copy.deepcopy(ref)
    assert checkpoint_encoder_blocks(ck) == 4
    assert all(type(b) is CheckpointedBlock for b in ck.image_encoder.blocks)
    assert list(ck.state_dict()) == list(ref.state_dict())
    batch = _batch()
    kept_ref, kept_ck = _kept_bytes(ref, batch, cfg), _kept_bytes(ck, batch, cfg)
    g_ref, g_ck = _grads(ref), _grads(ck)
    scale = torch.cat([g.flatten() for g in g_ref.values()]).norm()
    for k, g in g_ref.items():
        assert (g_ck[k] - g).norm() <= 1e-6 * g.norm() + 1e-7 * scale, k
    assert kept_ck < 0.75 * kept_ref
    assert checkpoint_encoder_blocks(ck, False) == 0 and not any(type(b) is CheckpointedBlock for b in ck.image_encoder.blocks)


@pytest.mark.parametrize("sdpa,ckpt,freeze", [
    (False, False, ("image_encoder", "audio")),
    (True, False, ("image_encoder", "audio")),
    (True, True, ("image_encoder", "audio")),
    (True, False, ()),
    (False, False, ("audio",)),
])
def test_estimate_of_kept_activations_matches_a_trace(sdpa, ckpt, freeze):
    """The estimate's per-frame activations against the bytes autograd really kept (tiny, T=3)."""
    T = 3
    cfg = TrainConfig(batch_clips=1, freeze=freeze)
    model = build_model("tiny", seed=0)
    if sdpa:
        use_sdpa_attention(model)
    checkpoint_encoder_blocks(model, ckpt)
    set_trainable(model, freeze)
    batch = _batch(B=1, T=T)
    batch[3][:] = True  # the estimate counts every frame in the loss
    traced = _kept_bytes(model, batch, cfg)
    est = estimate_step_memory("tiny", clips=1, T=T, freeze=freeze, sdpa=sdpa, checkpoint=ckpt, device_type="cpu")
    assert 0.85 < est.kept_per_frame * T / traced < 1.25, (est.kept_per_frame * T, traced)


def test_vit_h_one_clip_of_five_frames_fits_an_80_gb_card():
    one = estimate_step_memory("vit_h", clips=1, T=5, sdpa=True, checkpoint=True, device_type="cuda")
    assert one.total < 80 * GB
    assert estimate_step_memory("vit_h", clips=4, T=5, sdpa=True, checkpoint=True, device_type="cuda").total < 80 * GB
    # what the change is for: SAM's attention without checkpointing does not fit even one clip
    assert estimate_step_memory("vit_h", clips=1, T=5, sdpa=False, checkpoint=False, device_type="cuda").total > 80 * GB
    # vit_b, 4 clips x 5 frames before the change: over 100 GB (the score matrices of 4 global blocks per frame)
    assert estimate_step_memory("vit_b", clips=4, T=5, sdpa=False, checkpoint=False, device_type="cuda").total > 100 * GB


def test_refusal_names_the_numbers_and_what_to_change():
    def est(clips, sdpa, ckpt):
        return estimate_step_memory("vit_b", clips=clips, T=5, sdpa=sdpa, checkpoint=ckpt, device_type="cuda",
                                    counts=(160_000_000, 10_000_000))

    big = est(4, False, False).total
    assert refusal(est, clips=4, T=5, sdpa=False, checkpoint=False, available=int(2 * big), source="x") is None
    msg = refusal(est, clips=4, T=5, sdpa=False, checkpoint=False, available=int(40 * GB),
                  source="40.0 GB free of 80.0 GB on cuda:0 (torch.cuda.mem_get_info)", batch_clips=4)
    assert "\n" not in msg
    assert f"needs about {big / GB:.1f} GB" in msg and "per frame" in msg and "40.0 GB free of 80.0 GB on cuda:0" in msg
    assert "--sdpa-attention --checkpoint-blocks" in msg
    msg = refusal(est, clips=4, T=5, sdpa=True, checkpoint=True, available=int(12 * GB), source="12 GB", batch_clips=4)
    assert "--micro-batch-clips" in msg and "the batch stays 4 clips" in msg
    msg = refusal(est, clips=1, T=5, sdpa=True, checkpoint=True, available=int(1 * GB), source="1 GB")
    assert "even 1 clip per micro-batch" in msg


def test_train_refuses_before_step_1(tmp_path, monkeypatch):
    from avs_engine.data.prepared import generated_samples, prepare
    from avs_engine.train import memory

    split = prepare(generated_samples("train", 1), 1, 128)
    monkeypatch.setattr(memory, "device_memory", lambda device: (10_000_000, "10 MB available RAM (MemAvailable)"))
    with pytest.raises(ConfigError) as e:
        train(build_model("tiny").config, TrainConfig(batch_clips=1, epochs=1, steps_per_epoch=1), split, None, tmp_path,
              progress=False, log=lambda s: None)
    assert "needs about" in str(e.value) and "10 MB available RAM" in str(e.value)
    assert not (tmp_path / "last.pt").exists()
