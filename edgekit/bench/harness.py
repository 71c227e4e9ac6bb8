"""The benchmark machinery: every scenario of a variant, each process a fresh interpreter
(``edgekit.bench.worker``); the ``benchmark`` stage (``edgekit.pipeline.benchmark``) drives it.

The headline scenario runs in ``benchmark.headline_repeats`` processes (its speed-up CI needs them,
see ``edgekit.bench.stats``), every other scenario in ``repeats``. A process measured on a busy
machine (other processes used more than ``busy_foreign_load`` cores meanwhile, or the hypervisor
stole more than ``busy_steal_share``) is retried up to ``unstable_retries`` times and otherwise kept
and flagged -- never silently used. Each scenario's ``instability`` lists why it is flagged, one
entry per cause, with a ``code`` the gates and the diagnosis read and a ``text`` people read:

- ``busy``: processes measured on a busy machine (``processes``, ``foreign_load_max``, ``steal_share_max``);
- ``not_converged``: processes whose median CI did not reach the target in their max seconds;
- ``process_spread``: the processes' medians differ by ``value`` > ``limit`` (``max_process_spread``);
- ``short_of_samples``: processes with fewer than ``limit`` (``min_samples_per_process``) samples,
  ``value`` being the fewest; every gate that reads the scenario fails.

``p50_ms`` and its CI are the median of per-process medians and its hierarchical bootstrap CI; the
spread between the processes' medians is reported next to them. Memory: ``peak_rss_mb`` is the
whole timing process, ``model_memory_mb`` the model's own (see ``edgekit.bench.worker``).

Example:
    >>> runs = measure_scenario(scenario_request(params, manifest, folder, texts, 1, 32), params.benchmark, params.threads)
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.bench.stats import PERCENTILE_METHOD, bootstrap_record, scenario_key, summarize_processes
from edgekit.isolation import run_child
from edgekit.params import BenchmarkParams, Params

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
HARD_STOP_SHARE = 0.5  # of benchmark.timeout_seconds: sampling stops there even short of samples, so the run is kept


def scenario_request(params: Params, manifest: dict, folder: Path, texts: Path, batch_size: int, seq_length: int) -> dict[str, Any]:
    """What the worker needs to time one scenario (``headline``: it is the headline scenario)."""
    b = params.benchmark
    headline = (batch_size, seq_length) == params.headline
    return {
        "runtime": manifest["runtime"], "precision": manifest["precision"], "options": manifest["options"],
        "variant_dir": str(folder.resolve()), "threads": params.threads, "texts": str(texts),
        "batch_size": batch_size, "seq_length": seq_length, "headline": headline,
        "warmup_iterations": b.warmup_iterations, "min_iterations": b.min_iterations, "min_seconds": b.min_seconds,
        "max_seconds": b.max_seconds_at(headline), "min_samples_per_process": b.min_samples_per_process,
        "hard_stop_seconds": b.timeout_seconds * HARD_STOP_SHARE,
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
    """The scenario's processes (``headline_repeats`` or ``repeats``), retrying busy ones; stops at the first failure."""
    runs: list[dict[str, Any]] = []
    key = scenario_key(request["batch_size"], request["seq_length"])
    for _ in range(bench.repeats_at(request.get("headline", False))):
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


def _scenario_metrics(scenario: dict[str, Any], seed: int, bench: BenchmarkParams) -> dict[str, Any]:
    runs = scenario["runs"]
    medians = [statistics.median(r["samples_ms"]) for r in runs]
    spread = (max(medians) - min(medians)) / statistics.median(medians)
    instability = _instability(runs, medians, spread, bench)
    return {
        **summarize_processes([r["samples_ms"] for r in runs], scenario["batch_size"], scenario["seq_length"], seed=seed),
        "repeats": len(runs),
        "samples_per_process": [len(r["samples_ms"]) for r in runs],
        "process_p50_ms": [round(m, 4) for m in medians],
        "between_process_spread": round(spread, 4),
        "first_ms": round(statistics.median(r["first_ms"] for r in runs), 4),
        "load_s": round(statistics.median(r["load_s"] for r in runs), 4),
        **_memory(runs),
        "converged": all(r["converged"] for r in runs),
        "unstable": bool(instability),
        "instability": instability,
        "unstable_reasons": [entry["text"] for entry in instability],
        "foreign_load_max": max((r["noise"]["foreign_load"] or 0.0) for r in runs),
        "steal_share_max": max((r["noise"]["steal_share"] or 0.0) for r in runs),
        "canary_ms_max": max(r["noise"]["canary_ms_max"] for r in runs),
        "energy_j_per_item": _energy_per_item(runs, scenario["batch_size"]),
    }


def _mb_range(values: list[int]) -> list[float]:
    return [round(min(values) / 2**20, 2), round(max(values) / 2**20, 2)]


def _memory(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Whole-process peak RSS and the model's own memory, each the largest over the processes, with its range."""
    peaks, models = [r["peak_rss_bytes"] for r in runs], [r["model_memory_bytes"] for r in runs]
    return {"peak_rss_mb": _mb_range(peaks)[1], "peak_rss_mb_range": _mb_range(peaks),
            "model_memory_mb": _mb_range(models)[1], "model_memory_mb_range": _mb_range(models)}


def _processes(runs: list[dict[str, Any]], test) -> list[int]:
    return [index for index, run in enumerate(runs) if test(run)]


def _instability(runs: list[dict[str, Any]], medians: list[float], spread: float, bench: BenchmarkParams) -> list[dict[str, Any]]:
    """Why a scenario's measurement is flagged: structured entries (see the module docstring), in a fixed order."""
    count, entries = len(runs), []
    busy = _processes(runs, lambda r: r["noise"]["busy"])
    if busy:
        load = max(runs[i]["noise"]["foreign_load"] or 0.0 for i in busy)
        steal = max(runs[i]["noise"]["steal_share"] or 0.0 for i in busy)
        entries.append({"code": "busy", "processes": busy, "foreign_load_max": load, "steal_share_max": steal,
                        "text": f"busy machine (foreign load {load} cores, steal {steal}) in {len(busy)} of {count} processes"})
    slow = _processes(runs, lambda r: not r["converged"])
    if slow:
        entries.append({"code": "not_converged", "processes": slow,
                        "text": f"median CI did not reach the target within benchmark max seconds in {len(slow)} of {count} processes"})
    if spread > bench.max_process_spread:
        entries.append({"code": "process_spread", "value": round(spread, 4), "limit": bench.max_process_spread,
                        "text": f"repeats disagree: medians {min(medians):.3f}..{max(medians):.3f} ms, spread {spread:.1%} "
                                f"> benchmark.max_process_spread {bench.max_process_spread:.0%}"})
    short = _processes(runs, lambda r: len(r["samples_ms"]) < bench.min_samples_per_process)
    if short:
        fewest = min(len(runs[i]["samples_ms"]) for i in short)
        entries.append({"code": "short_of_samples", "processes": short, "value": fewest, "limit": bench.min_samples_per_process,
                        "text": f"{len(short)} of {count} processes have fewer samples than benchmark.min_samples_per_process "
                                f"({fewest} < {bench.min_samples_per_process}): cut short, so no gate may read this scenario"})
    return entries


def _energy_per_item(runs: list[dict[str, Any]], batch_size: int) -> float | str:
    if any(r["energy_j"] is None for r in runs):
        return "n/a"
    calls = sum(len(r["samples_ms"]) for r in runs)
    return round(sum(r["energy_j"] for r in runs) / (calls * batch_size), 6)


def variant_metrics(raw: list[dict[str, Any]], manifest: dict[str, Any], params: Params) -> dict[str, Any]:
    per_scenario = {scenario_key(s["batch_size"], s["seq_length"]): _scenario_metrics(s, params.seed, params.benchmark)
                    for s in raw}
    headline = per_scenario[scenario_key(*params.headline)]
    first_run = raw[0]["runs"][0]
    stop_rule = ("warmup_iterations", "min_iterations", "min_seconds", "max_seconds", "target_ci_half_width", "repeats",
                 "headline_repeats", "headline_max_seconds", "min_samples_per_process")
    return {
        "load_s": headline["load_s"],
        "peak_rss_mb": headline["peak_rss_mb"],
        "model_memory_mb": headline["model_memory_mb"],
        "model_memory_mb_range": headline["model_memory_mb_range"],
        "model_memory_method": first_run["model_memory_method"],
        "loaded_rss_delta_mb": round((first_run["rss_after_load_bytes"] - first_run["rss_before_load_bytes"]) / 2**20, 2),
        "size_mb": round(manifest["size_bytes"] / 2**20, 3),
        "runtime_settings": first_run["runtime_settings"],
        "process_settings": first_run["settings"],
        "percentile_method": PERCENTILE_METHOD,
        "bootstrap": bootstrap_record(params.seed),
        "stop_rule": {k: getattr(params.benchmark, k) for k in stop_rule},
        "unstable": any(s["unstable"] for s in per_scenario.values()),
        "scenarios": per_scenario,
    }
