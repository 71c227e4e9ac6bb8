"""The ``select`` stage: one table of every variant against the baseline.

Speed-up is baseline p50 / variant p50 per scenario, with a bootstrap 95% CI from the raw samples;
memory reduction is 1 − variant peak RSS / baseline peak RSS (each measured in its own process, at
the headline scenario); size reduction likewise on disk. Each variant also gets its place on this
machine's roofline (``outputs/roofline.json``).

Example:
    >>> summary = select_variants(params, Layout(Path(".")))
    >>> summary["variants"]["ort-int8"]["speedup"]
"""

from __future__ import annotations

import csv
import io
from typing import Any

from edgekit.bench.roofline import encoder_flops, roofline_point
from edgekit.bench.stats import pooled_samples, ratio_ci
from edgekit.decide.decision import decide
from edgekit.fsutil import read_json, write_json, write_text
from edgekit.layout import Layout
from edgekit.params import Params

TABLE_COLUMNS = ("variant", "runtime", "precision", "status", "p50_ms", "p99_ms", "speedup", "speedup_ci_low", "peak_rss_mb",
                 "memory_reduction", "size_mb", "cosine_mean", "cosine_min", "spearman", "retention", "fairness_score",
                 "pareto", "verdict")


def _speed(bench: dict, raw: dict, base: dict, base_raw: dict, headline: str, seed: int) -> dict[str, Any]:
    low, high = ratio_ci(pooled_samples(base_raw)[headline], pooled_samples(raw)[headline], seed=seed)
    rss, base_rss = bench["scenarios"][headline]["peak_rss_mb_range"], base["scenarios"][headline]["peak_rss_mb_range"]
    return {
        "speedup_ci95": [round(low, 3), round(high, 3)],
        # the least and the most reduction the repeats allow (peak RSS varies a little between processes)
        "memory_reduction_range": [round(1 - rss[1] / base_rss[0], 4), round(1 - rss[0] / base_rss[1], 4)],
        "speedup_by_scenario": {k: round(base["scenarios"][k]["p50_ms"] / v["p50_ms"], 3)
                                for k, v in bench["scenarios"].items() if k in base["scenarios"]},
        "p50_ms_by_scenario": {k: v["p50_ms"] for k, v in bench["scenarios"].items()},
        "unstable": bench["unstable"],
    }


def _roofline(bench: dict, model_config: dict, peaks: dict, precision: str, headline: str) -> dict[str, Any]:
    batch_size, seq_length = (int(part[1:]) for part in headline.split("_"))
    flops = encoder_flops(model_config, batch_size, seq_length)
    seconds = bench["scenarios"][headline]["p50_ms"] / 1000
    # what the runtime computed in, where it says (OpenVINO runs fp32 and fp16 models in bf16 on CPUs with bf16)
    computed_in = (bench.get("runtime_settings") or {}).get("inference_precision")
    return roofline_point(flops, bench["size_mb"] * 2**20, seconds, peaks, precision, computed_in)


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
        "size_reduction": round(1 - bench["size_mb"] / base["size_mb"], 4),
        "cosine_mean": quality["cosine_mean"], "cosine_min": quality["cosine_min"],
        "spearman": quality["spearman"], "retention": quality["retention"],
        "fairness_score": (quality.get("fairness") or {}).get("score"),
        # every quality metric the evaluate stage wrote (language-model metrics included, when there are some)
        "quality": {k: v for k, v in quality.items() if k not in ("variant", "runtime", "precision", "status", "fairness", "files_sha256")},
        "fairness": quality.get("fairness"),
        "unstable_scenarios": sorted(k for k, v in bench["scenarios"].items() if v["unstable"]),
    })
    return row


def select_variants(params: Params, layout: Layout) -> dict[str, Any]:
    """Write metrics/summary.json and plots/variants.csv; return the summary."""
    headline = "b{}_s{}".format(*params.headline)
    base = read_json(layout.benchmark_metrics(params.baseline))
    if base["status"] != "ok":
        from edgekit.errors import StageInputError

        raise StageInputError(f"the baseline {params.baseline} has status {base['status']}: {base.get('error', base.get('reason'))}",
                              f"fix it and run `dvc repro benchmark@{params.baseline}`")
    base_raw = read_json(layout.benchmark_samples(params.baseline))
    peaks = read_json(layout.roofline)
    model_config = read_json(layout.source_model / "config.json")
    rows = {}
    for name in params.variants:
        bench = read_json(layout.benchmark_metrics(name))
        row = _row(name, bench, read_json(layout.evaluate_metrics(name)), base, headline)
        if row["status"] == "ok":
            row.update(_speed(bench, read_json(layout.benchmark_samples(name)), base, base_raw, headline, params.seed))
            row["roofline"] = _roofline(bench, model_config, peaks, row["precision"], headline)
            row["cpu_slowdown"] = _cpu_slowdown(bench, peaks, headline)
        rows[name] = row
    environment = read_json(layout.environment)
    summary = {"baseline": params.baseline, "headline_scenario": headline, "threads": params.threads,
               "host": host_record(environment), "roofline_peaks": peaks, "variants": rows}
    decide(params, layout, summary, environment)
    write_json(layout.summary, summary)
    write_text(layout.plots_dir / "variants.csv", _csv(rows.values()))
    return summary


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
