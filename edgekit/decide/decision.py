"""The decision the ``select`` stage writes: every gate of every stage for every variant, the Pareto
frontier, the recommended variant for the target stage, the diagnosis and the hardware recommendation.

Outputs: ``outputs/gates.json`` (every verdict with its evidence and the policy's digest) and
``metrics/decision.json`` (the short record ``dvc exp show`` displays); the same decision is added
to ``metrics/summary.json``.

Example:
    >>> decide(params, Layout(Path(".")), summary, environment)
    >>> summary["decision"]["recommended"]
    'ort-int8'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.bench.stats import process_samples
from edgekit.decide.diagnosis import diagnose_all
from edgekit.decide.gates import Evidence
from edgekit.decide.hardware import HardwareProfile, recommend_for_host
from edgekit.decide.pareto import MIN_SPAN, pareto_front, reference_set, weighted_pick, weighted_scores
from edgekit.decide.policy import Policy, evaluate_stage, load_policy
from edgekit.fsutil import read_json, write_json
from edgekit.layout import Layout
from edgekit.params import Params


def _samples(layout: Layout, name: str) -> dict[str, list[np.ndarray]]:
    """Raw latency samples per scenario, one array per process: the gates' intervals resample processes."""
    return process_samples(read_json(layout.benchmark_samples(name)))


def _relative(layout: Layout, path) -> str:
    return str(path.relative_to(layout.root))


def _evidence(params: Params, layout: Layout, summary: dict[str, Any], name: str, base_samples) -> Evidence:
    sources = {"benchmark": layout.benchmark_metrics(name), "samples": layout.benchmark_samples(name),
               "evaluate": layout.evaluate_metrics(name), "baseline_samples": layout.benchmark_samples(params.baseline),
               "baseline_evaluate": layout.evaluate_metrics(params.baseline)}
    return Evidence(name, summary["variants"][name], summary["variants"][params.baseline], _samples(layout, name),
                    base_samples, summary["headline_scenario"], {k: _relative(layout, v) for k, v in sources.items()},
                    params.seed)


def judge(params: Params, layout: Layout, policy: Policy, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant and stage: the verdict and every gate's value, bound, result and evidence."""
    rows = summary["variants"]
    base_samples = _samples(layout, params.baseline)
    verdicts = {}
    for name, row in rows.items():
        if row["status"] != "ok":
            reason = row.get("reason") or row.get("error") or row["status"]
            verdicts[name] = {stage: {"verdict": "not measured", "reason": reason, "gates": []} for stage in policy.stages}
            continue
        evidence = _evidence(params, layout, summary, name, base_samples)
        verdicts[name] = {stage: evaluate_stage(policy, stage, evidence) for stage in policy.stages}
    return verdicts


def _scoring(rows: dict[str, Any], passing: list[str]) -> dict[str, Any]:
    """How ``preference_score`` was computed, and over which variants, for the record."""
    return {"scale": "log of each objective, 1 = best and 0 = worst over the reference set (a range narrower than "
                     "min_span is not stretched to the full 0-1), weighted mean by the preferences",
            "reference": reference_set(rows, passing), "reference_is": "passing, not dominated" if passing else
            "no variant passes: every measured variant, not dominated",
            "min_span": {objective: round(span, 6) for objective, span in MIN_SPAN.items()}}


def _reason(name: str, row: dict[str, Any], stage: str, passing: list[str], preferences: dict[str, float]) -> str:
    weights = ", ".join(f"{k} {v:g}" for k, v in preferences.items())
    low, high = row["speedup_ci95"]
    return (f"{name} passes every blocking {stage} gate and has the best weighted score ({row['preference_score']}; "
            f"weights {weights}; objectives on a log scale over the passing variants) of the {len(passing)} that do: "
            f"{row['speedup']}× faster (95% CI {low}–{high}), "
            f"retention {row['retention']}, cosine {row['cosine_mean']}, peak RSS {row['peak_rss_mb']} MB, {row['size_mb']} MB")


def decide(params: Params, layout: Layout, summary: dict[str, Any], environment: dict[str, Any]) -> dict[str, Any]:
    """Add the decision to ``summary`` and write outputs/gates.json and metrics/decision.json."""
    policy = load_policy(layout.root / params.policy.file, params.policy.file)
    stage, preferences = params.policy.stage, params.policy.preferences
    if stage not in policy.stages:
        from edgekit.errors import ConfigError

        raise ConfigError("policy.stage", stage, f"a stage that {params.policy.file} has gates for: {', '.join(policy.stages)}")
    rows = summary["variants"]
    verdicts = judge(params, layout, policy, summary)
    passing = [n for n in rows if verdicts[n][stage]["verdict"] in ("pass", "pass with warnings")]
    front, scores = pareto_front(rows), weighted_scores(rows, passing, preferences)
    for name, row in rows.items():
        row["verdicts"] = {s: v["verdict"] for s, v in verdicts[name].items()}
        row["target_stage"] = stage
        if row["status"] == "ok":
            row["pareto"], row["preference_score"] = front[name], scores[name]
    recommended = weighted_pick(rows, passing, preferences)
    summary["policy"] = policy.record()
    summary["decision"] = {
        "target_stage": stage, "policy": policy.record(), "preferences": preferences, "passing": passing,
        "recommended": recommended, "scoring": _scoring(rows, passing),
        "reason": _reason(recommended, rows[recommended], stage, passing, preferences) if recommended
        else f"no variant passes the blocking gates of {stage}",
        "pareto_front": sorted(n for n, f in front.items() if f["on_front"]),
        "failed": {n: verdicts[n][stage].get("failed_blocking", []) for n in rows if n not in passing},
    }
    bench = {name: read_json(layout.benchmark_metrics(name)) for name, row in rows.items() if row["status"] == "ok"}
    summary["diagnosis"] = diagnose_all(summary, bench)
    summary["recommendation"] = recommend_for_host(HardwareProfile.from_fingerprint(environment), summary)
    _write(layout, policy, summary, verdicts)
    return summary["decision"]


def _write(layout: Layout, policy: Policy, summary: dict[str, Any], verdicts: dict[str, Any]) -> None:
    decision = summary["decision"]
    write_json(layout.gates, {
        # no wall-clock time: the reports and the gate depend on this file, and a timestamp would change it on
        # every run; when it was judged is the commit that pinned it in dvc.lock
        "policy": policy.record(), "target_stage": decision["target_stage"],
        "headline_scenario": summary["headline_scenario"], "baseline": summary["baseline"], "variants": verdicts,
    })
    recommended = decision["recommended"]
    write_json(layout.decision, {
        "target_stage": decision["target_stage"], "policy": f"{policy.name} {policy.version}",
        "policy_sha256": policy.sha256[:12], "passing": len(decision["passing"]), "recommended": recommended or "none",
        "recommended_speedup": summary["variants"][recommended]["speedup"] if recommended else 0,
        "verdict": {n: v for n, v in ((n, r["verdicts"][decision["target_stage"]]) for n, r in summary["variants"].items())},
        **_headline_numbers(summary["variants"]),
    })


# The few numbers per variant that `dvc exp show` and `dvc metrics diff` display (the full table is
# metrics/summary.json, a plain output: as a metric it made `dvc exp show` 4,300 columns wide).
HEADLINE_NUMBERS = ("p50_ms", "speedup", "model_memory_mb", "retention")


def _headline_numbers(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    numbers = {key: {n: r.get(key) for n, r in rows.items() if r["status"] == "ok"} for key in HEADLINE_NUMBERS}
    numbers["speedup_ci_low"] = {n: r["speedup_ci95"][0] for n, r in rows.items() if r["status"] == "ok"}
    return numbers
