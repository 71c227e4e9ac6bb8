"""A short per-machine calibration (fp32, int8 and bf16 GEMM throughput, memory bandwidth) and each
variant's achieved throughput against the roofline bound.

The calibration uses numpy's BLAS for fp32 GEMM, ONNX Runtime's MatMulInteger for int8 (the
kernel dynamic int8 models run) and OpenVINO's MatMul at bf16 precision for bf16 (what OpenVINO runs
fp32 and fp16 models in on CPUs with bf16); all at the pipeline's thread count, the memory bandwidth
too (one copying thread per pipeline thread: one core cannot saturate the memory bus). Energy comes
from RAPL (powercap) when the machine exposes it, and is "n/a" otherwise -- never an estimate. The
CPU canary's best time is the reference the benchmark worker checks each CPU's speed against.

A variant's point on the roofline uses what one call really does:

- **flops and bytes**: the model kind's FLOP/byte model (``Task.roofline``; for the encoder, the weights one
  call reads, of the embedding table only the gathered rows) at the width the runtime holds a weight in
  memory (``bytes_per_weight``).
- **peak**: the precision the runtime computes the encoder's matrices in (``compute_precision``). Only
  kernels that multiply int8 by int8 are held to the int8 GEMM peak; weight-only int8 (OpenVINO
  ``int8-weights`` at bf16), llama.cpp's q8_0 and K-quants and MLX's quantized matrices dequantize and
  are held to the fp32 or bf16 peak, whichever the runtime says it computed in.

Example:
    >>> peaks = calibrate(threads=2)
    >>> compute = compute_precision("onnxruntime", "int8", {})
    >>> cost = get_task("embedding").roofline("b1_s32", {"config": config, "bytes_per_weight": 1.0})
    >>> roofline_point(cost["flops"], cost["bytes"], seconds=0.0017, peaks=peaks, compute=compute)
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
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


def _copy_slice(target: np.ndarray, source: np.ndarray) -> None:
    np.copyto(target, source)  # releases the GIL for plain dtypes, so slices copy in parallel


def memory_bandwidth_gbs(threads: int = 1, repeats: int = 5, size_bytes: int = BANDWIDTH_BYTES) -> float:
    """Copy bandwidth with ``threads`` threads, each copying its own slice: bytes read plus written per second."""
    source = np.ones(size_bytes // 8, dtype=np.float64)
    target = np.empty_like(source)
    bounds = np.linspace(0, source.size, threads + 1).astype(int)
    slices = [slice(start, end) for start, end in zip(bounds[:-1], bounds[1:], strict=True)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        def copy_all() -> None:
            for done in [pool.submit(_copy_slice, target[part], source[part]) for part in slices]:
                done.result()

        seconds = _best_seconds(copy_all, repeats)
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
        "memory_bandwidth_gbs": round(memory_bandwidth_gbs(threads), 2),
        "energy": "rapl" if energy_counter_uj() is not None else "n/a",
        "cpu_canary_ms": canary_reference_ms(),
        "method": "best of repeated runs: numpy matmul (fp32), onnxruntime MatMulInteger (int8), OpenVINO MatMul at "
                  "bf16 inference precision (bf16), np.copyto of a 256 MiB buffer split over "
                  f"{threads} threads (2 x bytes); "
                  f"CPU canary: a {CANARY_LOOP}-step Python loop pinned to each CPU in turn, best over 5 s",
    }


# Bytes one weight of an encoder matrix takes in memory while a call reads it, by the variant's precision.
# llama.cpp block formats (ggml-common.h): q8_0 is 32 int8 + an fp16 scale = 34 bytes per 32 weights;
# q5_K is 176 bytes per 256 weights (5.5 bits), q4_K 144 per 256 (4.5 bits). The _M mixes keep a few
# tensors at q6_K (6.56 bits), and rows that are not a multiple of 256 (MiniLM's 384) fall back to
# q5_0/q5_1 (5.5/6 bits) or q4_0/q4_1 (4.5/5 bits), so these two are lower bounds within about 15%.
# int8 formats carry per-channel scales (and zero points), under 0.1% of the bytes.
BYTES_PER_WEIGHT = {
    "fp32": 4.0, "f32": 4.0, "auto": 4.0, "fp16": 2.0, "f16": 2.0, "bf16": 2.0,
    "int8": 1.0, "int8-weights": 1.0, "int8-accuracy": 1.0, "int8-static": 1.0,
    "q8_0": 34 / 32, "q5_k_m": 5.5 / 8, "q4_k_m": 4.5 / 8, "int4": 0.5,
}
# MLX affine quantization stores an fp32 scale and bias per group of 64 weights (its group_size default).
MLX_GROUP_BYTES = 8 / 64
# OpenVINO's CPU plugin converts float weights to its inference precision when it compiles the model
# (an fp16 IR is decompressed to f32, an fp32 one compressed to bf16), so that width is what a call reads.
INFERENCE_WIDTH = {"f32": 4.0, "bf16": 2.0, "f16": 2.0}
FLOAT_PRECISIONS = ("fp32", "f32", "auto", "fp16", "f16", "bf16")
# Variants whose encoder matrices run int8 x int8 kernels (VNNI/AMX): dynamic int8 (MatMulInteger) and
# static int8 (QDQ), in ONNX Runtime and Olive, and OpenVINO's full int8 (NNCF quantize).
INT8_COMPUTE = {("onnxruntime", "int8"), ("olive", "int8"), ("olive", "int8-static"), ("openvino", "int8"),
                ("openvino", "int8-accuracy")}


def bytes_per_weight(runtime: str, precision: str, settings: dict[str, Any]) -> tuple[float, str]:
    """Bytes per encoder weight as a call reads it, and where the number comes from.

    Args:
        settings: the runtime's own report (``runtime_settings`` of the benchmark metrics).
    """
    computed_in = settings.get("inference_precision")
    if runtime == "openvino" and precision in FLOAT_PRECISIONS and computed_in in INFERENCE_WIDTH:
        return INFERENCE_WIDTH[computed_in], f"OpenVINO converts float weights to its inference precision ({computed_in})"
    if precision not in BYTES_PER_WEIGHT:
        return 4.0, f"precision {precision!r} has no known width: fp32 assumed"
    width = BYTES_PER_WEIGHT[precision]
    if runtime == "mlx" and width < 2:
        return width + MLX_GROUP_BYTES, f"{precision} plus an fp32 scale and bias per group of 64"
    return width, f"{precision} storage width"


def compute_precision(runtime: str, precision: str, settings: dict[str, Any]) -> str:
    """``int8``, ``bf16`` or ``fp32``: what the runtime computes the encoder's matrices in.

    OpenVINO's weight-only int8 quantizes activations on the fly to run int8 kernels only when its
    inference precision is f32 and dynamic quantization is on (``useDynamicQuantizationImpl`` in
    openvino's intel_cpu ``dnnl_fullyconnected_primitive.cpp`` requires an f32 source); at bf16 it
    dequantizes the weights and computes in bf16.
    """
    computed_in = settings.get("inference_precision")
    if (runtime, precision) in INT8_COMPUTE:
        return "int8"
    if (runtime, precision) == ("openvino", "int8-weights") and computed_in == "f32" and settings.get("dynamic_quantization_group_size"):
        return "int8"
    return "bf16" if computed_in == "bf16" else "fp32"


PEAKS = {"int8": ("int8_gemm_gops", "int8 GEMM"), "bf16": ("bf16_gemm_gflops", "bf16 GEMM"),
         "fp32": ("fp32_gemm_gflops", "fp32 GEMM")}


def roofline_point(flops: float, weight_bytes: float, seconds: float, peaks: dict[str, Any], compute: str) -> dict[str, Any]:
    """Achieved throughput of one scenario against min(compute peak, intensity × bandwidth).

    Args:
        weight_bytes: the bytes one call reads (``weight_bytes_per_call``).
        compute: ``compute_precision`` of the variant; a peak this machine has no measurement of
            (no onnxruntime for int8, no bf16 in OpenVINO) falls back to fp32, and says so.
    """
    key, peak_used = PEAKS[compute]
    if not peaks.get(key):
        key, peak_used = PEAKS["fp32"][0], f"fp32 GEMM (no {compute} peak measured)"
    peak = peaks[key]
    intensity = flops / weight_bytes if weight_bytes else float("inf")
    bound = min(peak, intensity * peaks["memory_bandwidth_gbs"])
    achieved = flops / seconds / 1e9
    return {
        "gflops_achieved": round(achieved, 2),
        "arithmetic_intensity": round(intensity, 2),
        "weight_bytes": int(round(weight_bytes)),
        "bound_gflops": round(bound, 2),
        "bound": "compute" if bound == peak else "memory",
        "computed_in": compute,
        "peak_used": peak_used,
        "efficiency": round(achieved / bound, 4) if bound else None,
    }
