"""manifest.json: written by the exporter, trusted by the runtime, and every way it can be wrong."""

import json
from dataclasses import asdict

import numpy as np
import pytest

from avs_engine.backends.onnxruntime_backend import OnnxRuntimeRunner
from avs_engine.config import from_name
from avs_engine.errors import BackendError
from avs_engine.artifacts.graph_manifest import FORMAT, MANIFEST_NAME, FileEntry, io_spec, read_manifest, sha256_file
from avs_engine.artifacts.spec import STAGE_ORDER, STAGES
from tests.export.helpers import copy_engine


def edit_manifest(root, fn):
    path = root / MANIFEST_NAME
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def one_line_error(fn) -> str:
    with pytest.raises(BackendError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


def test_round_trip(tiny_engine, tmp_path):
    m = read_manifest(tiny_engine)
    assert m.format == FORMAT and m.opset == 20 and m.precisions == ["fp32", "fp16"]
    assert m.model_config() == from_name("tiny")
    assert m.checkpoint["random_seed"] == 0
    assert {"torch", "onnx", "onnxruntime", "onnxscript", "avs_engine"} <= set(m.tools)
    for prec in m.precisions:
        for stage in STAGE_ORDER:
            g = m.graph(prec, stage)
            assert g.io == io_spec(STAGES[stage])
            assert g.onnx.sha256 == sha256_file(tiny_engine / g.onnx.file)
            assert bool(g.float32_islands) == (prec == "fp16")
    other = copy_engine(tiny_engine, tmp_path / "copy")
    m.write(other)
    assert read_manifest(other).to_dict() == m.to_dict()


def test_missing_folder_and_manifest(tmp_path):
    assert "not found" in one_line_error(lambda: read_manifest(tmp_path / "nope"))
    assert "no manifest.json" in one_line_error(lambda: read_manifest(tmp_path))
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    assert "not valid JSON" in one_line_error(lambda: read_manifest(tmp_path))


def test_missing_graph_file(tiny_engine, tmp_path):
    root = copy_engine(tiny_engine, tmp_path / "e")
    (root / "fp32" / "fusion.onnx").unlink()
    msg = one_line_error(lambda: OnnxRuntimeRunner(root).activate())
    assert "fusion.onnx" in msg and "missing" in msg


def test_manifest_from_another_format_version(tiny_engine, tmp_path):
    root = copy_engine(tiny_engine, tmp_path / "e")
    edit_manifest(root, lambda d: d.update(format="avs-engine-onnx/0"))
    msg = one_line_error(lambda: OnnxRuntimeRunner(root).activate())
    assert "avs-engine-onnx/0" in msg and FORMAT in msg


def test_hash_mismatch(tiny_engine, tmp_path):
    root = copy_engine(tiny_engine, tmp_path / "e")
    path = root / "fp32" / "mask_decoder.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    msg = one_line_error(lambda: OnnxRuntimeRunner(root).activate())
    assert "mask_decoder.onnx" in msg and "sha256" in msg
    # a different size is caught before hashing
    path.write_bytes(bytes(data) + b"x")
    assert "bytes" in one_line_error(lambda: OnnxRuntimeRunner(root, check_hashes=False).activate())


def test_onnx_file_that_fails_to_load(tiny_engine, tmp_path):
    root = copy_engine(tiny_engine, tmp_path / "e")
    path = root / "fp32" / "audio.onnx"
    path.write_bytes(b"this is not a protobuf" * 10)

    def relist(d):  # a manifest that agrees with the broken file: the load itself must fail
        d["graphs"]["fp32"]["audio"]["onnx"].update(sha256=sha256_file(path), bytes=path.stat().st_size)

    edit_manifest(root, relist)
    msg = one_line_error(lambda: OnnxRuntimeRunner(root).activate())
    assert "audio.onnx" in msg and "cannot load" in msg


def test_precision_not_exported_and_io_mismatch(tiny_engine, tmp_path):
    root = copy_engine(tiny_engine, tmp_path / "e")
    edit_manifest(root, lambda d: d["graphs"].pop("fp16"))
    assert "no fp16 graphs" in one_line_error(lambda: OnnxRuntimeRunner(root, precision="fp16").activate())

    edit_manifest(root, lambda d: d["graphs"]["fp32"]["fusion"]["io"]["outputs"].pop())
    assert "fusion" in one_line_error(lambda: read_manifest(root))

    edit_manifest(root, lambda d: d["graphs"]["fp32"].pop("fusion"))
    assert "lack stage(s) fusion" in one_line_error(lambda: read_manifest(root))


def test_graph_whose_io_is_another_stage(tiny_engine, tmp_path):
    """The manifest is right but a file was swapped for another stage's graph."""
    root = copy_engine(tiny_engine, tmp_path / "e")
    (root / "fp32" / "fusion.onnx").write_bytes((root / "fp32" / "audio.onnx").read_bytes())

    def relist(d):
        d["graphs"]["fp32"]["fusion"]["onnx"] = asdict(FileEntry.of(root, root / "fp32" / "fusion.onnx"))

    edit_manifest(root, relist)
    assert "is not stage 'fusion'" in one_line_error(lambda: OnnxRuntimeRunner(root).activate())


def test_external_data_graph(tiny_engine, tiny_model, tmp_path):
    """Big graphs keep weights in a .data file: exported, listed, checked, loaded."""
    from avs_engine.export.onnx_export import export_graph, graph_entry
    from avs_engine.export.wrappers import graph_modules

    root = copy_engine(tiny_engine, tmp_path / "e")
    path = root / "fp32" / "audio.onnx"
    files = export_graph(graph_modules(tiny_model)["audio"], STAGES["audio"], tiny_model.config, path, external_data=True)
    assert len(files) == 2 and files[1].name == "audio.onnx.data" and files[1].stat().st_size > 10_000
    assert path.stat().st_size < files[1].stat().st_size  # most weights moved out

    edit_manifest(root, lambda d: d["graphs"]["fp32"].update(audio=asdict(graph_entry(root, "audio", "fp32", files))))
    m = read_manifest(root)
    assert [f.file for f in m.graph("fp32", "audio").external_data] == ["fp32/audio.onnx.data"]
    with OnnxRuntimeRunner(root) as r:
        x = np.random.default_rng(0).standard_normal((2, 1, 96, 64), dtype=np.float32)
        assert r.run("audio", {"log_mel": x})["a128"].shape == (2, 128)
    files[1].unlink()
    assert "audio.onnx.data" in one_line_error(lambda: read_manifest(root))
