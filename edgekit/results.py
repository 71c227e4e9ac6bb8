"""Load a finished pipeline's results for notebooks, widgets and reports.

Example:
    >>> results = load_results(Path("."))
    >>> results.table()[["variant", "p50_ms", "speedup"]]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.fsutil import read_json
from edgekit.layout import Layout


@dataclass(frozen=True)
class Results:
    summary: dict[str, Any]
    environment: dict[str, Any]
    baseline: dict[str, Any]
    samples: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    gates: dict[str, Any]

    @property
    def measured(self) -> list[str]:
        """Variants that were measured (status ok), baseline first."""
        names = [n for n, row in self.summary["variants"].items() if row["status"] == "ok"]
        return sorted(names, key=lambda n: n != self.summary["baseline"])

    def table(self):
        """One row per variant, as a pandas DataFrame: speed-up with its hierarchical 95% CI and the processes on
        each side, model memory and peak RSS, retention with its 95% CI on the test pairs, roofline efficiency."""
        import pandas as pd

        variants = self.summary["variants"]
        order = self.measured + [name for name in variants if name not in self.measured]
        rows = [_table_row(variants[name]) for name in order]
        return pd.DataFrame(rows, columns=TABLE_COLUMNS).dropna(axis=1, how="all")

    def latency_samples(self, variant: str, scenario: str) -> list[float]:
        """Raw latency samples (ms) of one variant in one scenario (``b1_s32``), all repeats pooled."""
        from edgekit.bench.stats import pooled_samples

        found = pooled_samples(self.samples[variant]).get(scenario)
        return [] if found is None else found.tolist()

    def benchmark_metrics(self, variant: str) -> dict[str, Any]:
        """The benchmark stage's metrics of one variant."""
        return self.metrics[variant]

    @property
    def decision(self) -> dict[str, Any]:
        return self.summary["decision"]

    def verdict_table(self):
        """Each variant's verdict per stage, and the blocking gates it failed in the target stage."""
        import pandas as pd

        stage = self.decision["target_stage"]
        rows = []
        for name, stages in self.gates["variants"].items():
            row = self.summary["variants"][name]
            rows.append({"variant": name, **{s: v["verdict"] for s, v in stages.items()},
                         "Pareto": "yes" if row.get("pareto", {}).get("on_front") else "",
                         "score": row.get("preference_score"),
                         f"failed in {stage}": ", ".join(stages[stage].get("failed_blocking", [])) or stages[stage].get("reason", "")})
        return pd.DataFrame(rows)

    def gate_table(self, variant: str, stage: str | None = None):
        """Every gate of one stage for one variant: value, bound, result, action and the evidence files."""
        import pandas as pd

        verdict = self.gates["variants"][variant][stage or self.decision["target_stage"]]
        rows = [{"gate": g["gate"], "value": g["value"], "bound": f"{g['op']} {g['threshold']:g}", "result": g["result"],
                 "action": g["action"], "detail": g["detail"], "evidence": ", ".join(g["evidence"])} for g in verdict["gates"]]
        return pd.DataFrame(rows, columns=["gate", "value", "bound", "result", "action", "detail", "evidence"])

    def scenarios_of(self, variant: str) -> list[str]:
        """The scenario keys one variant was timed at."""
        return [f"b{s['batch_size']}_s{s['seq_length']}" for s in self.samples[variant].get("scenarios", [])]


def load_results(root: Path) -> Results:
    layout = Layout(Path(root))
    summary = read_json(layout.summary)
    samples = {name: read_json(layout.benchmark_samples(name)) for name in summary["variants"]}
    metrics = {name: read_json(layout.benchmark_metrics(name)) for name in summary["variants"]}
    return Results(summary, read_json(layout.environment), read_json(layout.baseline_metrics), samples, metrics,
                   read_json(layout.gates))


TABLE_COLUMNS = ["variant", "runtime", "precision", "status", "p50_ms", "p99_ms", "speedup", "speedup_ci95", "processes",
                 "model_memory_mb", "model_memory_reduction", "peak_rss_mb", "size_mb", "retention", "retention_ci95",
                 "cosine_mean", "cosine_min", "fairness_score", "roofline_efficiency", "computed_in", "reason", "error"]


def _interval(values) -> str | None:
    return f"{values[0]}–{values[1]}" if values else None


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    """The report table's columns of one summary row (a variant not measured keeps its reason or error)."""
    processes = row.get("headline_processes")
    roofline = row.get("roofline") or {}
    return {**{c: row.get(c) for c in TABLE_COLUMNS},
            "speedup_ci95": _interval(row.get("speedup_ci95")),
            "processes": f"{processes['variant']} vs {processes['baseline']}" if processes else None,
            "retention_ci95": _interval((row.get("quality") or {}).get("retention_ci95")),
            "roofline_efficiency": roofline.get("efficiency"), "computed_in": roofline.get("computed_in")}
