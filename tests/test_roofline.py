"""The roofline point: which peak a variant is held to, and what it achieved against it."""

from __future__ import annotations

import pytest

from edgekit.bench.roofline import encoder_flops, roofline_point

PEAKS = {"fp32_gemm_gflops": 200.0, "int8_gemm_gops": 700.0, "bf16_gemm_gflops": 330.0, "memory_bandwidth_gbs": 25.0}
MINILM = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}


def point(precision: str, computed_in: str | None = None, peaks: dict = PEAKS, seconds: float = 0.001) -> dict:
    return roofline_point(1.0e9, 1.0e6, seconds, peaks, precision, computed_in)  # intensity 1000: compute-bound


def test_int8_variants_are_held_to_the_int8_peak_whatever_they_compute_the_rest_in():
    assert point("int8", "bf16")["peak_used"] == "int8 GEMM"
    assert point("q4_k_m")["bound_gflops"] == 700.0


def test_a_variant_the_runtime_ran_in_bf16_is_held_to_the_bf16_peak():
    # 1 GFLOP in 3.5 ms = 286 GFLOP/s: above the fp32 peak, so against fp32 it would read 143%
    result = point("fp32", "bf16", seconds=0.0035)
    assert (result["peak_used"], result["bound_gflops"]) == ("bf16 GEMM", 330.0)
    assert result["efficiency"] == pytest.approx(285.71 / 330.0, abs=1e-3)


def test_without_a_bf16_peak_or_a_report_fp32_is_the_bound():
    assert point("fp32")["peak_used"] == "fp32 GEMM"
    assert point("fp32", "f32")["peak_used"] == "fp32 GEMM"
    assert point("auto", "bf16", peaks={**PEAKS, "bf16_gemm_gflops": None})["peak_used"] == "fp32 GEMM"


def test_a_weight_heavy_point_is_memory_bound():
    result = roofline_point(1.0e9, 1.0e9, 0.1, PEAKS, "fp32")  # intensity 1 FLOP/byte: 25 GFLOP/s from memory
    assert (result["bound"], result["bound_gflops"]) == ("memory", 25.0)


def test_minilm_encoder_flops_at_batch_one_by_32_tokens():
    # 6 layers x 32 tokens x 2 x (4*384^2 + 2*384*1536 + 2*32*384) multiply-adds
    assert encoder_flops(MINILM, 1, 32) == 2.0 * 6 * 32 * (4 * 384**2 + 2 * 384 * 1536 + 2 * 32 * 384)
