"""The decision: every gate of every stage for every variant, the Pareto frontier, the recommended
variant for the target stage, the diagnosis and the hardware recommendation.

Pure: it takes the select stage's table, the raw latency samples, the policy and the host's
fingerprint, and returns verdicts; ``edgekit.pipeline.select`` reads the files and writes
``outputs/gates.json`` and ``metrics/decision.json`` from what it returns.

Example:
    >>> verdicts = decide(summary, policy, Inputs("production", preferences, samples, sources, bench, seed), environment)
    >>> summary["decision"]["recommended"]
    'ort-int8'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.decide.diagnosis import diagnose_all
from edgekit.decide.gates import Evidence
from edgekit.decide.hardware import HardwareProfile, recommend_for_host
from edgekit.decide.pareto import MIN_SPAN, pareto_front, reference_set, weighted_pick, weighted_scores
from edgekit.decide.policy import Policy, evaluate_stage, require_stage


@dataclass(frozen=True)
class Inputs:
    """What the decision reads besides the table and the policy.

    Attributes:
        stage: the target stage (params' ``policy.stage``), one the policy has gates for.
        preferences: objective weights of the recommendation.
        samples: per variant (baseline included), per scenario, one latency array per process.
        sources: per variant, the evidence files a gate's result points to (project-relative paths).
        bench: per measured variant, its benchmark metrics (the diagnosis reads every scenario).
        seed: of every bootstrap a gate runs.
    """

    stage: str
    preferences: dict[str, float]
    samples: dict[str, dict[str, list[np.ndarray]]]
    sources: dict[str, dict[str, str]]
    bench: dict[str, dict[str, Any]]
    seed: int


def judge(summary: dict[str, Any], policy: Policy, inputs: Inputs) -> dict[str, dict[str, Any]]:
    """Per variant and stage: the verdict and every gate's value, bound, result and evidence."""
    rows, baseline = summary["variants"], summary["baseline"]
    verdicts = {}
    for name, row in rows.items():
        if row["status"] != "ok":
            reason = row.get("reason") or row.get("error") or row["status"]
            verdicts[name] = {stage: {"verdict": "not measured", "reason": reason, "gates": []} for stage in policy.stages}
            continue
        evidence = Evidence(name, row, rows[baseline], inputs.samples[name], inputs.samples[baseline],
                            summary["headline_scenario"], inputs.sources[name], inputs.seed)
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


def decide(summary: dict[str, Any], policy: Policy, inputs: Inputs, environment: dict[str, Any]) -> dict[str, Any]:
    """Judge every variant; add the verdicts, Pareto front, scores, decision, diagnosis and hardware
    recommendation to ``summary``; return the verdicts (every gate of every stage, for outputs/gates.json).

    Raises:
        ConfigError: the policy has no gates for ``inputs.stage``.
    """
    stage, preferences = inputs.stage, inputs.preferences
    require_stage(policy, stage)
    rows = summary["variants"]
    verdicts = judge(summary, policy, inputs)
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
    summary["diagnosis"] = diagnose_all(summary, inputs.bench)
    summary["recommendation"] = recommend_for_host(HardwareProfile.from_fingerprint(environment), summary)
    return verdicts


def gates_record(summary: dict[str, Any], verdicts: dict[str, Any]) -> dict[str, Any]:
    """outputs/gates.json: every verdict with its evidence, under the policy's name, version and digest.

    No wall-clock time: the reports and the gate depend on this record, and a timestamp would change it on
    every run; when it was judged is the commit that pinned it in dvc.lock.
    """
    decision = summary["decision"]
    return {"policy": decision["policy"], "target_stage": decision["target_stage"],
            "headline_scenario": summary["headline_scenario"], "baseline": summary["baseline"], "variants": verdicts}


def decision_record(summary: dict[str, Any]) -> dict[str, Any]:
    """metrics/decision.json: the short record ``dvc exp show`` displays."""
    decision, policy = summary["decision"], summary["decision"]["policy"]
    recommended, stage = decision["recommended"], decision["target_stage"]
    return {
        "target_stage": stage, "policy": f"{policy['name']} {policy['version']}",
        "policy_sha256": policy["sha256"][:12], "passing": len(decision["passing"]), "recommended": recommended or "none",
        "recommended_speedup": summary["variants"][recommended]["speedup"] if recommended else 0,
        "verdict": {n: r["verdicts"][stage] for n, r in summary["variants"].items()},
        **_headline_numbers(summary["variants"]),
    }


# The few numbers per variant that `dvc exp show` and `dvc metrics diff` display (the full table is
# metrics/summary.json, a plain output: as a metric it made `dvc exp show` 4,300 columns wide).
HEADLINE_NUMBERS = ("p50_ms", "speedup", "model_memory_mb", "retention")


def _headline_numbers(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    numbers = {key: {n: r.get(key) for n, r in rows.items() if r["status"] == "ok"} for key in HEADLINE_NUMBERS}
    numbers["speedup_ci_low"] = {n: r["speedup_ci95"][0] for n, r in rows.items() if r["status"] == "ok"}
    return numbers
