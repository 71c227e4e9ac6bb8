"""A short per-machine calibration (fp32 and int8 GEMM throughput, memory bandwidth) and each
variant's achieved throughput against the roofline bound.

The calibration uses numpy's BLAS for fp32 GEMM, ONNX Runtime's MatMulInteger for int8 (the
kernel dynamic int8 models run) and OpenVINO's MatMul at bf16 precision for bf16 (what OpenVINO runs
fp32 and fp16 models in on CPUs with bf16); all at the pipeline's thread count. Energy comes from RAPL
(powercap) when the machine exposes it, and is "n/a" otherwise — never an estimate. The CPU canary's
best time is the reference the benchmark worker checks each CPU's speed against.

Example:
    >>> peaks = calibrate(threads=2)
    >>> roofline_point(flops=2.9e9, weight_bytes=22e6, seconds=0.0025, peaks=peaks, precision="int8")
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bench.system import CANARY_LOOP, canary_reference_ms

GEMM_SIZE = 1024
BANDWIDTH_BYTES = 256 * 2**20
RAPL = Path("/sys/class/powercap/intel-rapl:0/energy_uj")


def _best_seconds(call, repeats: int) -> float:
    call()  # warm-up: page faults, thread pool start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_fp32_gflops(threads: int, size: int = GEMM_SIZE, repeats: int = 8) -> float:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size), dtype=np.float32), rng.standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(limits=threads):
        seconds = _best_seconds(lambda: a @ b, repeats)
    return 2 * size**3 / seconds / 1e9


def gemm_int8_gops(threads: int, size: int = GEMM_SIZE, repeats: int = 8) -> float | None:
    """int8 GEMM through ONNX Runtime's MatMulInteger, or None without onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [size, size])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.integers(0, 255, (size, size), dtype=np.uint8), "b": rng.integers(-127, 127, (size, size), dtype=np.int8)}
    seconds = _best_seconds(lambda: session.run(None, feed), repeats)
    return 2 * size**3 / seconds / 1e9


def gemm_bf16_gflops(threads: int, size: int = GEMM_SIZE, repeats: int = 8) -> float | None:
    """bf16 GEMM through OpenVINO's CPU plugin, the kernel its bf16 inference runs.

    None without openvino, or where the plugin does not run bf16 on this CPU.
    """
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    a = ops.parameter([size, size], ov.Type.f32, name="a")
    model = ov.Model([ops.matmul(a, ops.constant(rng.standard_normal((size, size), dtype=np.float32)), False, False)], [a])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                      "INFERENCE_PRECISION_HINT": ov.Type.bf16})
    if compiled.get_property("INFERENCE_PRECISION_HINT") != ov.Type.bf16:
        return None
    request, feed = compiled.create_infer_request(), {0: rng.standard_normal((size, size), dtype=np.float32)}
    seconds = _best_seconds(lambda: request.infer(feed), repeats)
    return 2 * size**3 / seconds / 1e9


def memory_bandwidth_gbs(repeats: int = 5) -> float:
    """Copy bandwidth: bytes read plus bytes written per second."""
    source = np.ones(BANDWIDTH_BYTES // 8, dtype=np.float64)
    target = np.empty_like(source)
    seconds = _best_seconds(lambda: np.copyto(target, source), repeats)
    return 2 * source.nbytes / seconds / 1e9


def energy_counter_uj() -> int | None:
    """The RAPL package energy counter in µJ, or None where the machine does not expose it."""
    try:
        return int(RAPL.read_text())
    except (OSError, ValueError):
        return None


def calibrate(threads: int) -> dict[str, Any]:
    """Peak fp32/int8 GEMM throughput and memory bandwidth of this machine at ``threads`` threads."""
    int8, bf16 = gemm_int8_gops(threads), gemm_bf16_gflops(threads)
    return {
        "threads": threads,
        "gemm_size": GEMM_SIZE,
        "fp32_gemm_gflops": round(gemm_fp32_gflops(threads), 2),
        "int8_gemm_gops": None if int8 is None else round(int8, 2),
        "bf16_gemm_gflops": None if bf16 is None else round(bf16, 2),
        "memory_bandwidth_gbs": round(memory_bandwidth_gbs(), 2),
        "energy": "rapl" if energy_counter_uj() is not None else "n/a",
        "cpu_canary_ms": canary_reference_ms(),
        "method": "best of repeated runs: numpy matmul (fp32), onnxruntime MatMulInteger (int8), OpenVINO MatMul at "
                  "bf16 inference precision (bf16), np.copyto (2 x bytes); "
                  f"CPU canary: a {CANARY_LOOP}-step Python loop pinned to each CPU in turn, best over 5 s",
    }


def encoder_flops(config: dict[str, Any], batch_size: int, seq_length: int) -> float:
    """Multiply-add FLOPs of one BERT-style encoder forward pass (embeddings and pooling left out)."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    layers, tokens = config["num_hidden_layers"], batch_size * seq_length
    projections = 4 * hidden * hidden + 2 * hidden * inner  # Q, K, V, O and the two FFN matrices
    attention = 2 * seq_length * hidden  # scores and context, per token
    return 2.0 * layers * tokens * (projections + attention)


def roofline_point(flops: float, weight_bytes: float, seconds: float, peaks: dict[str, Any], precision: str,
                   computed_in: str | None = None) -> dict[str, Any]:
    """Achieved throughput of one scenario against min(compute peak, intensity × bandwidth).

    Args:
        precision: the variant's precision; int8/q* variants are held to the int8 GEMM peak.
        computed_in: the precision the runtime reports it computed in (OpenVINO's ``inference_precision``);
            ``bf16`` is held to the bf16 GEMM peak, as measuring it against fp32 would pass 100%.
    """
    int8 = precision.startswith(("int8", "q8", "q5", "q4", "int4"))
    if int8 and peaks.get("int8_gemm_gops"):
        peak, peak_used = peaks["int8_gemm_gops"], "int8 GEMM"
    elif computed_in == "bf16" and peaks.get("bf16_gemm_gflops"):
        peak, peak_used = peaks["bf16_gemm_gflops"], "bf16 GEMM"
    else:
        peak, peak_used = peaks["fp32_gemm_gflops"], "fp32 GEMM"
    intensity = flops / weight_bytes if weight_bytes else float("inf")
    bound = min(peak, intensity * peaks["memory_bandwidth_gbs"])
    achieved = flops / seconds / 1e9
    return {
        "gflops_achieved": round(achieved, 2),
        "arithmetic_intensity": round(intensity, 2),
        "bound_gflops": round(bound, 2),
        "bound": "compute" if bound == peak else "memory",
        "peak_used": peak_used,
        "efficiency": round(achieved / bound, 4) if bound else None,
    }
