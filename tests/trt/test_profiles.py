"""Profile shapes and buffer sizes from the spec and T: pure Python."""

import numpy as np
import pytest

from avs_engine.config import from_name
from avs_engine.errors import BackendError, ConfigError
from avs_engine.artifacts.profiles import MAX_T, TRange, binding_sizes, chain_buffers, profile_shapes, symbol_ranges
from avs_engine.artifacts.spec import STAGE_ORDER, STAGES

TINY, VIT_H = from_name("tiny"), from_name("vit_h")


@pytest.mark.parametrize("bad", [(0, 1, 2), (2, 1, 3), (1, 5, 4), (1, 2, MAX_T + 1), (1.5, 2, 3), (True, 2, 3)])
def test_t_range_validation(bad):
    with pytest.raises(ConfigError, match="T range"):
        TRange(*bad).validate()


def test_t_range_contains_and_roundtrip():
    t = TRange(2, 5, 8).validate()
    assert [t.contains(x) for x in (1, 2, 8, 9)] == [False, True, True, False]
    assert TRange.from_list(t.as_list()) == t


def test_profile_shapes_vit_h_every_input():
    t = TRange(1, 5, 8)
    enc = profile_shapes("image_encoder", VIT_H, t)
    assert enc == {
        "image": ((1, 3, 1024, 1024), (5, 3, 1024, 1024), (8, 3, 1024, 1024)),
        "a128": ((1, 128), (5, 128), (8, 128)),
    }
    dec = profile_shapes("mask_decoder", VIT_H, t)
    assert dec["enc"] == ((1, 256, 64, 64), (5, 256, 64, 64), (8, 256, 64, 64))
    assert dec["dense"] == dec["enc"]
    assert dec["sparse"] == ((1, 2, 256), (5, 2, 256), (8, 2, 256))
    for stage in STAGE_ORDER:  # exactly the declared inputs, T first, other axes fixed
        shapes = profile_shapes(stage, TINY, t)
        assert list(shapes) == list(STAGES[stage].input_names)
        for lo, opt, hi in shapes.values():
            assert (lo[0], opt[0], hi[0]) == (1, 5, 8) and lo[1:] == opt[1:] == hi[1:]


def test_profile_rejects_bad_range_and_unknown_symbol():
    with pytest.raises(ConfigError):
        profile_shapes("audio", TINY, TRange(3, 2, 4))
    with pytest.raises(ConfigError, match="unknown shape symbol"):
        symbol_ranges(TINY, TRange(), {"Q": (1, 1, 1)})
    # another dynamic symbol, if one is ever declared, gets its own range
    r = symbol_ranges(TINY, TRange(), {"S": (64, 128, 256)})
    assert r["S"] == (64, 128, 256) and r["G"] == (16, 16, 16)


@pytest.mark.parametrize("T", [1, 5, 8])
def test_binding_sizes_every_binding_vit_h(T):
    f = 4  # float32 bytes
    want = {
        "audio": {"log_mel": T * 96 * 64 * f, "a128": T * 128 * f},
        "image_encoder": {"image": T * 3 * 1024 * 1024 * f, "a128": T * 128 * f, "enc": T * 256 * 64 * 64 * f},
        "fusion": {"enc": T * 256 * 64 * 64 * f, "a128": T * 128 * f, "dense": T * 256 * 64 * 64 * f, "sparse": T * 2 * 256 * f},
        "mask_decoder": {"enc": T * 256 * 4096 * f, "dense": T * 256 * 4096 * f, "sparse": T * 512 * f, "logits": T * 256 * 256 * f},
    }
    for stage in STAGE_ORDER:
        got = binding_sizes(stage, VIT_H, T)
        assert {b.name: b.nbytes for b in got} == want[stage]
        assert [b.mode for b in got] == ["input"] * len(STAGES[stage].inputs) + ["output"] * len(STAGES[stage].outputs)


def test_binding_sizes_follow_engine_dtypes_and_refuse_others():
    b = {x.name: x for x in binding_sizes("audio", TINY, 3, {"a128": "float16"})}
    assert b["a128"].nbytes == 3 * 128 * 2 and b["log_mel"].nbytes == 3 * 96 * 64 * 4
    with pytest.raises(BackendError, match="int8"):
        binding_sizes("audio", TINY, 3, {"a128": "int8"})


@pytest.mark.parametrize("T", [1, 2, 7])
def test_chain_buffers_one_per_name(T):
    bufs = chain_buffers(TINY, T)
    assert sorted(bufs) == ["a128", "dense", "enc", "image", "log_mel", "logits", "sparse"]
    assert bufs["logits"].shape == (T, 1, 64, 64)
    assert bufs["image"].nbytes == T * 3 * 128 * 128 * 4
    total = sum(b.nbytes for b in bufs.values())
    assert total == T * 4 * (96 * 64 + 128 + 3 * 128 * 128 + 2 * 32 * 16 * 16 + 2 * 32 + 64 * 64)
    assert np.all([b.shape[0] == T for b in bufs.values()])
