"""Why each measured variant is as fast as it is, and what to try next.

Each variant gets one class, decided in this order (the first that holds wins):

1. **unstable** — the harness flagged the *headline* scenario ``busy`` (a process measured while
   other processes took more than ``benchmark.busy_foreign_load`` cores, or the hypervisor stole
   more than ``benchmark.busy_steal_share``) or ``process_spread`` (its processes' medians differ by
   more than ``benchmark.max_process_spread``). The diagnosis reads those codes, with the values and
   limits the harness recorded next to them, from the scenario's ``instability``: it has no
   thresholds of its own. A slow scenario that merely did not converge (``not_converged``) is not
   unstable: its median is still sound, only its CI is wider.
2. **overhead-bound** — a fixed per-call cost dominates: the least-squares fit
   ``p50 = a + c·(batch·seq)`` over all scenarios gives ``a / p50(headline)`` above
   ``OVERHEAD_SHARE``, or the headline reaches less than ``LOW_EFFICIENCY`` of the roofline bound
   (the hardware is mostly idle, whatever the cause).
3. **memory-bound** or **compute-bound** — the side of the roofline the headline sits on.

The fit weights each scenario by its relative misfit: unweighted, the largest scenario (32× the
tokens of the headline) sets the intercept alone, and a runtime whose GEMMs get more efficient at
larger sizes looks overhead-bound (OpenVINO bf16 at 95% of the roofline came out at 80% fixed cost).
Attention grows with seq², so the fit can pass below zero; the share is then 0, a conservative answer.

Example:
    >>> diagnose(summary["variants"]["ort-int8"], read_json(Path("metrics/benchmark/ort-int8.json")), "b1_s32")
    {'class': 'compute-bound', 'evidence': 'because the headline sits on the compute side of the roofline; ...', 'overhead_share': 0.1168, 'hints': [...]}
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edgekit.errors import StageInputError

UNSTABLE_CODES = ("busy", "process_spread")  # the harness's instability codes that make a headline unstable
OVERHEAD_SHARE = 0.5  # fixed per-call cost as a share of the headline p50
LOW_EFFICIENCY = 0.05  # achieved / roofline bound at the headline
CLASSES = ("unstable", "overhead-bound", "memory-bound", "compute-bound")
GENERIC = "generic"

# Hints per runtime × class; a runtime without an entry for a class gets the generic one.
# "unstable" is about the machine, not the runtime, so only the generic entry has it.
HINTS: dict[str, dict[str, tuple[str, ...]]] = {
    GENERIC: {
        "unstable": ("re-run on an idle machine: the harness records foreign load and CPU steal for every run",
                     "raise benchmark.headline_repeats and benchmark.unstable_retries so busy runs are retried",
                     "keep other work off the benchmark cores (taskset, or a dedicated runner)"),
        "overhead-bound": ("batch requests: a fixed per-call cost is paid once per batch",
                           "profile one call to find the per-call work (input conversion, allocation, thread wake-up)"),
        "memory-bound": ("quantize the weights (int8 or lower) to cut the bytes read per call",
                         "batch requests: the weights are read once per call, so a bigger batch raises arithmetic intensity"),
        "compute-bound": ("use int8 with the CPU's dot-product units (VNNI, AMX or Arm dotprod)",
                          "set the thread count to the physical cores, not the logical ones"),
    },
    "pytorch": {
        "overhead-bound": ("eager PyTorch pays Python dispatch per operator: export to ONNX or try torch.compile",
                           "torch.inference_mode() and torch.set_num_threads(physical cores)"),
        "memory-bound": ("torch.ao.quantization.quantize_dynamic on nn.Linear for int8 weights",),
        "compute-bound": ("torch.ao.quantization.quantize_dynamic (int8 nn.Linear) uses fbgemm's VNNI kernels",
                          "or export to ONNX/OpenVINO, whose fused attention kernels the baseline lacks"),
    },
    "onnxruntime": {
        "overhead-bound": ("keep graph_optimization_level at 'all' and run the transformers optimizer so attention, "
                           "LayerNorm and GELU fuse",
                           "bind inputs and outputs with IO binding to skip per-call copies",
                           "fewer intra_op threads for small batches: waking threads costs more than a 2 ms call gains"),
        "memory-bound": ("quantize to int8 (dynamic, per-channel) to cut weight traffic 4×",
                         "batch requests to reuse each weight read across more tokens"),
        "compute-bound": ("check that MLAS uses VNNI/AMX int8 kernels (int8 needs avx512_vnni, avx_vnni or amx_int8)",
                          "try static int8 (QDQ) with a calibration set, which removes the run-time quantize ops",
                          "intra_op_num_threads = physical cores"),
    },
    "olive": {
        "overhead-bound": ("add Olive's OrtTransformersOptimization pass (attention and LayerNorm fusion)",
                           "the model runs in ONNX Runtime: IO binding and fewer threads for small batches apply"),
        "memory-bound": ("add OnnxDynamicQuantization (int8 weights) to the Olive workflow",),
        "compute-bound": ("try OnnxStaticQuantization with a bigger calibration set",
                          "check that ONNX Runtime's int8 kernels use VNNI/AMX on this CPU"),
    },
    "openvino": {
        "overhead-bound": ("PERFORMANCE_HINT LATENCY with one stream and INFERENCE_NUM_THREADS = physical cores",
                           "reshape to static input shapes so the CPU plugin skips per-call shape inference",
                           "create one InferRequest and reuse it instead of calling the compiled model"),
        "memory-bound": ("compress the weights to int8 (nncf.compress_weights) to cut weight traffic",
                         "set inference_precision f32 vs bf16 and compare: bf16 halves activation traffic"),
        "compute-bound": ("set inference_precision f32 vs bf16 and compare",
                          "try int8 (NNCF) with a bigger calibration set; VNNI/AMX kernels run int8 GEMM",
                          "use accuracy-controlled int8 (nncf.quantize_with_accuracy_control) if full int8 loses fidelity"),
    },
    "llamacpp": {
        "overhead-bound": ("n_threads = physical cores; n_batch and n_ubatch ≥ batch·seq so one call is one graph pass",
                           "embed a list of texts per call instead of one text at a time"),
        "memory-bound": ("q8_0 halves f16 weight traffic; k-quants need rows divisible by 256, so MiniLM's 384-wide "
                         "rows fall back to legacy types — check the quant_type actually written",),
        "compute-bound": ("q8_0 runs on the int8 dot-product kernels; k-quants on 384-wide rows fall back to "
                          "q5_0/q5_1, so compare q8_0 against q4_k_m rather than assume",
                          "n_threads = physical cores, not logical"),
    },
    "mlx": {
        cls: ("the mlx[cpu] build on Linux has no thread setting and generic CPU kernels (20–50× slower than the "
              "other runtimes here); measure on Apple silicon with the Metal GPU device",
              "mx.compile the forward pass and keep group_size at 64 for 8-bit weights")
        for cls in ("overhead-bound", "memory-bound", "compute-bound")
    },
}


def hints(runtime: str | None, cls: str) -> list[str]:
    """The runtime's hints for a class, or the generic ones."""
    table = HINTS.get(runtime or "", {})
    return list(table.get(cls) or HINTS[GENERIC][cls])


def parse_scenario(key: str) -> tuple[int, int]:
    """``"b8_s128"`` → ``(8, 128)``."""
    match = re.fullmatch(r"b(\d+)_s(\d+)", key)
    if not match:
        raise ValueError(f"scenario key {key!r} is not of the form b<batch>_s<seq>")
    return int(match.group(1)), int(match.group(2))


def overhead_share(scenarios: dict[str, dict[str, Any]], headline: str) -> float | None:
    """Fixed per-call time over the headline p50, from ``p50 = a + c·(batch·seq)``; None without a fit.

    A fit needs at least two distinct token counts. The share is clipped to [0, 1].
    """
    points = sorted((float(np.prod(parse_scenario(k))), float(s["p50_ms"])) for k, s in scenarios.items())
    if len({tokens for tokens, _ in points}) < 2:
        return None
    tokens, p50 = np.array(points).T
    # weights 1/p50: each scenario counts by its relative misfit (see the module docstring)
    _, fixed_ms = np.polyfit(tokens, p50, 1, w=1.0 / p50)
    return round(float(np.clip(fixed_ms / scenarios[headline]["p50_ms"], 0.0, 1.0)), 4)


def instability(scenario: dict[str, Any], key: str = "headline") -> list[dict[str, Any]]:
    """The harness's structured instability entries of one scenario.

    Raises:
        StageInputError: the scenario has no ``instability`` record (metrics older than the harness).
    """
    if "instability" not in scenario:
        raise StageInputError(f"the {key} scenario's benchmark metrics have no structured instability record",
                              "re-run `dvc repro benchmark` so the metrics come from the current harness")
    return scenario["instability"]


def busy_reasons(scenario: dict[str, Any]) -> list[str]:
    """The harness's texts for a busy machine during this scenario (code ``busy``)."""
    return [entry["text"] for entry in instability(scenario) if entry["code"] == "busy"]


def _classify(headline: dict[str, Any], share: float | None, roofline: dict[str, Any]) -> tuple[str, str]:
    """The class and the fact that decided it, following the order in the module docstring."""
    flags = {entry["code"]: entry for entry in instability(headline) if entry["code"] in UNSTABLE_CODES}
    if "busy" in flags:
        return "unstable", "the headline was measured on a busy machine: " + flags["busy"]["text"]
    if "process_spread" in flags:
        spread = flags["process_spread"]
        return "unstable", (f"the headline's repeats differ by {spread['value']:.1%} > {spread['limit']:.0%} "
                            "(benchmark.max_process_spread)")
    if share is not None and share > OVERHEAD_SHARE:
        return "overhead-bound", f"fixed per-call cost {share:.0%} of the headline p50 > {OVERHEAD_SHARE:.0%}"
    efficiency = roofline.get("efficiency")
    if efficiency is not None and efficiency < LOW_EFFICIENCY:
        return "overhead-bound", f"{efficiency:.1%} of the roofline bound < {LOW_EFFICIENCY:.0%}: the hardware is mostly idle"
    return f"{roofline['bound']}-bound", f"the headline sits on the {roofline['bound']} side of the roofline"


def _fit_text(share: float | None, count: int) -> str:
    if share is None:
        return "one scenario size only: no fixed-cost fit"
    if share == 0.0:
        return f"no measurable fixed per-call cost (fit over {count} scenarios; cost grows faster than the token count)"
    return f"fixed per-call cost {share:.0%} of the headline p50 (fit over {count} scenarios)"


def _roofline_text(roofline: dict[str, Any]) -> str:
    efficiency = roofline.get("efficiency")
    return (f"{roofline['gflops_achieved']} of {roofline['bound_gflops']} GFLOP/s"
            + (f" ({efficiency:.0%})" if efficiency is not None else "")
            + f" on the {roofline.get('peak_used', 'measured')} roofline at intensity {roofline['arithmetic_intensity']}")


def _evidence(key: str, headline: dict[str, Any], why: str, share: float | None, count: int, roofline: dict[str, Any]) -> str:
    """``because ...; headline b1_s32: p50 2.689 ms, spread 2.0%; fit ...; roofline ...``."""
    spread = headline.get("between_process_spread") or 0.0
    return "; ".join((f"because {why}", f"headline {key}: p50 {headline['p50_ms']:.3f} ms, between-process spread {spread:.1%}",
                      _fit_text(share, count), _roofline_text(roofline)))


def diagnose(row: dict[str, Any], bench: dict[str, Any], headline: str) -> dict[str, Any]:
    """Classify one measured variant and say what to try.

    Args:
        row: the variant's row of metrics/summary.json (needs ``runtime`` and ``roofline``).
        bench: the variant's metrics/benchmark/<variant>.json (needs ``scenarios``).
        headline: the scenario key every variant is compared at, e.g. ``"b1_s32"``.

    Returns:
        ``{"class", "evidence", "overhead_share", "hints"}``; ``class`` is one of ``CLASSES``.

    Raises:
        StageInputError: the headline scenario, its instability record or the roofline point is missing.
    """
    scenarios = bench.get("scenarios") or {}
    if headline not in scenarios or "roofline" not in row:
        raise StageInputError(f"variant {row.get('variant', '?')} has no {'roofline point' if headline in scenarios else headline + ' scenario'}",
                              "re-run `dvc repro select` so the summary and the benchmark metrics match")
    share = overhead_share(scenarios, headline)
    cls, why = _classify(scenarios[headline], share, row["roofline"])
    return {"class": cls, "evidence": _evidence(headline, scenarios[headline], why, share, len(scenarios), row["roofline"]),
            "overhead_share": share, "hints": hints(row.get("runtime") or bench.get("runtime"), cls)}


def diagnose_all(summary: dict[str, Any], bench_by_variant: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``diagnose`` for every measured (status ``ok``) variant of the summary that has benchmark metrics."""
    headline = summary["headline_scenario"]
    return {name: diagnose(row, bench_by_variant[name], headline) for name, row in summary["variants"].items()
            if row.get("status") == "ok" and name in bench_by_variant}
