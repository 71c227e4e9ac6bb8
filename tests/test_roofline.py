"""The roofline point: the bytes one call reads, the peak a variant is held to, and what it achieved."""

from __future__ import annotations

import threading

import pytest

from edgekit.bench import roofline
from edgekit.bench.roofline import bytes_per_weight, compute_precision, memory_bandwidth_gbs, roofline_point
from edgekit.tasks.embedding.roofline import encoder_flops, weight_bytes_per_call

PEAKS = {"fp32_gemm_gflops": 200.0, "int8_gemm_gops": 700.0, "bf16_gemm_gflops": 330.0, "memory_bandwidth_gbs": 25.0}
MINILM = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6, "vocab_size": 30522}
OV_BF16 = {"inference_precision": "bf16", "dynamic_quantization_group_size": 32}
OV_F32 = {"inference_precision": "f32", "dynamic_quantization_group_size": 32}


def point(compute: str, peaks: dict = PEAKS, seconds: float = 0.001) -> dict:
    return roofline_point(1.0e9, 1.0e6, seconds, peaks, compute)  # intensity 1000: compute-bound


@pytest.mark.parametrize(("runtime", "precision", "settings"), [
    ("onnxruntime", "int8", {}), ("olive", "int8", {}), ("olive", "int8-static", {}),
    ("openvino", "int8", OV_BF16), ("openvino", "int8-accuracy", OV_F32)])
def test_int8_by_int8_kernels_are_held_to_the_int8_peak(runtime, precision, settings):
    assert compute_precision(runtime, precision, settings) == "int8"


@pytest.mark.parametrize(("runtime", "precision", "settings", "compute"), [
    ("llamacpp", "q8_0", {}, "fp32"), ("llamacpp", "q4_k_m", {}, "fp32"), ("llamacpp", "q5_k_m", {}, "fp32"),
    ("llamacpp", "f16", {}, "fp32"), ("mlx", "int8", {}, "fp32"), ("mlx", "int4", {}, "fp32"),
    ("openvino", "int8-weights", OV_BF16, "bf16"),  # weights dequantized, computed at bf16
    ("openvino", "int8-weights", {**OV_F32, "dynamic_quantization_group_size": 0}, "fp32"),
    ("openvino", "fp32", OV_BF16, "bf16"), ("openvino", "fp16", OV_F32, "fp32"),
    ("onnxruntime", "fp32", {}, "fp32"), ("pytorch", "fp32", {}, "fp32")])
def test_weight_only_quantization_is_held_to_the_float_peak_it_computes_in(runtime, precision, settings, compute):
    assert compute_precision(runtime, precision, settings) == compute


def test_openvino_weight_only_int8_runs_int8_kernels_only_at_f32_with_dynamic_quantization():
    # OpenVINO quantizes activations on the fly for u8 weights only from an f32 source
    assert compute_precision("openvino", "int8-weights", OV_F32) == "int8"


def test_a_variant_is_held_to_the_peak_of_what_it_computes_in():
    assert (point("int8")["peak_used"], point("int8")["bound_gflops"]) == ("int8 GEMM", 700.0)
    # 1 GFLOP in 3.5 ms = 286 GFLOP/s: above the fp32 peak, so against fp32 it would read 143%
    result = point("bf16", seconds=0.0035)
    assert (result["peak_used"], result["bound_gflops"], result["computed_in"]) == ("bf16 GEMM", 330.0, "bf16")
    assert result["efficiency"] == pytest.approx(285.71 / 330.0, abs=1e-3)
    assert point("fp32")["peak_used"] == "fp32 GEMM"


def test_a_peak_this_machine_did_not_measure_falls_back_to_fp32_and_says_so():
    result = point("bf16", peaks={**PEAKS, "bf16_gemm_gflops": None})
    assert (result["peak_used"], result["bound_gflops"]) == ("fp32 GEMM (no bf16 peak measured)", 200.0)
    assert point("int8", peaks={**PEAKS, "int8_gemm_gops": None})["peak_used"] == "fp32 GEMM (no int8 peak measured)"


def test_a_weight_heavy_point_is_memory_bound():
    result = roofline_point(1.0e9, 1.0e9, 0.1, PEAKS, "fp32")  # intensity 1 FLOP/byte: 25 GFLOP/s from memory
    assert (result["bound"], result["bound_gflops"], result["weight_bytes"]) == ("memory", 25.0, 1_000_000_000)


def test_minilm_encoder_flops_at_batch_one_by_32_tokens():
    # 6 layers x 32 tokens x 2 x (4*384^2 + 2*384*1536 + 2*32*384) multiply-adds
    assert encoder_flops(MINILM, 1, 32) == 2.0 * 6 * 32 * (4 * 384**2 + 2 * 384 * 1536 + 2 * 32 * 384)


def test_minilm_weight_bytes_of_one_call_by_hand():
    matrices = 6 * (4 * 384**2 + 2 * 384 * 1536)  # 10,616,832 weights
    gathered = (1 * 32 + 32 + 1) * 384  # word rows, position rows, one token-type row
    vectors = 6 * (4 * 384 + 1536 + 384 + 4 * 384) + 2 * 384  # biases and LayerNorms, at fp32
    assert weight_bytes_per_call(MINILM, 1, 32, 4.0) == (matrices + gathered) * 4 + vectors * 4
    assert weight_bytes_per_call(MINILM, 1, 32, 1.0) == matrices + gathered + vectors * 4
    # 40.7 MiB, not the 86.7 MiB on disk: the 30522-row embedding table is gathered from, not read
    assert weight_bytes_per_call(MINILM, 1, 32, 4.0) / 2**20 == pytest.approx(40.71, abs=0.01)
    assert weight_bytes_per_call({**MINILM, "vocab_size": 250_000}, 1, 32, 4.0) == weight_bytes_per_call(MINILM, 1, 32, 4.0)
    # a bigger batch gathers more rows and reads the matrices once
    assert weight_bytes_per_call(MINILM, 8, 128, 4.0) - weight_bytes_per_call(MINILM, 1, 128, 4.0) == 7 * 128 * 384 * 4


@pytest.mark.parametrize(("runtime", "precision", "settings", "width"), [
    ("pytorch", "fp32", {}, 4.0), ("onnxruntime", "int8", {}, 1.0), ("llamacpp", "f16", {}, 2.0),
    ("llamacpp", "q8_0", {}, 34 / 32), ("llamacpp", "q5_k_m", {}, 5.5 / 8), ("llamacpp", "q4_k_m", {}, 4.5 / 8),
    ("mlx", "int8", {}, 1 + 8 / 64), ("mlx", "int4", {}, 0.5 + 8 / 64), ("mlx", "fp32", {}, 4.0),
    ("openvino", "fp32", OV_BF16, 2.0),  # compiled to bf16
    ("openvino", "fp16", OV_F32, 4.0),  # an fp16 IR decompressed to f32 at compile time
    ("openvino", "int8-weights", OV_BF16, 1.0)])
def test_bytes_per_weight_is_what_the_runtime_holds_in_memory(runtime, precision, settings, width):
    assert bytes_per_weight(runtime, precision, settings)[0] == pytest.approx(width)


def test_an_unknown_precision_is_read_as_fp32_and_says_so():
    assert bytes_per_weight("tflite", "int2-experimental", {}) == (4.0, "precision 'int2-experimental' has no known width: fp32 assumed")


def test_memory_bandwidth_copies_with_as_many_threads_as_the_pipeline_runs(monkeypatch):
    """The slices must copy at once: a barrier for ``threads`` parties breaks if they run one after another."""
    barrier, copied, threads_seen = threading.Barrier(3, timeout=10), [], set()

    def copy_at_once(target, source):
        threads_seen.add(threading.get_ident())
        barrier.wait()
        target[...] = source
        copied.append(target.size)

    monkeypatch.setattr(roofline, "_copy_slice", copy_at_once)
    assert memory_bandwidth_gbs(threads=3, repeats=2, size_bytes=3 * 2**20) > 0
    assert len(threads_seen) == 3 and sum(copied[:3]) == 3 * 2**20 // 8  # three slices covering the buffer


def test_the_select_stage_places_a_variant_from_its_runtime_report():
    from edgekit.pipeline.select import _roofline

    bench = {"scenarios": {"b1_s32": {"p50_ms": 2.4}}, "size_mb": 30.0,
             "runtime_settings": {"inference_precision": "bf16", "dynamic_quantization_group_size": 32}}
    result = _roofline(bench, MINILM, PEAKS, "openvino", "int8-weights", "b1_s32")
    assert (result["peak_used"], result["bytes_per_weight"]) == ("bf16 GEMM", 1.0)
    assert result["weight_bytes"] == weight_bytes_per_call(MINILM, 1, 32, 1.0)  # not size_mb
    assert result["arithmetic_intensity"] == pytest.approx(encoder_flops(MINILM, 1, 32) / result["weight_bytes"], abs=0.01)
