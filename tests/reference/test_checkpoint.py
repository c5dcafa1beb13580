"""Checkpoint layouts, strict loading by group, and every way a file can be wrong.

Each refusal is a :class:`CheckpointError` whose message is one line naming the
file.
"""

import pickle
import re
from pathlib import Path

import pytest
import torch

from avs_engine.config import ModelConfig
from avs_engine.errors import CheckpointError
from avs_engine.reference import build_model, load_bundle, load_checkpoint, save_authors_checkpoint, save_bundle
from avs_engine.reference.checkpoint import detect_layout, is_bundle, read_bundle_config

T = 2
VGG_CFG = ModelConfig.from_dict({"base": "tiny", "audio": {"kind": "vggish"}})


# -- helpers ------------------------------------------------------------------------------


def refused(fn, *words) -> str:
    """Run ``fn``; it must raise a one-line CheckpointError containing every word."""
    with pytest.raises(CheckpointError) as ei:
        fn()
    msg = str(ei.value)
    assert "\n" not in msg and "\r" not in msg, msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


def nothing_on_meta(model):
    assert not any(p.is_meta for p in model.parameters())
    assert not any(b.is_meta for b in model.buffers())
    # assign=True keeps them trainable parameters (avs-train fine-tunes a loaded model).
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in model.parameters())


def run(model, inputs):
    with torch.no_grad():
        return model(*inputs)


def same_outputs(model, ref_out, inputs):
    torch.testing.assert_close(run(model, inputs), ref_out, rtol=0, atol=0)  # same weights, same ops


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(T, 3, 128, 128, generator=g), torch.randn(T, 1, 96, 64, generator=g)


@pytest.fixture(scope="module")
def tiny():
    model = build_model("tiny", seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # no zero biases or unit gains: a key loaded into the wrong place would show
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def tiny_out(tiny, inputs):
    return run(tiny, inputs)


@pytest.fixture(scope="module")
def tiny_sd(tiny):
    return {k: v.clone() for k, v in tiny.state_dict().items()}


@pytest.fixture(scope="module")
def full_file(tiny_sd, tmp_path_factory):
    """The whole tiny model (audio backbone included) as a plain torch state_dict."""
    p = tmp_path_factory.mktemp("full") / "tiny_full.pth"
    torch.save(tiny_sd, p)
    return p


def save(tmp_path, name, obj) -> Path:
    p = tmp_path / name
    torch.save(obj, p)
    return p


# -- bundle -------------------------------------------------------------------------------


def test_bundle_round_trip(tmp_path, tiny, tiny_out, inputs):
    p = save_bundle(tiny, tmp_path / "tiny.safetensors", extra_metadata={"trained_on": "nothing"})
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no leftovers
    assert is_bundle(p) and read_bundle_config(p) == tiny.config
    model, report = load_bundle(p)
    assert model.config == tiny.config
    assert report.layout == "bundle" and not report.missing and not report.unexpected
    assert sum(report.loaded.values()) == len(tiny.state_dict())
    nothing_on_meta(model)
    same_outputs(model, tiny_out, inputs)


def test_bundle_refusals(tmp_path, full_file):
    assert not is_bundle(full_file)
    refused(lambda: load_bundle(full_file), str(full_file), "bundle")
    refused(lambda: load_bundle(tmp_path / "absent.safetensors"), "absent.safetensors", "not found")


# -- the authors' layout ------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg_files(tmp_path_factory):
    """An authors'-layout checkpoint of a tiny model with VGGish, and the separate
    torchvggish-layout audio file."""
    model = build_model(VGG_CFG, seed=2)
    d = tmp_path_factory.mktemp("authors")
    ckpt = save_authors_checkpoint(model, d / "stbava.pth")
    vgg = d / "vggish.pth"
    torch.save(model.audio_backbone.state_dict(), vgg)
    return model, ckpt, vgg


def test_authors_layout_meta_load_with_vggish(vgg_files, inputs):
    src, ckpt, vgg = vgg_files
    keys = torch.load(ckpt, weights_only=True).keys()
    assert not any(k.startswith("audio_backbone.") for k in keys)
    assert detect_layout(keys) == "st-bava"

    model = build_model(VGG_CFG, device="meta")
    report = load_checkpoint(model, ckpt, vggish=vgg)
    assert report.layout == "st-bava"
    assert not report.missing and not report.unexpected and not report.ignored
    assert set(report.loaded) == {"audio", "image_encoder", "adapters", "fusion", "mask_decoder"}
    assert any(str(vgg) in n for n in report.notes)
    assert len(str(report).splitlines()) >= 6
    nothing_on_meta(model)
    one = tuple(x[:1] for x in inputs)  # VGGish is the costly part on a CPU: one frame
    same_outputs(model, run(src, one), one)


def test_authors_layout_needs_the_vggish_file(vgg_files):
    _, ckpt, vgg = vgg_files
    refused(lambda: load_checkpoint(build_model(VGG_CFG, device="meta"), ckpt), str(ckpt), "--vggish")
    # The VGGish argument must be a torchvggish file.
    refused(lambda: load_checkpoint(build_model(VGG_CFG, device="meta"), ckpt, vggish=ckpt), "torchvggish")
    # The VGGish file alone is not a model checkpoint.
    refused(lambda: load_checkpoint(build_model(VGG_CFG, device="meta"), vgg), "VGGISH", "allow_missing_fusion")


def test_vggish_file_refused_for_the_small_audio_net(vgg_files, full_file):
    _, _, vgg = vgg_files
    model = build_model("tiny", device="meta")
    refused(lambda: load_checkpoint(model, full_file, vggish=vgg), str(vgg), "'small'", "vggish")


# -- wrappers and formats -------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: {f"module.{k}": v for k, v in sd.items()}, id="module-prefix"),
        pytest.param(lambda sd: {"state_dict": sd, "epoch": 3, "best_miou": 0.5}, id="state_dict-wrapped"),
        pytest.param(lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}}, id="model-wrapped-prefixed"),
    ],
)
def test_wrapped_files_meta_load(tmp_path, tiny_sd, tiny_out, inputs, wrap):
    p = save(tmp_path, "wrapped.pth", wrap(tiny_sd))
    model = build_model("tiny", device="meta")
    report = load_checkpoint(model, p)
    assert report.layout == "st-bava" and not report.missing
    nothing_on_meta(model)
    same_outputs(model, tiny_out, inputs)


def test_legacy_torch_format(tmp_path, tiny_sd, tiny_out, inputs):
    """A pre-zip torch.save file cannot be memory-mapped: it is read without mmap."""
    p = tmp_path / "legacy.pth"
    torch.save(tiny_sd, p, _use_new_zipfile_serialization=False)
    model = build_model("tiny", device="meta")
    load_checkpoint(model, p)
    nothing_on_meta(model)
    same_outputs(model, tiny_out, inputs)


def test_prompt_encoder_keys_are_ignored_and_reported(tmp_path, tiny_sd, tiny_out, inputs):
    extra = {
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.randn(2, 16),
        "prompt_encoder.no_mask_embed.weight": torch.randn(1, 32),
        "prompt_encoder.point_embeddings.0.weight": torch.randn(1, 32),
    }
    p = save(tmp_path, "with_pe.pth", {**tiny_sd, **extra})
    model = build_model("tiny", device="meta")
    report = load_checkpoint(model, p)
    assert sorted(report.ignored["prompt_encoder"]) == sorted(extra)
    assert "prompt_encoder" not in report.loaded
    assert re.search(r"prompt_encoder\s+0 loaded, 3 ignored", str(report)), str(report)
    same_outputs(model, tiny_out, inputs)


# -- partial layouts: SAMA-AVS and official SAM ---------------------------------------------


def test_sama_avs_layout(tmp_path, tiny, tiny_sd, inputs):
    sd = {k: v for k, v in tiny_sd.items() if not k.startswith(("layers.", "audio_embed_layer."))}
    assert detect_layout(sd) == "sama-avs"
    p = save(tmp_path, "sama.pth", sd)
    refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p), str(p), "SAMA-AVS", "fusion", "allow_missing_fusion")
    # Random init cannot be left on the meta device.
    refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p, allow_missing_fusion=True), "meta")

    model = build_model("tiny", seed=5)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_checkpoint(model, p, allow_missing_fusion=True)
    assert report.layout == "sama-avs"
    assert set(report.missing) == {"fusion"}
    assert all(k.startswith(("layers.", "audio_embed_layer.")) for k in report.missing["fusion"])
    assert any("random init" in n for n in report.notes)
    now = model.state_dict()
    for k in now:
        expect = tiny_sd[k] if k in sd else init[k]  # loaded, or left as built
        assert torch.equal(now[k], expect), k
    nothing_on_meta(model)
    assert torch.isfinite(run(model, inputs)).all()


def test_official_sam_layout(tmp_path, tiny_sd, inputs):
    sd = {
        k: v
        for k, v in tiny_sd.items()
        if k.startswith(("image_encoder.", "mask_decoder.")) and not k.startswith("image_encoder.prompt_generator.")
    }
    sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 16)
    sd["prompt_encoder.no_mask_embed.weight"] = torch.randn(1, 32)
    assert detect_layout(sd) == "sam"
    p = save(tmp_path, "sam_vit_tiny.pth", sd)
    refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p), str(p), "SAM", "adapters", "fusion")
    # No audio weights in a SAM file either: that needs its own opt-in.
    refused(lambda: load_checkpoint(build_model("tiny", seed=6), p, allow_missing_fusion=True), "audio", "--vggish")

    model = build_model("tiny", seed=6)
    report = load_checkpoint(model, p, allow_missing_fusion=True, allow_missing_audio=True)
    assert report.layout == "sam"
    assert set(report.missing) == {"adapters", "fusion", "audio"}
    assert len(report.ignored["prompt_encoder"]) == 2
    now = model.state_dict()
    for k, v in sd.items():
        if not k.startswith("prompt_encoder."):
            assert torch.equal(now[k], v), k
    assert torch.isfinite(run(model, inputs)).all()


# -- key and shape errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,group",
    [
        ("mask_decoder.iou_token.weight", "mask_decoder"),
        ("layers.1.norm5_2.bias", "fusion"),
        ("layers.0.avt_attention.in_proj_weight", "fusion"),
        ("pe_layer.positional_encoding_gaussian_matrix", "fusion"),
        ("image_encoder.blocks.1.attn.rel_pos_h", "image_encoder"),
        ("image_encoder.prompt_generator.shared_mlp.bias", "adapters"),
        ("audio_backbone.embeddings.0.weight", "audio"),
    ],
)
def test_missing_key_names_its_group(tmp_path, tiny_sd, key, group):
    sd = dict(tiny_sd)
    del sd[key]
    p = save(tmp_path, "missing.pth", sd)
    refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p), str(p), "missing", group, key)


@pytest.mark.parametrize("key", ["layers.7.norm1.weight", "mask_decoder.extra_head.weight", "optimizer_state"])
def test_unexpected_key_is_refused(tmp_path, tiny_sd, key):
    p = save(tmp_path, "unexpected.pth", {**tiny_sd, key: torch.randn(3)})
    refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p), str(p), "unexpected", key)


def test_other_preset_is_refused_with_both_shapes(tmp_path):
    other = ModelConfig.from_dict({"base": "tiny", "encoder": {"embed_dim": 96}})
    p = save(tmp_path, "wide.pth", build_model(other, seed=0).state_dict())
    msg = refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p), str(p), "preset 'tiny'")
    m = re.search(r"(image_encoder\.\S+) is \[([\d, ]+)\], model expects \[([\d, ]+)\]", msg)
    assert m, msg
    assert "96" in m.group(2) and "64" in m.group(3)


# -- files that are not checkpoints ---------------------------------------------------------


class Payload:
    """Unpickling this would create a marker file: a stand-in for code in a hostile pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path):
    Path(path).write_text("the checkpoint ran code")
    return path


def test_pickled_object_is_refused_and_never_runs(tmp_path, tiny_sd):
    marker = tmp_path / "ran.txt"
    zipped = save(tmp_path, "evil.pth", {**tiny_sd, "payload": Payload(marker)})
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"layers.0.norm1.weight": Payload(marker)}, protocol=2))
    for p in (zipped, raw):
        refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p), str(p), "not a readable checkpoint")
        assert not marker.exists(), "the checkpoint's code ran"
    # The payload is real: an unsafe load would have run it.
    torch.load(zipped, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "name,content,words",
    [
        ("empty.pth", b"", ["empty"]),
        ("garbage.pth", bytes(range(256)) * 7, ["not a readable checkpoint"]),
        ("text.pth", b"this is not a checkpoint\n" * 5, ["not a readable checkpoint"]),
        # Looks like safetensors (8-byte header length, then "{"), but is not.
        ("fake.safetensors", (40).to_bytes(8, "little") + b'{"a": broken' + b"\x00" * 64, ["not a readable checkpoint"]),
    ],
)
def test_unreadable_files(tmp_path, name, content, words):
    p = tmp_path / name
    p.write_bytes(content)
    refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p), str(p), *words)


@pytest.mark.parametrize(
    "obj,words",
    [
        ([1, 2, 3], ["no tensors"]),
        ({"epoch": 3, "lr": 0.1}, ["no tensors"]),
        ({"foo.weight": torch.randn(2)}, ["no known layout", "foo.weight"]),
    ],
)
def test_files_without_a_model(tmp_path, obj, words):
    p = save(tmp_path, "odd.pth", obj)
    refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p), str(p), *words)


def test_missing_file(tmp_path):
    p = tmp_path / "nowhere.pth"
    refused(lambda: load_checkpoint(build_model("tiny", device="meta"), p), str(p), "not found")
    refused(lambda: load_checkpoint(build_model("tiny", device="meta"), tmp_path), "not found")


def test_bundle_with_broken_config(tmp_path, tiny):
    from safetensors.torch import save_file

    from avs_engine.reference.checkpoint import BUNDLE_FORMAT

    p = tmp_path / "broken.safetensors"
    save_file({"pe_layer.positional_encoding_gaussian_matrix": torch.randn(2, 16)}, str(p), metadata={"format": BUNDLE_FORMAT, "config": "{oops"})
    refused(lambda: load_bundle(p), str(p), "config")
    assert not is_bundle(p)
