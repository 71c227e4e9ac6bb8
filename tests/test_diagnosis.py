"""Diagnosis of each measured variant: every class, the order between them, and the hints."""

from __future__ import annotations

import pytest

from edgekit.decide.diagnosis import CLASSES, HINTS, diagnose, diagnose_all, hints, overhead_share
from edgekit.errors import StageInputError

SHAPES = ((1, 32), (1, 128), (8, 32), (8, 128))  # the default sweep; b1_s32 is the headline
CONVERGED = {"cv": 0.05, "between_process_spread": 0.02, "unstable": False, "instability": [], "unstable_reasons": [],
             "foreign_load_max": 0.0, "steal_share_max": 0.0, "converged": True}
NOT_CONVERGED_TEXT = "median CI did not reach the target within benchmark max seconds in 2 of 2 processes"
NOT_CONVERGED = {"unstable": True, "converged": False, "unstable_reasons": [NOT_CONVERGED_TEXT],
                 "instability": [{"code": "not_converged", "processes": [0, 1], "text": NOT_CONVERGED_TEXT}]}


def busy(foreign_load: float, steal: float) -> list[dict]:
    """The harness's ``busy`` entry."""
    return [{"code": "busy", "processes": [0, 1], "foreign_load_max": foreign_load, "steal_share_max": steal,
             "text": f"busy machine (foreign load {foreign_load} cores, steal {steal}) in 2 of 6 processes"}]


def spread(value: float, limit: float = 0.10) -> list[dict]:
    """The harness's ``process_spread`` entry (limit: benchmark.max_process_spread)."""
    return [{"code": "process_spread", "value": value, "limit": limit, "text": f"repeats disagree: spread {value:.1%}"}]


def scenarios(fixed_ms: float, ms_per_token: float, shapes=SHAPES, **headline_overrides) -> dict:
    """Scenarios whose p50 is exactly fixed + per-token × batch·seq; overrides apply to the headline."""
    out = {f"b{b}_s{s}": {**CONVERGED, "p50_ms": round(fixed_ms + ms_per_token * b * s, 4)} for b, s in shapes}
    first = f"b{shapes[0][0]}_s{shapes[0][1]}"
    out[first].update(headline_overrides)
    return out


def bench(runtime: str, scenario_table: dict) -> dict:
    return {"runtime": runtime, "precision": "int8", "status": "ok", "unstable": False, "scenarios": scenario_table}


def row(runtime: str, bound: str = "compute", efficiency: float = 0.41) -> dict:
    return {"runtime": runtime, "precision": "int8", "status": "ok", "speedup": 4.6, "speedup_ci95": [4.5, 4.7],
            "p50_ms": 2.54, "roofline": {"arithmetic_intensity": 29.01, "bound": bound, "bound_gflops": 624.9,
                                         "efficiency": efficiency, "gflops_achieved": round(624.9 * efficiency, 2),
                                         "peak_used": "int8 GEMM"}}


def test_compute_bound_with_a_small_fixed_cost():
    result = diagnose(row("onnxruntime"), bench("onnxruntime", scenarios(0.3, 0.07)), "b1_s32")
    assert result["class"] == "compute-bound"
    assert result["overhead_share"] == pytest.approx(0.3 / 2.54, abs=1e-4)  # exact data: the fit recovers a = 0.3
    assert result["evidence"].startswith("because the headline sits on the compute side of the roofline; "
                                         "headline b1_s32: p50 2.540 ms, between-process spread 2.0%; "
                                         "fixed per-call cost 12% of the headline p50 (fit over 4 scenarios); ")
    assert result["evidence"].endswith("256.21 of 624.9 GFLOP/s (41%) on the int8 GEMM roofline at intensity 29.01")
    assert result["hints"] == list(HINTS["onnxruntime"]["compute-bound"])


def test_memory_bound_follows_the_roofline():
    result = diagnose(row("openvino", bound="memory", efficiency=0.52), bench("openvino", scenarios(1.0, 0.2)), "b1_s32")
    assert result["class"] == "memory-bound"
    assert result["overhead_share"] == pytest.approx(1.0 / 7.4, abs=1e-4)
    assert any("nncf.compress_weights" in h for h in result["hints"])


def test_a_large_fixed_cost_is_overhead_bound():
    result = diagnose(row("onnxruntime"), bench("onnxruntime", scenarios(3.0, 0.02)), "b1_s32")
    assert result["class"] == "overhead-bound"
    assert result["overhead_share"] == pytest.approx(3.0 / 3.64, abs=1e-4)
    assert result["evidence"].startswith("because fixed per-call cost 82% of the headline p50 > 50%")
    assert any("IO binding" in h for h in result["hints"])
    assert any("fewer intra_op threads" in h for h in result["hints"])


def test_the_largest_scenario_does_not_set_the_fixed_cost_alone():
    # OpenVINO bf16 at 95% of the roofline: per-token cost falls as GEMMs grow. An unweighted fit lets
    # b8_s128 set the intercept (share 0.80, "overhead-bound"); the relative fit gives 0.43.
    table = {"b1_s32": {**CONVERGED, "p50_ms": 3.94}, "b1_s128": {**CONVERGED, "p50_ms": 11.46},
             "b8_s32": {**CONVERGED, "p50_ms": 22.0}, "b8_s128": {**CONVERGED, "p50_ms": 70.4}}
    result = diagnose(row("openvino", efficiency=0.95), bench("openvino", table), "b1_s32")
    assert result["overhead_share"] == pytest.approx(0.434, abs=0.005)
    assert result["class"] == "compute-bound"


def test_very_low_efficiency_is_overhead_bound_even_without_a_fixed_cost():
    # MLX's CPU build on Linux: 316 ms for 32 tokens, cost grows faster than the tokens (fit intercept < 0).
    table = {"b1_s32": {**CONVERGED, "p50_ms": 316.3}, "b1_s128": {**CONVERGED, "p50_ms": 1286.6},
             "b8_s32": {**CONVERGED, "p50_ms": 2454.5}, "b8_s128": {**CONVERGED, "p50_ms": 10618.3}}
    result = diagnose(row("mlx", bound="memory", efficiency=0.0036), bench("mlx", table), "b1_s32")
    assert (result["class"], result["overhead_share"]) == ("overhead-bound", 0.0)
    assert "0.4% of the roofline bound < 5%" in result["evidence"]
    assert "no measurable fixed per-call cost" in result["evidence"]
    assert "Metal" in result["hints"][0] and "mlx[cpu]" in result["hints"][0]


def test_a_busy_machine_during_the_headline_is_unstable_before_anything_else():
    table = scenarios(3.0, 0.02, unstable=True, instability=busy(1.3, 0.0), foreign_load_max=1.3)
    result = diagnose(row("openvino"), bench("openvino", table), "b1_s32")  # would be overhead-bound otherwise
    assert result["class"] == "unstable"
    assert result["evidence"].startswith("because the headline was measured on a busy machine: busy machine (foreign load 1.3")
    assert result["hints"] == list(HINTS["generic"]["unstable"])


def test_cpu_steal_the_harness_judged_busy_is_unstable():
    table = scenarios(0.3, 0.07, unstable=True, instability=busy(0.0, 0.08), steal_share_max=0.08)
    result = diagnose(row("llamacpp"), bench("llamacpp", table), "b1_s32")
    assert result["class"] == "unstable" and "steal 0.08" in result["evidence"]


def test_the_diagnosis_has_no_steal_threshold_of_its_own():
    # steal the harness did not judge busy (below benchmark.busy_steal_share for this run) is not unstable
    result = diagnose(row("llamacpp"), bench("llamacpp", scenarios(0.3, 0.07, steal_share_max=0.08)), "b1_s32")
    assert result["class"] == "compute-bound"


def test_a_large_spread_between_processes_is_unstable():
    table = scenarios(0.3, 0.07, unstable=True, between_process_spread=0.169, instability=spread(0.169))
    result = diagnose(row("onnxruntime"), bench("onnxruntime", table), "b1_s32")
    assert result["class"] == "unstable"
    assert result["evidence"].startswith("because the headline's repeats differ by 16.9% > 10% (benchmark.max_process_spread)")


def test_the_spread_limit_is_the_harness_s_not_a_constant_of_the_diagnosis():
    # params.benchmark.max_process_spread = 0.05: the harness flagged 6%, and the diagnosis says 5%
    table = scenarios(0.3, 0.07, unstable=True, between_process_spread=0.06, instability=spread(0.06, limit=0.05))
    assert "differ by 6.0% > 5%" in diagnose(row("onnxruntime"), bench("onnxruntime", table), "b1_s32")["evidence"]
    # and a spread the harness did not flag is not unstable, whatever its size
    table = scenarios(0.3, 0.07, between_process_spread=0.16)
    assert diagnose(row("onnxruntime"), bench("onnxruntime", table), "b1_s32")["class"] == "compute-bound"


def test_metrics_without_a_structured_instability_record_are_refused():
    table = scenarios(0.3, 0.07)
    del table["b1_s32"]["instability"]
    with pytest.raises(StageInputError, match="no structured instability record"):
        diagnose(row("onnxruntime"), bench("onnxruntime", table), "b1_s32")


def test_slow_scenarios_that_did_not_converge_are_not_unstable():
    table = scenarios(0.3, 0.07)
    table["b8_s128"].update(NOT_CONVERGED, between_process_spread=0.25)
    table["b1_s32"].update(NOT_CONVERGED)  # not converging is no instability of the machine, even at the headline
    result = diagnose(row("onnxruntime"), bench("onnxruntime", table), "b1_s32")
    assert result["class"] == "compute-bound"


def test_busy_flag_on_another_scenario_is_not_unstable():
    table = scenarios(0.3, 0.07)
    table["b8_s32"].update(unstable=True, instability=busy(2.1, 0.07), steal_share_max=0.07)
    assert diagnose(row("openvino"), bench("openvino", table), "b1_s32")["class"] == "compute-bound"


def test_a_single_scenario_has_no_fit():
    result = diagnose(row("llamacpp"), bench("llamacpp", scenarios(0.3, 0.07, shapes=((1, 32),))), "b1_s32")
    assert (result["class"], result["overhead_share"]) == ("compute-bound", None)
    assert "one scenario size only: no fixed-cost fit" in result["evidence"]
    assert any("q8_0" in h and "384-wide" in h for h in result["hints"])


def test_scenarios_of_equal_token_count_give_no_fit():
    table = scenarios(0.3, 0.07, shapes=((1, 128), (4, 32)))
    assert overhead_share(table, "b1_s128") is None


def test_every_runtime_has_hints_for_every_class_and_unknown_runtimes_get_the_generic_ones():
    for runtime in ("pytorch", "onnxruntime", "openvino", "llamacpp", "mlx", "olive"):
        for cls in CLASSES:
            assert hints(runtime, cls), (runtime, cls)
        assert hints(runtime, "compute-bound") != list(HINTS["generic"]["compute-bound"]), runtime
    assert hints("tflite", "memory-bound") == list(HINTS["generic"]["memory-bound"])
    assert hints(None, "unstable") == list(HINTS["generic"]["unstable"])


def test_openvino_compute_bound_suggests_comparing_inference_precisions():
    result = diagnose(row("openvino"), bench("openvino", scenarios(0.3, 0.07)), "b1_s32")
    assert result["hints"][0] == "set inference_precision f32 vs bf16 and compare"


def test_missing_roofline_or_headline_is_a_stage_input_error():
    no_roofline = {k: v for k, v in row("onnxruntime").items() if k != "roofline"}
    with pytest.raises(StageInputError, match="no roofline point"):
        diagnose(no_roofline, bench("onnxruntime", scenarios(0.3, 0.07)), "b1_s32")
    with pytest.raises(StageInputError, match="no b2_s64 scenario"):
        diagnose(row("onnxruntime"), bench("onnxruntime", scenarios(0.3, 0.07)), "b2_s64")


def test_diagnose_all_covers_measured_variants_only():
    summary = {"headline_scenario": "b1_s32", "variants": {
        "ort-int8": row("onnxruntime"),
        "ov-fp32": row("openvino", bound="memory", efficiency=0.52),
        "olive-int8": {"runtime": "olive", "precision": "int8", "status": "skipped", "reason": "olive-ai is not installed"},
        "gguf-q8_0": {"runtime": "llamacpp", "precision": "q8_0", "status": "failed", "error": "conversion failed"},
    }}
    benches = {"ort-int8": bench("onnxruntime", scenarios(0.3, 0.07)), "ov-fp32": bench("openvino", scenarios(3.0, 0.02)),
               "gguf-q8_0": {"status": "failed"}}
    result = diagnose_all(summary, benches)
    assert sorted(result) == ["ort-int8", "ov-fp32"]
    assert (result["ort-int8"]["class"], result["ov-fp32"]["class"]) == ("compute-bound", "overhead-bound")
