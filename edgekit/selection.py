"""The ``select`` stage: one table of every variant against the baseline.

Speed-up is baseline p50 / variant p50 per scenario; memory reduction is 1 − variant peak RSS /
baseline peak RSS (each measured in its own process); size reduction likewise on disk.

Example:
    >>> summary = select_variants(params, Layout(Path(".")))
    >>> summary["variants"]["ort-int8"]["speedup"]
"""

from __future__ import annotations

import csv
import io
from typing import Any

from edgekit.fsutil import read_json, write_json, write_text
from edgekit.layout import Layout
from edgekit.params import Params

TABLE_COLUMNS = ("variant", "runtime", "precision", "status", "p50_ms", "p99_ms", "speedup", "peak_rss_mb",
                 "memory_reduction", "size_mb", "cosine_mean", "cosine_min", "spearman", "retention")


def _row(name: str, bench: dict, quality: dict, base: dict, headline: str) -> dict[str, Any]:
    row = {"variant": name, "runtime": bench.get("runtime"), "precision": bench.get("precision"),
           "status": bench["status"] if quality.get("status", "ok") == "ok" else quality["status"]}
    for key in ("reason", "install", "error"):
        if key in bench or key in quality:
            row[key] = bench.get(key, quality.get(key))
    if row["status"] != "ok":
        return row
    scenario = bench["scenarios"][headline]
    base_scenarios = base["scenarios"]
    row.update({
        "p50_ms": scenario["p50_ms"], "p99_ms": scenario["p99_ms"],
        "speedup": round(base_scenarios[headline]["p50_ms"] / scenario["p50_ms"], 3),
        "speedup_by_scenario": {k: round(base_scenarios[k]["p50_ms"] / v["p50_ms"], 3)
                                for k, v in bench["scenarios"].items() if k in base_scenarios},
        "p50_ms_by_scenario": {k: v["p50_ms"] for k, v in bench["scenarios"].items()},
        "peak_rss_mb": bench["peak_rss_mb"], "size_mb": bench["size_mb"], "load_s": bench["load_s"],
        "memory_reduction": round(1 - bench["peak_rss_mb"] / base["peak_rss_mb"], 4),
        "size_reduction": round(1 - bench["size_mb"] / base["size_mb"], 4),
        "cosine_mean": quality["cosine_mean"], "cosine_min": quality["cosine_min"],
        "spearman": quality["spearman"], "retention": quality["retention"],
    })
    return row


def select_variants(params: Params, layout: Layout) -> dict[str, Any]:
    """Write metrics/summary.json and plots/variants.csv; return the summary."""
    headline = f"b{params.benchmark.batch_sizes[0]}_s{params.benchmark.seq_lengths[0]}"
    base = read_json(layout.benchmark_metrics(params.baseline))
    if base["status"] != "ok":
        from edgekit.errors import StageInputError

        raise StageInputError(f"the baseline {params.baseline} has status {base['status']}: {base.get('error', base.get('reason'))}",
                              f"fix it and run `dvc repro benchmark@{params.baseline}`")
    rows = {name: _row(name, read_json(layout.benchmark_metrics(name)), read_json(layout.evaluate_metrics(name)), base, headline)
            for name in params.variants}
    summary = {"baseline": params.baseline, "headline_scenario": headline, "threads": params.threads, "variants": rows}
    write_json(layout.summary, summary)
    write_text(layout.plots_dir / "variants.csv", _csv(rows.values()))
    return summary


def _csv(rows) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if row["status"] == "ok":
            writer.writerow(row)
    return buffer.getvalue()
