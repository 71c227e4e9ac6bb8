"""The ``benchmark`` stage: every scenario of a variant, each repeat in its own fresh process.

Per scenario (batch size × sequence length) the worker runs ``repeats`` times, each in a new
interpreter. A repeat measured on a busy machine (other processes used more than
``busy_foreign_load`` cores meanwhile, or the hypervisor stole more than ``busy_steal_share``) is
retried up to ``unstable_retries`` times and otherwise kept and flagged — never silently used. Also
flagged, not retried: a repeat that did not converge, and a scenario whose repeats' medians differ
by more than ``max_process_spread``. Each process's CPU canary times are recorded with it.
Percentiles pool the samples of all repeats; the spread between the repeats' medians is reported
next to them.

Example:
    >>> benchmark_variant(params, Layout(Path(".")), "ort-int8")["scenarios"]["b1_s32"]["p50_ms"]
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.bench.stats import PERCENTILE_METHOD, summarize
from edgekit.data import load_eval_pairs, unique_sentences
from edgekit.fsutil import read_json, write_json
from edgekit.isolation import run_child
from edgekit.layout import Layout
from edgekit.manifest import read_manifest, verify_manifest
from edgekit.params import BenchmarkParams, Params
from edgekit.variants import status_record

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def scenario_key(batch_size: int, seq_length: int) -> str:
    return f"b{batch_size}_s{seq_length}"


def scenario_request(params: Params, manifest: dict, folder: Path, texts: Path, batch_size: int, seq_length: int) -> dict[str, Any]:
    """What the worker needs to time one scenario."""
    b = params.benchmark
    return {
        "runtime": manifest["runtime"], "precision": manifest["precision"], "options": manifest["options"],
        "variant_dir": str(folder.resolve()), "threads": params.threads, "texts": str(texts),
        "batch_size": batch_size, "seq_length": seq_length, "warmup_iterations": b.warmup_iterations,
        "min_iterations": b.min_iterations, "min_seconds": b.min_seconds, "max_seconds": b.max_seconds,
        "target_ci_half_width": b.target_ci_half_width, "busy_foreign_load": b.busy_foreign_load,
        "busy_steal_share": b.busy_steal_share,
    }


def run_worker(request: dict[str, Any], threads: int, timeout: float) -> dict[str, Any]:
    """Run the timing worker in a fresh interpreter; return its result or a ``failed`` record."""
    env = dict(os.environ, **{name: str(threads) for name in THREAD_ENV})
    return run_child("edgekit.bench.worker:run", request, timeout, "benchmark.timeout_seconds", env)


def _worth_retrying(run: dict[str, Any]) -> bool:
    """A busy machine is worth another try; a run too slow to converge in the budget is not."""
    return run["status"] == "ok" and run["noise"]["busy"]


Progress = Callable[[str, dict[str, Any]], None]


def measure_scenario(request: dict[str, Any], bench: BenchmarkParams, threads: int, progress: Progress | None = None) -> list[dict[str, Any]]:
    """``repeats`` runs of one scenario, retrying those measured on a busy machine; stops at the first failure."""
    runs: list[dict[str, Any]] = []
    key = scenario_key(request["batch_size"], request["seq_length"])
    for _ in range(bench.repeats):
        for attempt in range(bench.unstable_retries + 1):
            run = run_worker(request, threads, bench.timeout_seconds)
            run["attempt"] = attempt
            if progress:
                progress(key, run)
            if not _worth_retrying(run):
                break
        runs.append(run)
        if run["status"] != "ok":
            break
    return runs


def benchmark_variant(params: Params, layout: Layout, name: str, progress: Progress | None = None) -> dict[str, Any]:
    """Write outputs/benchmark/<name>.json (raw samples) and metrics/benchmark/<name>.json.

    Args:
        progress: called with the scenario key and the run record after every process.
    """
    params.variant(name)
    folder = layout.variant_dir(name)
    manifest = read_manifest(folder)
    record = status_record(manifest)
    environment = read_json(layout.environment)
    record["environment"] = {"cpu": environment["cpu"]["model"], "lock_sha256": environment["lock_sha256"]}
    raw: list[dict[str, Any]] = []
    if manifest["status"] == "ok":
        verify_manifest(folder)
        raw = _measure(params, layout, manifest, folder, progress, name)
        failed = next((r for s in raw for r in s["runs"] if r["status"] != "ok"), None)
        if failed:
            record.update({k: failed[k] for k in ("status", "error", "stderr") if k in failed})
    write_json(layout.benchmark_samples(name), {**record, "thread_env": {k: str(params.threads) for k in THREAD_ENV},
                                                "scenarios": raw})
    metrics = {**record, **_metrics(raw, manifest, params)} if record["status"] == "ok" else record
    write_json(layout.benchmark_metrics(name), metrics)
    return metrics


def _measure(params: Params, layout: Layout, manifest: dict, folder: Path, progress: Progress | None,
             name: str) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="edgekit-texts-") as scratch:
        texts = Path(scratch) / "texts.json"
        texts.write_text(json.dumps(unique_sentences(load_eval_pairs(layout))))
        for batch_size, seq_length in params.scenarios(name):
            request = scenario_request(params, manifest, folder, texts, batch_size, seq_length)
            runs = measure_scenario(request, params.benchmark, params.threads, progress)
            results.append({"batch_size": batch_size, "seq_length": seq_length, "runs": runs})
            if runs[-1]["status"] != "ok":
                break
    return results


def _scenario_metrics(scenario: dict[str, Any], seed: int, max_spread: float) -> dict[str, Any]:
    runs = scenario["runs"]
    pooled = [x for r in runs for x in r["samples_ms"]]
    medians = [statistics.median(r["samples_ms"]) for r in runs]
    spread = (max(medians) - min(medians)) / statistics.median(medians)
    reasons = sorted({reason for r in runs for reason in _instability(r)})
    if spread > max_spread:
        reasons.append(f"repeats disagree: medians {min(medians):.3f}..{max(medians):.3f} ms, spread {spread:.1%} "
                       f"> benchmark.max_process_spread {max_spread:.0%}")
    return {
        **summarize(pooled, scenario["batch_size"], scenario["seq_length"], seed=seed),
        "repeats": len(runs),
        "process_p50_ms": [round(m, 4) for m in medians],
        "between_process_spread": round(spread, 4),
        "first_ms": round(statistics.median(r["first_ms"] for r in runs), 4),
        "load_s": round(statistics.median(r["load_s"] for r in runs), 4),
        "peak_rss_mb": round(max(r["peak_rss_bytes"] for r in runs) / 2**20, 2),
        "peak_rss_mb_range": [round(min(r["peak_rss_bytes"] for r in runs) / 2**20, 2),
                              round(max(r["peak_rss_bytes"] for r in runs) / 2**20, 2)],
        "converged": all(r["converged"] for r in runs),
        "unstable": bool(reasons),
        "unstable_reasons": reasons,
        "foreign_load_max": max((r["noise"]["foreign_load"] or 0.0) for r in runs),
        "steal_share_max": max((r["noise"]["steal_share"] or 0.0) for r in runs),
        "canary_ms_max": max(r["noise"]["canary_ms_max"] for r in runs),
        "energy_j_per_item": _energy_per_item(runs, scenario["batch_size"]),
    }


def _instability(run: dict[str, Any]) -> list[str]:
    reasons = []
    if run["noise"]["busy"]:
        noise = run["noise"]
        reasons.append(f"busy machine (foreign load {noise['foreign_load']} cores, steal {noise['steal_share']})")
    if not run["converged"]:
        reasons.append("median CI did not reach the target within benchmark.max_seconds")
    return reasons


def _energy_per_item(runs: list[dict[str, Any]], batch_size: int) -> float | str:
    if any(r["energy_j"] is None for r in runs):
        return "n/a"
    calls = sum(len(r["samples_ms"]) for r in runs)
    return round(sum(r["energy_j"] for r in runs) / (calls * batch_size), 6)


def _metrics(raw: list[dict[str, Any]], manifest: dict[str, Any], params: Params) -> dict[str, Any]:
    per_scenario = {scenario_key(s["batch_size"], s["seq_length"]): _scenario_metrics(s, params.seed, params.benchmark.max_process_spread)
                    for s in raw}
    headline = per_scenario[scenario_key(*params.headline)]
    first_run = raw[0]["runs"][0]
    return {
        "load_s": headline["load_s"],
        "peak_rss_mb": headline["peak_rss_mb"],
        "loaded_rss_delta_mb": round((first_run["rss_after_load_bytes"] - first_run["rss_before_load_bytes"]) / 2**20, 2),
        "size_mb": round(manifest["size_bytes"] / 2**20, 3),
        "runtime_settings": first_run["runtime_settings"],
        "process_settings": first_run["settings"],
        "percentile_method": PERCENTILE_METHOD,
        "stop_rule": {k: getattr(params.benchmark, k) for k in ("warmup_iterations", "min_iterations", "min_seconds",
                                                                  "max_seconds", "target_ci_half_width", "repeats")},
        "unstable": any(s["unstable"] for s in per_scenario.values()),
        "scenarios": per_scenario,
    }
