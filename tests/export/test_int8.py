"""INT8 graphs of the bundled demo model (trained weights): avs-export int8 on its shipped FP32 graphs and
avs-export onnx --precision int8, the manifest's record of what was quantized, the fall-back to FP32 when a
graph misses the bar, a failure that leaves the folder as it was, and the INT8 chain against FP32."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from avs_engine.artifacts.graph_manifest import read_manifest
from avs_engine.artifacts.spec import STAGE_ORDER
from avs_engine.models import DEMO_GRAPHS, DEMO_WEIGHTS


INTEGER_OPS = {"MatMulNBits", "MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "ConvInteger"}


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    """The demo's shipped graphs with the int8 set added by the real command (checked on 2 generated clips of 2 s)."""
    from tests.int8_graphs import demo_int8

    return demo_int8(tmp_path_factory.getbasetemp())


def test_export_writes_int8_graphs_and_says_what_was_quantized(int8_export):
    out, output = int8_export
    m = read_manifest(out)  # every listed file present with its sha256
    assert m.precisions == ["fp32", "fp16", "int8"]
    assert not list(out.glob(".int8-staging-*"))  # the staging folder is gone
    lines = [ln for ln in output.splitlines() if " int8 " in ln and ln.startswith("[")]
    assert len(lines) == len(STAGE_ORDER)  # one line per stage
    computes = m.stage_precisions("int8")
    assert computes["image_encoder"] == "int8" and computes["audio"] == "fp32"
    for stage in STAGE_ORDER:
        q = m.graph("int8", stage).quantization
        assert q["computes"] in ("int8", "fp32") and q["reason"]
        assert "quantized" in q and "kept_fp32" in q and "plan" in q
        path = m.graph_path("int8", stage)
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        if q["computes"] == "int8":
            assert path.parent.name == "int8" and ops & INTEGER_OPS
            assert q["quantized"]["MatMul"] > 0
            # the attention's activation x activation products stay float32
            assert any("activation x activation" in k for k in q["kept_fp32"])
            assert q["check"]["iou_median"] >= q["check"]["min_iou"]
        else:
            assert path == m.graph_path("fp32", stage) and not ops & INTEGER_OPS


def test_int8_chain_agrees_with_fp32_on_fresh_clips(int8_export):
    """Fresh generated clips (not the export check's): logits rel L2 <= 0.05, per-frame mask IoU median >= 0.98."""
    from avs_engine.backends.onnxruntime_backend import OnnxRuntimeRunner
    from avs_engine.checks.compare import mask_iou, rel_l2
    from avs_engine.data import prepared_generated
    from avs_engine.io.postprocess import logits_to_masks

    out, _ = int8_export
    data = prepared_generated("val", 3, 128, None, 5)
    with OnnxRuntimeRunner(out, precision="fp32", threads=1) as r32, OnnxRuntimeRunner(out, precision="int8", threads=1) as r8:
        assert "int8" in r8.description and r8.stage_precision["image_encoder"].startswith("int8")
        ious, errs = [], []
        for i in range(1, 3):  # clips 1 and 2 of the validation range; the export checked clips 0 and 1 at T=2
            image, mel = data.image_input(i), data.log_mel_input(i)
            a, b = r32.run_clip(image, mel), r8.run_clip(image, mel)
            errs.append(rel_l2(b, a))
            ious.append(mask_iou(logits_to_masks(b, (224, 224), mid=128), logits_to_masks(a, (224, 224), mid=128)))
    assert max(errs) <= 0.05, errs
    assert np.median(np.concatenate(ious)) >= 0.98


def test_a_graph_that_misses_the_bar_ships_fp32(tmp_path):
    """An impossible bar (IoU median >= 1.01): every stage stays FP32 and says why; no int8 folder is left."""
    from avs_engine.artifacts.graph_manifest import read_manifest as read
    from avs_engine.checks.int8_check import int8_inputs
    from avs_engine.export.int8_export import build_int8

    m = read(DEMO_GRAPHS, check_hashes=False)
    fp32 = {}
    for s in STAGE_ORDER:
        dst = tmp_path / "fp32" / f"{s}.onnx"
        dst.parent.mkdir(exist_ok=True)
        shutil.copy(m.graph_path("fp32", s), dst)
        fp32[s] = dst
    lines: list[str] = []
    given = int8_inputs(m.model_config(), clips=1, T=2, min_iou=1.01)
    files, records = build_int8(tmp_path, fp32, m.model_config(), calibration=given["int8_calibration"],
                                check=given["int8_check"], threads=1, progress=lines.append)
    assert files == fp32
    assert all(r["computes"] == "fp32" for r in records.values())
    assert "missed the bar" in records["image_encoder"]["reason"] and "check" in records["image_encoder"]
    assert not (tmp_path / "int8").exists()
    assert sum("stays fp32" in ln for ln in lines) == len(STAGE_ORDER)


@pytest.mark.slow  # a second export of the demo model (~40 s on 2 cores); the fp32,int8 export above runs by default
def test_int8_only_export_keeps_just_the_fp32_graphs_it_runs(tmp_path):
    """--precision int8 alone: the stages that stay fp32 keep their fp32 file (listed under int8 only), the others are removed."""
    from avs_engine.checks.int8_check import int8_inputs
    from avs_engine.checks.onnx_parity import verify_export
    from avs_engine.export.onnx_export import export_onnx
    from avs_engine.reference.checkpoint import load_bundle

    model, _ = load_bundle(DEMO_WEIGHTS)
    res = export_onnx(model, tmp_path / "g", precision="int8", threads=1, **int8_inputs(model.config, clips=1, T=2))
    m = read_manifest(tmp_path / "g")
    assert m.precisions == ["int8"]
    kept = sorted(p.name for p in (tmp_path / "g" / "fp32").glob("*.onnx"))
    assert kept == sorted(f"{s}.onnx" for s, p in m.stage_precisions("int8").items() if p == "fp32")
    assert verify_export(model, res.manifest) is None  # nothing to compare with PyTorch besides the int8 check


def _demo_copy(dst: Path) -> Path:
    shutil.copytree(DEMO_GRAPHS, dst)
    return dst


def test_add_int8_refuses_folders_it_cannot_quantize(tmp_path):
    """No manifest, or no fp32 set: one line naming the problem, exit 2, nothing written."""
    import json

    from click.testing import CliRunner

    from avs_engine.cli.export import main

    r = CliRunner().invoke(main, ["int8", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "not found" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["int8", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "manifest" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert list((tmp_path / "empty").iterdir()) == []
    only16 = _demo_copy(tmp_path / "only16")
    doc = json.loads((only16 / "manifest.json").read_text())
    del doc["graphs"]["fp32"]
    (only16 / "manifest.json").write_text(json.dumps(doc))
    before = sorted(p.relative_to(only16) for p in only16.rglob("*"))
    r = CliRunner().invoke(main, ["int8", str(only16)])
    assert r.exit_code == 2 and "no fp32 graphs" in r.output, r.output
    assert sorted(p.relative_to(only16) for p in only16.rglob("*")) == before


def test_add_int8_that_fails_leaves_the_folder_as_it_was(tmp_path, int8_export):
    """A check that raises on the third stage: the earlier int8 set, its files and the manifest are untouched."""
    from avs_engine.checks.int8_check import int8_inputs
    from avs_engine.export.int8_add import add_int8_set

    folder = tmp_path / "g"
    shutil.copytree(int8_export[0], folder)
    manifest_before = (folder / "manifest.json").read_bytes()
    files_before = {p.relative_to(folder): p.read_bytes() for p in (folder / "int8").iterdir()}
    given = int8_inputs(read_manifest(folder).model_config(), clips=1, T=2)
    calls = []

    def failing_check(stage, int8_session, fp32_sessions):
        calls.append(stage)
        if len(calls) == 2:  # audio stays fp32 unchecked: the second checked stage is the third stage
            raise OSError("disk full (simulated)")
        return given["int8_check"](stage, int8_session, fp32_sessions)

    with pytest.raises(OSError, match="simulated"):
        add_int8_set(folder, calibration=given["int8_calibration"], check=failing_check, threads=1)
    assert calls == ["image_encoder", "fusion"]
    assert (folder / "manifest.json").read_bytes() == manifest_before
    assert {p.relative_to(folder): p.read_bytes() for p in (folder / "int8").iterdir()} == files_before
    assert not list(folder.glob(".int8-staging-*"))
    read_manifest(folder)  # every listed file still has its recorded hash


def test_add_int8_needs_no_torch_and_writes_nothing_beside_the_fp32_graphs(tmp_path):
    """avs-export int8 in a process where torch cannot be imported: the set is written and runs, and the
    fp32 folder was never written to (the quantizer's shape-inferred copy goes to a temporary folder)."""
    import subprocess
    import sys

    from tests.no_torch import no_torch_env

    folder = _demo_copy(tmp_path / "g")
    fp32_folder_mtime = (folder / "fp32").stat().st_mtime_ns  # a file made and removed there changes it
    code = "from avs_engine.cli.export import main; main()"
    r = subprocess.run([sys.executable, "-c", code, "int8", str(folder), "--clips", "1", "--threads", "1"],
                       env=no_torch_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "int8 set saved" in r.stdout
    assert read_manifest(folder).stage_precisions("int8")["image_encoder"] == "int8"
    assert (folder / "fp32").stat().st_mtime_ns == fp32_folder_mtime
    assert {p.name for p in (folder / "int8").iterdir()} <= {f"{s}.onnx" for s in STAGE_ORDER}  # no temporary left


@pytest.mark.slow  # exports the demo model again (~60 s on 2 cores); the default tests add int8 to the shipped graphs
def test_onnx_export_with_int8_matches_adding_it_afterwards(tmp_path, int8_export):
    """avs-export onnx --precision fp32,int8 from the demo's weights writes the same int8 set as avs-export int8
    on the shipped graphs: the same graphs quantized, the same check figures."""
    from click.testing import CliRunner

    from avs_engine.cli.export import main

    r = CliRunner().invoke(main, ["onnx", "--weights", str(DEMO_WEIGHTS), "--out", str(tmp_path / "g"),
                                  "--precision", "fp32,int8", "--no-verify", "--threads", "1"])
    assert r.exit_code == 0, r.output
    exported, added = read_manifest(tmp_path / "g"), read_manifest(int8_export[0])
    assert exported.precisions == ["fp32", "int8"]
    for stage in STAGE_ORDER:
        a, b = exported.graph("int8", stage).quantization, added.graph("int8", stage).quantization
        assert a["computes"] == b["computes"] and a["quantized"] == b["quantized"]
        if "check" in a:
            assert a["check"]["iou_median"] == pytest.approx(b["check"]["iou_median"], abs=1e-3)


def test_precision_set_parses_mixes():
    from avs_engine.errors import ConfigError
    from avs_engine.export.onnx_export import precision_set

    assert precision_set("both") == ("fp32", "fp16")
    assert precision_set("int8,fp32") == ("fp32", "int8")
    assert precision_set(("fp16", "int8", "fp32")) == ("fp32", "fp16", "int8")
    with pytest.raises(ConfigError):
        precision_set("int4")


def test_select_nodes_follows_the_plan():
    from avs_engine.export.int8 import Int8Plan, select_nodes

    m = onnx.load(str(Path(DEMO_GRAPHS) / "fp32" / "mask_decoder.onnx"))
    weights = select_nodes(m, Int8Plan("dynamic", ("MatMul",)))
    everything = select_nodes(m, Int8Plan("dynamic", ("MatMul",), weights_only=False))
    no_head = select_nodes(m, Int8Plan("static", ("MatMul", "Gemm"), exclude_scopes=("mask_decoder.output_hypernetworks_mlps",)))
    assert 0 < len(weights.quantize) < len(everything.quantize)
    assert any(k.startswith("Gemm: no dynamic integer kernel") for k in select_nodes(m, Int8Plan("dynamic", ("MatMul", "Gemm"))).kept)
    assert any("output_hypernetworks_mlps" in k for k in no_head.kept)
    assert select_nodes(m, Int8Plan("fp32", ())).quantize == []
