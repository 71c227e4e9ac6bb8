"""The ``decoder_benchmark`` stage for one decoder variant: prefill and decode speed in fresh processes.

``decoder.benchmark.repeats`` processes each load the variant and time every prompt length's prefill
(time to first token) and a greedy generation token by token (``edgekit.tasks.generation.worker``).
Medians and their 95% CIs come from the same hierarchical bootstrap as the encoder's (processes, then
samples within each), so the process-to-process spread is in every interval. A process measured while
other processes used the CPU is retried once, then kept and counted in ``busy_processes``.

Example:
    >>> run(params, Layout(Path(".")), "gguf-q4_k_m")["decode"]["tokens_per_s"]
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from edgekit.bench.harness import THREAD_ENV
from edgekit.bench.stats import hierarchical_median_ci, median_of_medians
from edgekit.fsutil import write_json
from edgekit.isolation import run_child
from edgekit.layout import Layout
from edgekit.manifest import verify_manifest
from edgekit.params import Params

_CONTEXT_SPARE = 8


def _prompts(layout: Layout, lengths: tuple[int, ...]) -> dict[str, list[int]]:
    """The first ``n`` tokens of the held-out windows for each prompt length (the same for every variant)."""
    stream = [int(t) for t in np.load(layout.decoder_baseline_dir / "windows.npy").reshape(-1)]
    return {str(n): stream[:n] for n in lengths}


def _request(params: Params, layout: Layout, name: str, manifest: dict) -> dict[str, Any]:
    bench = params.decoder.benchmark
    return {
        "runtime": manifest["runtime"], "precision": manifest["precision"], "options": manifest["options"],
        "variant_dir": str(layout.decoder_variant_dir(name).resolve()), "threads": params.threads,
        "prompts": _prompts(layout, bench.prompt_lengths), "generate_tokens": bench.generate_tokens,
        "warmup_tokens": bench.warmup_tokens, "prefill_iterations": bench.prefill_iterations,
        "context": max(bench.prompt_lengths) + bench.warmup_tokens + bench.generate_tokens + _CONTEXT_SPARE,
        "busy_foreign_load": params.benchmark.busy_foreign_load, "busy_steal_share": params.benchmark.busy_steal_share,
    }


def _measure(request: dict[str, Any], params: Params) -> dict[str, Any]:
    env = dict(os.environ, **{name: str(params.threads) for name in THREAD_ENV})
    for _ in range(1 + params.benchmark.unstable_retries):
        run = run_child("edgekit.tasks.generation.worker:run", request, params.decoder.benchmark.timeout_seconds,
                        "decoder.benchmark.timeout_seconds", env)
        if run["status"] != "ok" or not run["noise"]["busy"]:
            break
    return run


def _median_record(processes: list[np.ndarray], seed: int) -> dict[str, Any]:
    low, high = hierarchical_median_ci(processes, seed=seed)
    pooled = np.concatenate(processes)
    return {"ms_p50": median_of_medians(processes), "ms_p50_ci95": [low, high],
            "ms_p90": float(np.percentile(pooled, 90)), "ms_p99": float(np.percentile(pooled, 99)),
            "process_medians_ms": [float(np.median(p)) for p in processes]}


def summarize(runs: list[dict[str, Any]], lengths: tuple[int, ...], seed: int) -> dict[str, Any]:
    """Decode ms per token and tokens/s, and per prompt length the prefill (time to first token) and its tokens/s."""
    decode = _median_record([np.array(r["decode_ms"]) for r in runs], seed)
    decode["tokens_per_s"] = 1000 / decode["ms_p50"]
    decode["tokens_per_s_ci95"] = [1000 / decode["ms_p50_ci95"][1], 1000 / decode["ms_p50_ci95"][0]]
    prefill = {}
    for n in lengths:
        record = _median_record([np.array(r["prefill_ms"][str(n)]) for r in runs], seed)
        record["tokens_per_s"] = n * 1000 / record["ms_p50"]
        record["tokens_per_s_ci95"] = [n * 1000 / record["ms_p50_ci95"][1], n * 1000 / record["ms_p50_ci95"][0]]
        prefill[str(n)] = record
    return {"decode": decode, "prefill": prefill, "processes": len(runs),
            "busy_processes": sum(bool(r["noise"]["busy"]) for r in runs),
            "load_s_median": float(np.median([r["load_s"] for r in runs])),
            "peak_rss_mb": float(np.median([r["peak_rss_bytes"] for r in runs])) / 2**20,
            "model_memory_mb": float(np.median([r["model_memory_bytes"] for r in runs])) / 2**20}


def run(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    folder = layout.decoder_variant_dir(name)
    manifest = verify_manifest(folder)
    record: dict[str, Any] = {"variant": name, "runtime": manifest["runtime"], "precision": manifest["precision"]}
    runs: list[dict[str, Any]] = []
    if manifest["status"] != "ok":
        record.update(status=manifest["status"], reason=manifest.get("reason") or manifest.get("error"))
        if manifest.get("install"):  # a skipped variant: the pip command that makes it, for the report and explorer
            record["install"] = manifest["install"]
    else:
        request = _request(params, layout, name, manifest)
        runs = [_measure(request, params) for _ in range(params.decoder.benchmark.repeats)]
        failed = [r for r in runs if r["status"] != "ok"]
        if failed:
            record.update(status="failed", error=failed[0].get("error"))
        else:
            record.update(status="ok", **summarize(runs, params.decoder.benchmark.prompt_lengths, params.seed),
                          size_mb=manifest["size_bytes"] / 2**20,
                          runtime_settings=runs[0]["runtime_settings"])
    write_json(layout.decoder_benchmark_samples(name), {"variant": name, "runs": runs})
    write_json(layout.decoder_benchmark_metrics(name), record)
    return record
