"""The matmul ceiling is the fastest of several sizes and libraries, not one torch product."""

import pytest

from avs_engine.bench.peak import measure_matmul_peak


@pytest.mark.parametrize("dtype,unit", [("float32", "TFLOP/s"), ("int8", "TOP/s")])
def test_peak_is_the_best_candidate_of_both_libraries(dtype, unit):
    peak = measure_matmul_peak("cpu", dtype, budget_s=0.4, sizes=(128, 256))
    cands = peak["candidates"]
    libraries = {c["library"].split()[0].split(".")[0] for c in cands}
    assert libraries == {"torch", "onnxruntime"}
    assert {c["size"]["value"] for c in cands} == {128, 256}
    rates = [c["rate"]["value"] for c in cands if "rate" in c]
    assert rates and all(c["rate"]["unit"] == unit for c in cands if "rate" in c)
    assert peak["unit"] == unit and peak["value"] == max(rates) > 0
    assert str(peak["n"]) in peak["note"]


def test_a_slow_precision_is_measured_on_one_small_size():
    peak = measure_matmul_peak("cpu", "bfloat16", budget_s=0.2)
    assert [c["library"] for c in peak["candidates"]] == ["torch.matmul"]
    assert peak["value"] > 0
