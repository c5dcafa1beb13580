"""Model configurations: presets, dict/JSON overrides, and the errors a user can cause."""

import json

import pytest

from avs_engine.config import PRESETS, ModelConfig, from_file, from_name, resolve
from avs_engine.errors import ConfigError


def test_presets_exist_and_validate():
    assert set(PRESETS) >= {"tiny", "vit_b", "vit_l", "vit_h"}
    for name, cfg in PRESETS.items():
        cfg.validate(name)
        assert cfg.name == name
        assert from_name(name) is cfg
        assert resolve(name) is cfg


@pytest.mark.parametrize(
    "name,width,depth,heads,globals_",
    [
        # segment_anything/build_sam.py
        ("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
        ("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
        ("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    ],
)
def test_sam_presets_match_design(name, width, depth, heads, globals_):
    cfg = from_name(name)
    e = cfg.encoder
    assert (e.embed_dim, e.depth, e.num_heads, e.global_attn_indexes) == (width, depth, heads, globals_)
    assert (e.img_size, e.patch_size, e.window_size, e.out_chans, e.adapter_dim) == (1024, 16, 14, 256, 512)
    assert cfg.grid == 64
    assert (cfg.fusion.dim, cfg.fusion.depth, cfg.fusion.num_heads) == (256, 5, 8)  # S4 weights
    assert (cfg.audio.kind, cfg.audio.embed_dim) == ("vggish", 128)
    assert cfg.decoder.num_multimask_outputs == 3
    assert cfg.output_size == 224


def test_from_dict_base_and_overrides():
    cfg = ModelConfig.from_dict({"base": "vit_b", "fusion": {"depth": 7}, "output_size": 112})
    assert cfg.fusion.depth == 7
    assert cfg.fusion.num_heads == 8  # untouched fields keep the base's values
    assert cfg.encoder == PRESETS["vit_b"].encoder
    assert cfg.output_size == 112
    # JSON lists become tuples, so configs stay hashable and comparable.
    cfg = ModelConfig.from_dict({"base": "tiny", "encoder": {"global_attn_indexes": [0, 2]}})
    assert cfg.encoder.global_attn_indexes == (0, 2)
    assert cfg.encoder.embed_dim == PRESETS["tiny"].encoder.embed_dim
    # No base: the dataclass defaults (the authors' vit_h model).
    assert ModelConfig.from_dict({}) == PRESETS["vit_h"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_to_json_round_trip(name):
    cfg = PRESETS[name]
    assert ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg


@pytest.mark.parametrize(
    "d,words",
    [
        ({"base": "tiny", "colour": 3}, ["colour"]),
        ({"base": "tiny", "fusion": {"depht": 7}}, ["fusion", "depht"]),
        ({"base": "tiny", "fusion": 7}, ["fusion", "object"]),
        ({"base": "nope"}, ["nope", "tiny"]),
        ({"base": {"x": 1}}, ["base"]),
        ({"base": "tiny", "encoder": {"embed_dim": "64"}}, ["encoder.embed_dim", "integer"]),
        ({"base": "tiny", "encoder": {"global_attn_indexes": [1, "a"]}}, ["global_attn_indexes"]),
        ({"base": "tiny", "encoder": {"num_heads": 0}}, ["num_heads"]),
        ({"base": "tiny", "encoder": {"num_heads": 5}}, ["divisible"]),
        ({"base": "tiny", "encoder": {"img_size": 100}}, ["patch_size"]),
        ({"base": "tiny", "encoder": {"global_attn_indexes": [9]}}, ["global_attn_indexes", "9"]),
        ({"base": "tiny", "fusion": {"depth": -1}}, ["fusion.depth"]),
        ({"base": "tiny", "fusion": {"dropout": 1.5}}, ["dropout"]),
        ({"base": "tiny", "fusion": {"dim": 64}}, ["out_chans"]),
        ({"base": "tiny", "audio": {"kind": "wav2vec"}}, ["audio.kind", "wav2vec"]),
        ([1, 2], ["object"]),
    ],
)
def test_from_dict_errors(d, words):
    with pytest.raises(ConfigError) as ei:
        ModelConfig.from_dict(d, source="my.json")
    msg = str(ei.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    if isinstance(d, dict) and not isinstance(d.get("base", ""), dict) and d.get("base") != "nope":
        assert msg.startswith("my.json:"), msg


def test_unknown_preset():
    with pytest.raises(ConfigError, match="vit_x"):
        from_name("vit_x")
    with pytest.raises(ConfigError, match="vit_x"):
        resolve("vit_x")


def test_from_file(tmp_path):
    good = tmp_path / "s4.json"
    good.write_text(json.dumps({"base": "tiny", "fusion": {"depth": 3}}))
    cfg = from_file(good)
    assert cfg.fusion.depth == 3 and cfg.encoder == PRESETS["tiny"].encoder
    assert resolve(good) == cfg
    assert resolve(str(good)) == cfg
    assert resolve(cfg) is cfg


@pytest.mark.parametrize(
    "content,words",
    [
        (b'{"base": "tiny", ', ["not valid JSON", "line 1"]),
        (b"\xff\xfe\x00garbage", ["not valid JSON"]),
        (b'"just a string"', ["JSON object"]),
        (b'{"base": "tiny", "fusion": {"heads": 2}}', ["heads"]),
    ],
)
def test_from_file_errors_name_the_file(tmp_path, content, words):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(ConfigError) as ei:
        from_file(bad)
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(bad) in msg
    for w in words:
        assert w in msg, msg


def test_from_file_missing_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        from_file(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="absent.json"):
        resolve(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match=str(tmp_path)):
        from_file(tmp_path)
