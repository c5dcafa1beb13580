"""Training on a tiny generated set: the loss goes down, checkpoints load back strictly, resume continues."""

from __future__ import annotations

import json

import numpy as np
import torch

from avs_engine.reference import build_model, load_bundle
from avs_engine.reference.checkpoint import read_state_dict
from avs_engine.train.loop import forward_clips, mask_loss, train
from avs_engine.train.recipe import TrainConfig
from avs_engine.reference.variants import apply_variant

TINY = "tiny"


def _recipe(**kw):
    base = dict(lr=2e-3, warmup_steps=0, loss="bce+iou", target="lowres", freeze=(), batch_clips=2, epochs=1,
                steps_per_epoch=8, threads=0)
    base.update(kw)
    return TrainConfig().replace(**base)


def test_loss_goes_down_and_checkpoints_load_strictly(tmp_path, tiny_split):
    cfg = _recipe()
    torch.manual_seed(0)
    probe = build_model(TINY, seed=cfg.seed)
    images = torch.from_numpy(np.stack([tiny_split.image_input(i) for i in range(2)]))
    log_mel = torch.from_numpy(np.stack([tiny_split.log_mel_input(i) for i in range(2)]))
    masks = torch.from_numpy(np.stack([tiny_split.masks(i) for i in range(2)]))
    valid = torch.ones(2, 5, dtype=torch.bool)

    def loss_of(model):
        model.eval()
        with torch.no_grad():
            return float(mask_loss(model, forward_clips(model, images, log_mel), masks, valid, cfg))

    before = loss_of(probe)
    res = train(build_model(TINY).config, cfg, tiny_split, tiny_split, tmp_path, progress=False, log=lambda s: None)
    model, report = load_bundle(res.best_bundle)
    assert not report.missing and not report.unexpected
    after = loss_of(model)
    assert after < 0.9 * before, (before, after)
    # the authors' layout: every key but the audio backbone (VGGish is a separate file there)
    sd, _ = read_state_dict(tmp_path / "best_authors.pth")
    want = {k for k in model.state_dict() if not k.startswith("audio_backbone.")}
    assert set(sd) == want
    fresh = build_model(TINY)
    missing, unexpected = fresh.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith("audio_backbone.") for k in missing)
    hist = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert hist[0]["step"] == 8 and 0.0 <= hist[0]["val_miou"] <= 1.0


def test_resume_continues_where_it_stopped(tmp_path, tiny_split):
    cfg = _recipe(steps_per_epoch=2, epochs=1, batch_clips=1)
    train(build_model(TINY).config, cfg, tiny_split, None, tmp_path, progress=False, log=lambda s: None)
    logs = []
    res = train(build_model(TINY).config, cfg.replace(epochs=2), tiny_split, None, tmp_path,
                resume=tmp_path / "last.pt", progress=False, log=logs.append)
    assert any("resumed" in line and "step 2/4" in line for line in logs)
    assert [h["step"] for h in res.history] == [2, 4]


def test_s4_protocol_uses_only_frames_with_masks():
    cfg = _recipe()
    model = build_model(TINY, seed=0)
    logits = torch.randn(1, 5, 1, 64, 64, requires_grad=True)
    masks = torch.zeros(1, 5, 224, 224, dtype=torch.bool)
    valid = torch.tensor([[True, False, False, False, False]])
    mask_loss(model, logits, masks, valid, cfg).backward()
    g = logits.grad.abs().flatten(2).sum(-1)[0]
    assert g[0] > 0 and (g[1:] == 0).all()


def test_fusion_variants_keep_weights_and_change_time_mixing():
    model = build_model(TINY, seed=0)
    keys = set(model.state_dict())
    x = torch.randn(5, 3, 128, 128)
    a = torch.randn(5, 1, 96, 64)
    a2 = a.clone()
    a2[3] += 3.0  # change the sound of second 3 only
    out = {}
    for v in ("full", "no_temporal", "no_audio_update"):
        apply_variant(model, v)
        assert set(model.state_dict()) == keys
        with torch.no_grad():
            out[v] = (model(x, a), model(x, a2))
    # the temporal updates carry second 3's sound to second 0; without them frames are independent
    assert not torch.allclose(out["full"][0][0], out["full"][1][0])
    assert torch.allclose(out["no_temporal"][0][0], out["no_temporal"][1][0], atol=1e-6)


def test_paper_recipe_freezes_encoder_and_audio_but_not_adapters():
    from avs_engine.train.loop import set_trainable

    model = build_model(TINY, seed=0)
    counts = set_trainable(model, TrainConfig().freeze)
    assert set(counts) == {"adapters", "fusion", "mask_decoder"}
    for name, p in model.named_parameters():
        frozen = name.startswith("audio_backbone.") or (
            name.startswith("image_encoder.") and not name.startswith("image_encoder.prompt_generator."))
        assert p.requires_grad != frozen, name


def test_audio_pretraining_gives_a_loadable_backbone(tiny_split):
    from avs_engine.data.generator import plan_clip
    from avs_engine.train.audio_pretrain import pretrain_audio, sounding_kind_labels

    y = sounding_kind_labels(tiny_split.names, 5)
    plan = plan_clip(int(tiny_split.names[0].split("_")[1]))
    for l in range(5):
        assert set(np.flatnonzero(y[0, l])) == {plan.objects[j].kind for j in np.flatnonzero(plan.sounding[l])}
    model = build_model(TINY, seed=0)
    sd = pretrain_audio(model.config.audio, tiny_split, steps=3, batch=4, log=lambda s: None)
    model.audio_backbone.load_state_dict(sd, strict=True)
