"""The ``select`` stage: one table of every variant against the baseline.

Speed-up is baseline p50 / variant p50 per scenario, p50 being the median of per-process medians;
its 95% CI at the headline scenario comes from the hierarchical bootstrap over the raw samples of
both sides' processes (``edgekit.bench.stats``), so the baseline's own process-to-process spread
widens it. Memory reduction is 1 − variant ÷ baseline, for the model's own memory (peak of load and
run over the RSS with the runtime imported) and for the whole timing process's peak RSS, each with
the least and the most reduction the processes allow; size reduction likewise on disk. Each variant
also gets its place on this machine's roofline (``outputs/roofline.json``), from the weight bytes one
call reads and the precision its runtime computes in (``edgekit.bench.roofline``).

The decision itself (gates, Pareto front, recommendation) is ``edgekit.decide``, which touches no file:
this stage reads the evidence for it and writes outputs/gates.json and metrics/decision.json.

Example:
    >>> summary = run(params, Layout(Path(".")))
    >>> summary["variants"]["ort-int8"]["speedup"]
"""

from __future__ import annotations

import csv
import io
from typing import Any

from edgekit.bench.roofline import bytes_per_weight, compute_precision, roofline_point
from edgekit.bench.stats import bootstrap_record, process_samples, ratio_ci
from edgekit.decide.decision import Inputs, decide, decision_record, gates_record
from edgekit.fsutil import read_json, write_json, write_text
from edgekit.layout import Layout
from edgekit.params import Params
from edgekit.policyfile import load_policy
from edgekit.tasks.base import get_task

TABLE_COLUMNS = ("variant", "runtime", "precision", "status", "p50_ms", "p99_ms", "speedup", "speedup_ci_low", "peak_rss_mb",
                 "memory_reduction", "model_memory_mb", "model_memory_reduction", "size_mb", "cosine_mean", "cosine_min",
                 "spearman", "retention", "fairness_score", "pareto", "verdict")


def _reduction(own: float, base: float) -> float | None:
    """``1 − own ÷ base``; None for a baseline of 0 (nothing to reduce, so no gate may pass on it)."""
    return round(1 - own / base, 4) if base > 0 else None


def _reduction_range(own: list[float], base: list[float]) -> list[float | None]:
    """The least and the most reduction that the processes' [min, max] ranges allow."""
    return [_reduction(own[1], base[0]), _reduction(own[0], base[1])]


def _speed(bench: dict, samples: dict, base: dict, base_samples: dict, headline: str, seed: int) -> dict[str, Any]:
    low, high = ratio_ci(base_samples[headline], samples[headline], seed=seed)
    own, base_scenario = bench["scenarios"][headline], base["scenarios"][headline]
    return {
        "speedup_ci95": [round(low, 3), round(high, 3)],
        "memory_reduction_range": _reduction_range(own["peak_rss_mb_range"], base_scenario["peak_rss_mb_range"]),
        "model_memory_reduction_range": _reduction_range(own["model_memory_mb_range"], base_scenario["model_memory_mb_range"]),
        "speedup_by_scenario": {k: round(base["scenarios"][k]["p50_ms"] / v["p50_ms"], 3)
                                for k, v in bench["scenarios"].items() if k in base["scenarios"]},
        "p50_ms_by_scenario": {k: v["p50_ms"] for k, v in bench["scenarios"].items()},
        "headline_processes": {"variant": own["repeats"], "baseline": base_scenario["repeats"]},
        "unstable": bench["unstable"],
    }


def _roofline(bench: dict, model_config: dict, peaks: dict, runtime: str, precision: str, headline: str) -> dict[str, Any]:
    seconds = bench["scenarios"][headline]["p50_ms"] / 1000
    # what the runtime says it ran (OpenVINO runs fp32 and fp16 models in bf16 on CPUs with bf16)
    settings = bench.get("runtime_settings") or {}
    width, width_source = bytes_per_weight(runtime, precision, settings)
    cost = get_task("embedding").roofline(headline, {"config": model_config, "bytes_per_weight": width})
    point = roofline_point(cost["flops"], cost["bytes"], seconds, peaks, compute_precision(runtime, precision, settings))
    return {**point, "bytes_per_weight": round(width, 4), "bytes_per_weight_source": width_source}


def _cpu_slowdown(bench: dict, peaks: dict, headline: str) -> float | None:
    """The headline's slowest CPU canary over the calibrated best; None where either is missing."""
    canary, best = bench["scenarios"][headline].get("canary_ms_max"), peaks.get("cpu_canary_ms")
    return round(canary / best, 3) if canary and best else None


def _row(name: str, bench: dict, quality: dict, base: dict, headline: str) -> dict[str, Any]:
    row = {"variant": name, "runtime": bench.get("runtime"), "precision": bench.get("precision"),
           "status": bench["status"] if quality.get("status", "ok") == "ok" else quality["status"]}
    for key in ("reason", "install", "error", "files_sha256"):
        if key in bench or key in quality:
            row[key] = bench.get(key, quality.get(key))
    if row["status"] != "ok":
        return row
    scenario = bench["scenarios"][headline]
    base_scenarios = base["scenarios"]
    row.update({
        "p50_ms": scenario["p50_ms"], "p99_ms": scenario["p99_ms"],
        "speedup": round(base_scenarios[headline]["p50_ms"] / scenario["p50_ms"], 3),
        "peak_rss_mb": bench["peak_rss_mb"], "size_mb": bench["size_mb"], "load_s": bench["load_s"],
        "memory_reduction": round(1 - bench["peak_rss_mb"] / base["peak_rss_mb"], 4),
        "model_memory_mb": bench["model_memory_mb"], "model_memory_mb_range": bench["model_memory_mb_range"],
        "model_memory_reduction": _reduction(bench["model_memory_mb"], base["model_memory_mb"]),
        "size_reduction": round(1 - bench["size_mb"] / base["size_mb"], 4),
        "cosine_mean": quality["cosine_mean"], "cosine_min": quality["cosine_min"],
        "spearman": quality["spearman"], "retention": quality["retention"],
        "fairness_score": (quality.get("fairness") or {}).get("score"),
        # every quality metric the evaluate stage wrote (language-model metrics included, when there are some)
        "quality": {k: v for k, v in quality.items() if k not in ("variant", "runtime", "precision", "status", "fairness", "files_sha256")},
        "fairness": quality.get("fairness"),
        "unstable_scenarios": sorted(k for k, v in bench["scenarios"].items() if v["unstable"]),
        # the structured reasons per flagged scenario: the gates read their codes
        "instability": {k: v["instability"] for k, v in bench["scenarios"].items() if v["unstable"]},
    })
    return row


def run(params: Params, layout: Layout) -> dict[str, Any]:
    """Write metrics/summary.json, plots/variants.csv, outputs/gates.json and metrics/decision.json; return the summary."""
    headline = "b{}_s{}".format(*params.headline)
    base = read_json(layout.benchmark_metrics(params.baseline))
    if base["status"] != "ok":
        from edgekit.errors import StageInputError

        raise StageInputError(f"the baseline {params.baseline} has status {base['status']}: {base.get('error', base.get('reason'))}",
                              f"fix it and run `dvc repro benchmark@{params.baseline}`")
    # raw latency samples per scenario, one array per process: the CIs resample processes, then calls
    samples = {params.baseline: process_samples(read_json(layout.benchmark_samples(params.baseline)))}
    peaks = read_json(layout.roofline)
    model_config = read_json(layout.source_model / "config.json")
    rows, benches = {}, {}
    for name in params.variants:
        bench = read_json(layout.benchmark_metrics(name))
        row = _row(name, bench, read_json(layout.evaluate_metrics(name)), base, headline)
        if row["status"] == "ok":
            benches[name] = bench
            samples[name] = process_samples(read_json(layout.benchmark_samples(name)))
            row.update(_speed(bench, samples[name], base, samples[params.baseline], headline, params.seed))
            row["roofline"] = _roofline(bench, model_config, peaks, row["runtime"], row["precision"], headline)
            row["cpu_slowdown"] = _cpu_slowdown(bench, peaks, headline)
        rows[name] = row
    environment = read_json(layout.environment)
    summary = {"baseline": params.baseline, "headline_scenario": headline, "threads": params.threads,
               "host": host_record(environment), "roofline_peaks": peaks, "bootstrap": bootstrap_record(params.seed),
               "variants": rows}
    verdicts = decide(summary, load_policy(layout.root / params.policy.file, params.policy.file),
                      _decision_inputs(params, layout, benches, samples), environment)
    write_json(layout.gates, gates_record(summary, verdicts))
    write_json(layout.decision, decision_record(summary))
    write_json(layout.summary, summary)
    write_text(layout.plots_dir / "variants.csv", _csv(rows.values()))
    return summary


def _decision_inputs(params: Params, layout: Layout, benches: dict[str, Any], samples: dict[str, Any]) -> Inputs:
    """What the decision reads besides the table: every measured variant's benchmark metrics, samples and
    evidence files."""

    def relative(path) -> str:
        return str(path.relative_to(layout.root))

    def sources(name: str) -> dict[str, str]:
        files = {"benchmark": layout.benchmark_metrics(name), "samples": layout.benchmark_samples(name),
                 "evaluate": layout.evaluate_metrics(name), "baseline_samples": layout.benchmark_samples(params.baseline),
                 "baseline_evaluate": layout.evaluate_metrics(params.baseline)}
        return {k: relative(v) for k, v in files.items()}

    return Inputs(stage=params.policy.stage, preferences=params.policy.preferences, samples=samples,
                  sources={n: sources(n) for n in benches}, bench=benches, seed=params.seed)


def host_record(environment: dict[str, Any]) -> dict[str, Any]:
    cpu = environment["cpu"]
    return {"vendor": cpu["vendor"], "cpu_model": cpu["model"], "architecture": cpu["architecture"]}


def _csv(rows) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if row["status"] == "ok":
            writer.writerow({**row, "speedup_ci_low": row["speedup_ci95"][0], "pareto": int(row["pareto"]["on_front"]),
                             "verdict": row["verdicts"][row["target_stage"]]})
    return buffer.getvalue()
