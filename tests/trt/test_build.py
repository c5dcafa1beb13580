"""The build's decisions (plain Python) and its calls into TensorRT, against a fake ``tensorrt``.

The fake (tests/trt/fake_tensorrt.py) shows that OUR logic asks for the right things; it does
not prove the real TensorRT API behaves as documented -- the ``trt`` group does that.
"""

import pytest

from avs_engine.errors import BackendError, ConfigError
from avs_engine.artifacts.profiles import TRange
from avs_engine.export.tensorrt_build import (
    ISLAND_LAYER_TYPES, BuildProgress, Heartbeat, build_engines, parse_version, plan_build,
)
from avs_engine.artifacts.spec import STAGE_ORDER, STAGES
from tests.trt.fake_tensorrt import make_fake_tensorrt

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


def records(trt):
    return [r for call, r in trt.calls if call == "build_serialized_network"]


# -- decisions ---------------------------------------------------------------------------------------


def test_parse_version():
    assert parse_version("10.13.0.35") == (10, 13, 0, 35)
    assert parse_version("11.0.0") == (11, 0, 0)
    assert parse_version("10.9.0b1") == (10, 9, 0)
    with pytest.raises(BackendError):
        parse_version("dev")


@pytest.mark.parametrize("version,flags", [("10.0.1.6", ("STRONGLY_TYPED",)), ("10.13.0.35", ("STRONGLY_TYPED",)), ("11.0.0.1", ())])
def test_plan_fp16_is_strongly_typed(version, flags):
    p = plan_build("fp16", version, ["fp32", "fp16"])
    assert (p.onnx_precision, p.engine_precision, p.route) == ("fp16", "fp16", "strongly-typed")
    assert p.network_flags == flags and p.builder_flags == () and not p.pin_float32


def test_plan_fp32_and_weak_fp16():
    p = plan_build("fp32", "11.2.0", ["fp32"])
    assert (p.onnx_precision, p.engine_precision, p.network_flags) == ("fp32", "fp32", ())
    w = plan_build("fp16-weak", "10.13.0.35", ["fp32"])
    assert (w.onnx_precision, w.engine_precision, w.route) == ("fp32", "fp16", "weakly-typed-fp16")
    assert w.network_flags == () and w.builder_flags == ("FP16", "OBEY_PRECISION_CONSTRAINTS") and w.pin_float32


def test_plan_refusals_name_the_fix():
    with pytest.raises(BackendError, match="fp16-weak needs TensorRT 10.*strongly typed.*avs-export onnx --precision fp16"):
        plan_build("fp16-weak", "11.0.0", ["fp32", "fp16"])
    with pytest.raises(BackendError, match="no fp16 graphs.*exported: fp32.*--precision fp16 --out D.*fp16-weak"):
        plan_build("fp16", "10.13.0", ["fp32"], "D")
    with pytest.raises(BackendError, match="no fp16 graphs") as e:
        plan_build("fp16", "11.1.0", ["fp32"], "D")
    assert "fp16-weak" not in str(e.value)  # not offered on 11
    with pytest.raises(BackendError, match="no fp32 graphs"):
        plan_build("fp16-weak", "10.13.0", ["fp16"])
    with pytest.raises(BackendError, match="TensorRT 8.6.1 is not supported.*10.x or 11.x.*pip install tensorrt"):
        plan_build("fp16", "8.6.1", ["fp16"])
    with pytest.raises(ConfigError):
        plan_build("int8", "10.13.0", ["fp16"])


def test_weak_route_pins_all_of_reduce_l2(tmp_path):
    """The parser builds ReduceL2 as x*x -> REDUCE sum -> UNARY sqrt: all three run in float32 (the
    square overflows FP16 from |x| > 256), not the reduction alone; neighbours that are no part of
    it (the division by the norm, a plain product) keep FP16."""
    import onnx
    from onnx import TensorProto, helper

    from avs_engine.export.tensorrt_build import pin_float32_layers

    nodes = [
        helper.make_node("Mul", ["x", "w"], ["y"], name="scale"),
        helper.make_node("ReduceL2", ["y"], ["norm"], name="l2", keepdims=1),
        helper.make_node("Div", ["y", "norm"], ["out"], name="normalise"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor("w", TensorProto.FLOAT, [8], [1.0] * 8)])
    path = tmp_path / "l2.onnx"
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    trt = make_fake_tensorrt("10.13.0.35")
    network = trt.Builder(None).create_network(0)
    assert trt.OnnxParser(network, None).parse_from_file(str(path))
    assert [(l.name, l.type.name) for l in network.layers] == [
        ("scale", "ELEMENTWISE"), ("l2", "ELEMENTWISE"), ("l2_1", "REDUCE"), ("l2_2", "UNARY"), ("normalise", "ELEMENTWISE")]
    assert pin_float32_layers(trt, network) == 3
    pinned = {l.name: (l.precision, l.output_types) for l in network.layers}
    for name in ("l2", "l2_1", "l2_2"):
        assert pinned[name] == (trt.float32, {0: trt.float32}), name
    assert pinned["scale"] == (None, {}) and pinned["normalise"] == (None, {})


def test_island_layer_types_cover_the_fp16_islands():
    from avs_engine.export.fp16 import FLOAT32_ISLANDS

    to_layer = {"LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "ReduceMean": "REDUCE", "ReduceSum": "REDUCE", "ReduceL2": "REDUCE"}
    assert {to_layer[op] for op in FLOAT32_ISLANDS} == set(ISLAND_LAYER_TYPES)


def test_progress_lines_are_few_and_thread_safe():
    lines, now = [], [0.0]
    p = BuildProgress(lines.append, "image_encoder", interval=10.0, clock=lambda: now[0])
    p.phase_start("Building engine", None, 100)
    p.phase_start("Tactics", "Building engine", 5)
    for s in range(5):
        assert p.step_complete("Tactics", s) is True  # nested phase: silent, never cancels
    p.phase_finish("Tactics")
    for s in range(100):
        now[0] += 0.5
        p.step_complete("Building engine", s)
    p.phase_finish("Building engine")
    assert lines[0] == "  image_encoder: Building engine (100 steps)"
    assert lines[-1] == "  image_encoder: Building engine done in 50.0 s"
    assert 3 <= len(lines) <= 8  # throttled to one step line per 10 s


def test_heartbeat_without_a_progress_monitor():
    import time

    lines = []
    with Heartbeat(lines.append, "fusion", interval=0.02):
        deadline = time.monotonic() + 10  # a loaded machine may not schedule the thread every 20 ms
        while len(lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    n = len(lines)
    time.sleep(0.05)
    assert n >= 2 and len(lines) == n and lines[0].startswith("  fusion: still building (")


# -- the build against the fake -------------------------------------------------------------------------


@pytest.mark.parametrize("version,flags", [("10.13.0.35", 1 << 1), ("11.0.0.114", 0)])
def test_build_flags_profiles_and_cache(onnx_dir, tmp_path, version, flags):
    trt = make_fake_tensorrt(version)
    lines = []
    m = build_engines(onnx_dir, tmp_path / "e", trt=trt, gpu=H100, t_range=TRange(1, 5, 8), workspace_gb=2, progress=lines.append)
    assert [c for c, _ in trt.calls if c == "create_network"] == ["create_network"] * 4
    assert all(v == flags for c, v in trt.calls if c == "create_network")
    parsed = [v for c, v in trt.calls if c == "parse_from_file"]
    assert parsed == [str(onnx_dir / "fp16" / f"{s}.onnx") for s in STAGE_ORDER]  # the FP16 graphs, as listed
    recs = records(trt)
    for stage, rec in zip(STAGE_ORDER, recs):
        assert rec["builder_flags"] == [] and rec["pinned"] == []
        assert rec["workspace"] == 2 << 30
        (profile,) = rec["profiles"]  # one profile per graph, one entry per graph input
        assert sorted(profile) == sorted(STAGES[stage].input_names)
        for lo, opt, hi in profile.values():
            assert (lo[0], opt[0], hi[0]) == (1, 5, 8)
        assert m.engines[stage].profile == {k: profile[k] for k in m.engines[stage].profile}
    # the timing cache grows build after build, and is on disk for the next run
    assert recs[0]["timing_cache_in"] == "" and recs[1]["timing_cache_in"] == "|log_mel"
    assert recs[3]["timing_cache_in"] == "|log_mel|image+a128|enc+a128"
    assert (tmp_path / "e" / "timing.cache").read_bytes() == b"|log_mel|image+a128|enc+a128|enc+dense+sparse"
    assert any("Building engine (2 steps)" in line for line in lines)  # progress monitor attached
    assert lines[-1].startswith("engines and engines.json saved to")


def test_weak_route_pins_the_islands_on_10(onnx_dir, tmp_path):
    trt = make_fake_tensorrt("10.8.0.43")
    build_engines(onnx_dir, tmp_path / "e", precision="fp16-weak", trt=trt, gpu=H100)
    assert [v for c, v in trt.calls if c == "parse_from_file"][0].endswith("fp32/audio.onnx")
    recs = records(trt)
    assert all(r["network_flags"] == 0 and r["builder_flags"] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"] for r in recs)
    decoder = recs[STAGE_ORDER.index("mask_decoder")]
    assert decoder["pinned"] == ["ReduceSum_2"] == decoder["pinned_outputs"]  # the graph's one REDUCE layer
    with pytest.raises(BackendError, match="fp16-weak needs TensorRT 10"):
        build_engines(onnx_dir, tmp_path / "f", precision="fp16-weak", trt=make_fake_tensorrt("11.0.0"), gpu=H100)


def test_parser_errors_are_reported_by_node(onnx_dir, tmp_path):
    errs = [(4, "/blocks.0/attn/Attention", "Attention", "UNSUPPORTED_NODE", "Attention needs opset 23\nmore text"),
            (9, "/neck/Pow", "Pow", "INVALID_NODE", "bad")]
    with pytest.raises(BackendError) as e:
        build_engines(onnx_dir, tmp_path / "e", trt=make_fake_tensorrt(parse_errors=errs), gpu=H100)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{onnx_dir / 'fp16' / 'audio.onnx'}: TensorRT 10.13.0.35 cannot parse this graph: ")
    assert "node 4 '/blocks.0/attn/Attention' (Attention): UNSUPPORTED_NODE: Attention needs opset 23" in msg
    assert "[+1 more: node 9 '/neck/Pow' (Pow): INVALID_NODE: bad]" in msg


def test_build_failures_are_one_line(onnx_dir, tmp_path, capsys):
    with pytest.raises(BackendError, match="could not build the audio engine .*: out of memory while building layer foo"):
        build_engines(onnx_dir, tmp_path / "a", trt=make_fake_tensorrt(build_fails=True), gpu=H100)
    assert "[TensorRT] out of memory" in capsys.readouterr().err  # TensorRT's own message, printed as it came
    with pytest.raises(BackendError, match="cannot create a builder here \\(no usable GPU or driver\\?\\): pybind11"):
        build_engines(onnx_dir, tmp_path / "b", trt=make_fake_tensorrt(builder_fails=True), gpu=H100)
    with pytest.raises(BackendError, match="rejected the optimisation profile"):
        build_engines(onnx_dir, tmp_path / "c", trt=make_fake_tensorrt(reject_profile=True), gpu=H100)


def test_foreign_timing_cache_is_dropped_and_no_monitor_is_fine(onnx_dir, tmp_path):
    out = tmp_path / "e"
    out.mkdir()
    (out / "timing.cache").write_bytes(b"from-another-gpu")
    trt = make_fake_tensorrt(reject_cache=True, progress_monitor=False)
    lines = []
    build_engines(onnx_dir, out, trt=trt, gpu=H100, progress=lines.append)
    assert records(trt)[0]["timing_cache_in"] == ""
    assert any("timing cache from another GPU or TensorRT ignored" in line for line in lines)
    assert not any("steps)" in line for line in lines)  # no IProgressMonitor in these bindings: no phase lines


def test_corrupt_timing_cache_starts_an_empty_one(onnx_dir, tmp_path):
    """TensorRT gives None for a cache it cannot read; set_timing_cache(None) would be a TypeError."""
    out = tmp_path / "e"
    out.mkdir()
    (out / "timing.cache").write_bytes(b"corrupt\x00\x13 half a file")
    trt = make_fake_tensorrt(unreadable_cache=True)
    lines = []
    build_engines(onnx_dir, out, trt=trt, gpu=H100, progress=lines.append)
    recs = records(trt)
    assert recs[0]["timing_cache_in"] == "" and recs[1]["timing_cache_in"] == "|log_mel"  # then carried as usual
    assert sum("timing cache unreadable (corrupt or truncated?): started an empty one" in line for line in lines) == 1
    assert (out / "timing.cache").read_bytes() == b"|log_mel|image+a128|enc+a128|enc+dense+sparse"


def test_up_to_date_engines_are_kept(onnx_dir, tmp_path):
    out = tmp_path / "e"
    build_engines(onnx_dir, out, trt=make_fake_tensorrt(), gpu=H100)
    trt = make_fake_tensorrt()
    lines = []
    build_engines(onnx_dir, out, trt=trt, gpu=H100, progress=lines.append)
    assert records(trt) == [] and sum("up to date" in line for line in lines) == 4
    build_engines(onnx_dir, out, trt=trt, gpu=H100, force=True)
    assert len(records(trt)) == 4
    trt = make_fake_tensorrt("10.14.1.48")  # another TensorRT: everything rebuilt
    build_engines(onnx_dir, out, trt=trt, gpu=H100)
    assert len(records(trt)) == 4
    trt = make_fake_tensorrt("10.14.1.48")
    build_engines(onnx_dir, out, trt=trt, gpu=H100, t_range=TRange(1, 5, 16))  # another T range: too
    assert len(records(trt)) == 4
    (out / "audio.engine").write_bytes(b"damaged")
    trt = make_fake_tensorrt("10.14.1.48")
    build_engines(onnx_dir, out, trt=trt, gpu=H100, t_range=TRange(1, 5, 16))
    assert len(records(trt)) == 1  # only the damaged one


def test_argument_errors_come_before_tensorrt(onnx_dir, tmp_path, no_tensorrt):
    with pytest.raises(ConfigError, match="min-t=3 opt-t=2"):
        build_engines(onnx_dir, tmp_path, t_range=TRange(3, 2, 4))
    with pytest.raises(ConfigError, match="precision must be one of"):
        build_engines(onnx_dir, tmp_path, precision="int8")
    with pytest.raises(BackendError, match="engine folder not found|no manifest.json"):
        build_engines(tmp_path / "missing", tmp_path)
    with pytest.raises(BackendError, match="^TensorRT is not installed here \\(pip install tensorrt"):
        build_engines(onnx_dir, tmp_path)
