"""vit_b end to end: export both precisions and measure parity (minutes on 2 cores: -m slow)."""

import onnx
import pytest


@pytest.mark.slow
def test_vit_b_export_and_parity(tmp_path):
    from avs_engine.artifacts.graph_manifest import read_manifest
    from avs_engine.checks.onnx_parity import verify_export
    from avs_engine.export.onnx_export import export_onnx
    from avs_engine.reference import build_model

    model = build_model("vit_b", seed=0)  # VGGish audio, 12-block ViT-B encoder, depth-5 fusion
    lines = []
    result = export_onnx(model, tmp_path / "vit_b", precision="both", progress=lines.append)
    report = verify_export(model, result.manifest, T=2, progress=lines.append)
    print("\n".join(lines + report.lines()))
    assert report.ok, report.failures()
    assert min(next(c for c in report.chains if c.precision == "fp32").iou) == 1.0
    assert min(next(c for c in report.chains if c.precision == "fp16").iou) > 0.98
    m = read_manifest(tmp_path / "vit_b")
    assert m.parity["ok"] and m.model_config().name == "vit_b"
    assert not m.graph("fp32", "image_encoder").external_data  # 360 MB: below the external-data threshold
    for prec in m.precisions:  # the 64x64 positional encoding is folded to a constant, not recomputed
        for stage in ("fusion", "mask_decoder"):
            ops = {n.op_type for n in onnx.load(str(m.graph_path(prec, stage))).graph.node}
            assert not ops & {"Sin", "Cos", "Pow", "Sqrt"}, (prec, stage)
