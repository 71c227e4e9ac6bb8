"""What the benchmark flags and what the gates make of it: structured instability, short processes,
and a baseline that cannot certify."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import small_params
from edgekit.bench.harness import _scenario_metrics, scenario_request
from edgekit.decide.gates import Evidence, get_gate
from edgekit.params import BenchmarkParams, parse_params

BENCH = BenchmarkParams(max_process_spread=0.10, min_samples_per_process=10)
MiB = 2**20


def run(median_ms: float, calls: int = 50, busy: bool = False, converged: bool = True, model_mb: float = 40.0) -> dict:
    """One worker record with the fields the harness reads."""
    return {"samples_ms": list(median_ms * np.linspace(0.98, 1.02, calls)), "first_ms": 3 * median_ms, "load_s": 0.2,
            "converged": converged, "peak_rss_bytes": int((model_mb + 60) * MiB), "model_memory_bytes": int(model_mb * MiB),
            "energy_j": None, "noise": {"busy": busy, "foreign_load": 1.2 if busy else 0.01,
                                        "steal_share": 0.0, "canary_ms_max": 5.0}}


def metrics(runs: list[dict], bench: BenchmarkParams = BENCH) -> dict:
    return _scenario_metrics({"batch_size": 1, "seq_length": 32, "runs": runs}, seed=0, bench=bench)


def codes(scenario: dict) -> list[str]:
    return [entry["code"] for entry in scenario["instability"]]


def test_a_clean_scenario_has_no_instability_and_reports_model_memory_per_process():
    scenario = metrics([run(2.0, model_mb=40.0), run(2.02, model_mb=42.0), run(1.99, model_mb=41.0)])
    assert (scenario["unstable"], scenario["instability"], scenario["unstable_reasons"]) == (False, [], [])
    assert scenario["p50_ms"] == 2.0 and scenario["samples_per_process"] == [50, 50, 50]
    assert (scenario["model_memory_mb"], scenario["model_memory_mb_range"]) == (42.0, [40.0, 42.0])
    assert scenario["peak_rss_mb_range"] == [100.0, 102.0]


def test_each_cause_gets_a_code_a_value_and_a_text():
    scenario = metrics([run(2.0, busy=True), run(2.4, converged=False), run(2.1, calls=3)])
    assert codes(scenario) == ["busy", "not_converged", "process_spread", "short_of_samples"]
    busy, slow, spread, short = scenario["instability"]
    assert busy["processes"] == [0] and busy["foreign_load_max"] == 1.2 and busy["text"].startswith("busy machine (foreign load 1.2")
    assert slow["processes"] == [1]
    assert (spread["value"], spread["limit"]) == (round(0.4 / 2.1, 4), 0.10)
    assert (short["processes"], short["value"], short["limit"]) == ([2], 3, 10)
    assert scenario["unstable_reasons"] == [entry["text"] for entry in scenario["instability"]]


def test_the_spread_limit_is_the_params_one():
    runs = [run(2.0), run(2.12)]  # 5.8% apart
    assert codes(metrics(runs)) == []
    assert codes(metrics(runs, dataclasses.replace(BENCH, max_process_spread=0.05))) == ["process_spread"]


def test_the_headline_gets_its_own_process_count_and_budget(tmp_path):
    params = parse_params(small_params())
    manifest = {"runtime": "onnxruntime", "precision": "int8", "options": {}}
    headline = scenario_request(params, manifest, tmp_path, tmp_path / "t.json", *params.headline)
    other = scenario_request(params, manifest, tmp_path, tmp_path / "t.json", 2, 16)
    b = params.benchmark
    assert (headline["headline"], headline["max_seconds"], other["headline"], other["max_seconds"]) == \
        (True, b.headline_max_seconds, False, b.max_seconds)
    assert headline["min_samples_per_process"] == b.min_samples_per_process
    assert headline["hard_stop_seconds"] == b.timeout_seconds / 2
    assert b.planned_processes(3) == b.headline_repeats + 2 * b.repeats


# --- the gates -----------------------------------------------------------------------------------


SOURCES = {k: f"{k}.json" for k in ("benchmark", "samples", "evaluate", "baseline_samples", "baseline_evaluate")}


def processes(median_ms: float, count: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(int(median_ms * 100))
    return [median_ms * np.exp(rng.normal(0, 0.01, 200)) for _ in range(count)]


def evidence(own: dict | None = None, base: dict | None = None) -> Evidence:
    """ort-int8 at 2.5 ms against pytorch-fp32 at 12.5 ms; ``own``/``base``: instability by scenario."""
    row = {"variant": "ort-int8", "instability": own or {}, "model_memory_reduction_range": [0.7, 0.72],
           "memory_reduction_range": [0.75, 0.76], "size_reduction": 0.74, "model_memory_mb": 30.0, "peak_rss_mb": 100.0,
           "size_mb": 22.0}
    base_row = {"variant": "pytorch-fp32", "instability": base or {}}
    return Evidence("ort-int8", row, base_row, {"b1_s32": processes(2.5)}, {"b1_s32": processes(12.5)}, "b1_s32", SOURCES)


def short(value: int = 3) -> dict:
    return {"b1_s32": [{"code": "short_of_samples", "processes": [4], "value": value, "limit": 10, "text": "..."}]}


BUSY = {"b1_s32": [{"code": "busy", "processes": [0, 3], "foreign_load_max": 1.3, "steal_share_max": 0.0,
                    "text": "busy machine (foreign load 1.3 cores, steal 0.0) in 2 of 6 processes"}]}


def measure(gate: str, ev: Evidence, **options):
    return get_gate(gate).measure(ev, options)


def test_clean_evidence_passes_through():
    speedup = measure("speedup", evidence())
    assert 4.9 < speedup.value < 5.0 and "over 6 baseline + 6 variant processes" in speedup.detail
    assert measure("latency_p99_ms", evidence()).value == pytest.approx(2.5 * np.exp(0.01 * 2.33), rel=0.02)
    assert measure("memory_reduction", evidence()).value == 0.7


def test_a_variant_short_of_samples_fails_every_gate_that_reads_the_scenario():
    ev = evidence(own=short())
    for gate in ("speedup", "latency_p99_ms"):
        result = measure(gate, ev)
        assert result.value is None, gate
        assert result.detail.startswith("ort-int8 b1_s32 has 1 process short of samples (3 < benchmark.min_samples_per_process 10)")
    assert measure("latency_p99_ms", ev, scenario="b8_s128").detail == "scenario b8_s128 was not measured"
    assert measure("memory_reduction", ev).value == 0.7  # memory does not read the samples


def test_a_baseline_short_of_samples_cannot_certify_a_speedup():
    result = measure("speedup", evidence(base=short(7)))
    assert result.value is None and result.detail.startswith("baseline pytorch-fp32 b1_s32 has 1 process short of samples (7 < ")
    assert "`dvc repro benchmark@pytorch-fp32`" in result.detail


def test_a_busy_baseline_fails_the_comparisons_that_read_it_and_names_itself():
    ev = evidence(base=BUSY)
    speedup = measure("speedup", ev)
    assert speedup.value is None
    assert speedup.detail.startswith("baseline pytorch-fp32 b1_s32 was measured on a busy machine (foreign load 1.3 cores")
    for measured in ("model_memory", "peak_rss", "both"):
        assert measure("memory_reduction", ev, measure=measured).value is None, measured
    assert measure("memory_reduction", ev, measure="size").value == 0.74  # size does not depend on the machine
    assert measure("latency_p99_ms", ev).value is not None  # latency compares the variant only


def test_a_busy_variant_still_has_its_latency_and_speedup_read():
    # a busy variant runs slow: that can only make its own numbers worse, never certify too much
    ev = evidence(own=BUSY)
    assert measure("speedup", ev).value is not None and measure("latency_p99_ms", ev).value is not None
