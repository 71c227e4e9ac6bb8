"""Policy files, gates, verdicts and the Pareto frontier, on made-up evidence with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import REPO
from edgekit.decide.gates import Evidence, gates
from edgekit.decide.pareto import dominates, pareto_front, weighted_pick, weighted_scores
from edgekit.decide.policy import describe_failure, evaluate_stage, parse_policy
from edgekit.errors import ConfigError, UnknownNameError
from edgekit.policyfile import load_policy

rng = np.random.default_rng(0)


def row(**overrides) -> dict:
    base = {"status": "ok", "p50_ms": 2.5, "retention": 0.99, "model_memory_mb": 110.0, "size_mb": 22.0, "spearman": 73.0,
            "memory_reduction_range": [0.77, 0.78], "size_reduction": 0.74, "quality": {"cosine_mean": 0.995, "cosine_min": 0.98,
            "cosine_p05": 0.99, "sentences": 840}, "fairness": {"score": 0.88, "within_tolerance": 440, "pairs": 500,
            "tolerance": 0.05, "check": "counterfactual-similarity"}, "unstable_scenarios": []}
    return {**base, **overrides}


def evidence(variant_ms: float = 2.5, base_ms: float = 12.5, **overrides) -> Evidence:
    samples = {"b1_s32": [rng.normal(variant_ms, variant_ms * 0.02, 200) for _ in range(6)]}  # one array per process
    base_samples = {"b1_s32": [rng.normal(base_ms, base_ms * 0.02, 200) for _ in range(6)]}
    sources = {k: f"{k}.json" for k in ("benchmark", "samples", "evaluate", "baseline_samples", "baseline_evaluate")}
    return Evidence("v", row(**overrides), row(spearman=73.5), samples, base_samples, "b1_s32", sources)


def policy(**stage_gates):
    return parse_policy({"name": "t", "version": 1, "stages": {"production": stage_gates}}, "t.yaml", "abc")


def test_the_shipped_policy_validates_and_uses_every_builtin_gate():
    shipped = load_policy(REPO / "policy.yaml")
    used = {rule.gate for rules in shipped.stages.values() for rule in rules}
    assert used == set(gates()) and set(shipped.stages) == {"staging", "production"}
    assert len(shipped.sha256) == 64


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ({"name": "t", "version": 1, "stages": {"producton": {}}}, ConfigError, r"stages\.producton.*did you mean 'production'"),
        ({"name": "t", "version": 1, "stages": {"production": {"speed_up": {"min": 2}}}}, UnknownNameError,
         r"stages\.production\.speed_up = 'speed_up'.*one of: accuracy_retention"),
        ({"name": "t", "version": 1, "stages": {"production": {"speedup": {"max": 2}}}}, ConfigError,
         r"stages\.production\.speedup\.max = 2.*`min:` instead: speedup is a lower bound"),
        ({"name": "t", "version": 1, "stages": {"production": {"speedup": {"min": "2x"}}}}, ConfigError,
         r"stages\.production\.speedup\.min = '2x'.*a number"),
        ({"name": "t", "version": 1, "stages": {"production": {"speedup": {"min": 2, "action": "stop"}}}}, ConfigError,
         r"stages\.production\.speedup\.action = 'stop'.*block, warn"),
        ({"name": "t", "version": 1, "stages": {"production": {"speedup": {"min": 2, "confidence": 1.5}}}}, ConfigError,
         r"confidence must be a number in \[0\.5, 1\)"),
        ({"name": "t", "version": 1, "stages": {"production": {"memory_reduction": {"min": 0.5, "measure": "rss"}}}},
         ConfigError, r"measure must be one of: model_memory, peak_rss, size, both"),
        ({"name": "t", "stages": {"production": {}}}, ConfigError, r"version = None.*recorded with every verdict"),
        ({"name": "t", "version": 1, "stages": {}}, ConfigError, r"stages = \{\}.*at least one of"),
    ],
)
def test_a_bad_policy_names_the_file_field_value_and_fix(raw, error, message):
    with pytest.raises(error, match=message) as caught:
        parse_policy(raw, "policy.yaml")
    assert str(caught.value).startswith("policy.yaml:")


def test_an_unreadable_policy_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml.*existing policy file"):
        load_policy(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("stages: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*valid YAML"):
        load_policy(tmp_path / "bad.yaml")


def test_speedup_is_judged_at_the_lower_end_of_its_confidence_interval():
    verdict = evaluate_stage(policy(speedup={"min": 4.9, "confidence": 0.95}), "production", evidence(2.5, 12.5))
    gate = verdict["gates"][0]
    assert 4.8 < gate["value"] < 5.0 and "CI" in gate["detail"]  # the point estimate is 5.0
    assert verdict["verdict"] == ("pass" if gate["value"] >= 4.9 else "fail")
    assert evaluate_stage(policy(speedup={"min": 4.0}), "production", evidence(2.5, 12.5))["verdict"] == "pass"
    assert evaluate_stage(policy(speedup={"min": 6.0}), "production", evidence(2.5, 12.5))["failed_blocking"] == ["speedup"]


def test_warn_gates_do_not_block_and_missing_evidence_fails():
    rules = policy(size_mb={"max": 10, "action": "warn"}, latency_p99_ms={"max": 100, "scenario": "b8_s128"})
    verdict = evaluate_stage(rules, "production", evidence())
    size, latency = verdict["gates"]
    assert size["result"] == "fail" and size["action"] == "warn" and verdict["warnings"] == ["size_mb"]
    assert latency["value"] is None and latency["result"] == "fail" and "b8_s128 was not measured" in latency["detail"]
    assert verdict["verdict"] == "fail" and describe_failure(latency).startswith("latency_p99_ms missing")


def test_memory_reduction_measures_and_fairness_retention():
    ev = evidence(model_memory_reduction_range=[0.55, 0.57], memory_reduction_range=[0.6, 0.62], size_reduction=0.3)
    values = {m: evaluate_stage(policy(memory_reduction={"min": 0.5, "measure": m}), "production", ev)["gates"][0]["value"]
              for m in ("model_memory", "peak_rss", "size", "both")}
    assert values == {"model_memory": 0.55, "peak_rss": 0.6, "size": 0.3, "both": 0.3}
    fair = evaluate_stage(policy(fairness={"min": 0.95, "measure": "retention"}), "production",
                          evidence(fairness={"score": 0.836, "within_tolerance": 418, "pairs": 500, "tolerance": 0.05,
                                             "check": "counterfactual-similarity"}))
    assert fair["gates"][0]["value"] == 0.95 and fair["verdict"] == "pass"  # 0.836 / 0.88


def test_pareto_dominance_keeps_ties_and_drops_the_dominated():
    rows = {"fast": row(p50_ms=2.0), "twin": row(p50_ms=2.0), "slow": row(p50_ms=4.0),
            "accurate": row(p50_ms=4.0, retention=1.0), "failed": {"status": "failed"}}
    front = pareto_front(rows)
    assert set(front) == {"fast", "twin", "slow", "accurate"}
    assert front["fast"]["on_front"] and front["twin"]["on_front"]  # equal everywhere: neither dominates
    assert front["slow"]["dominated_by"] == ["accurate", "fast", "twin"] and front["accurate"]["on_front"]
    assert not dominates(rows["fast"], rows["twin"])


def test_the_weighted_pick_follows_the_preferences():
    rows = {"fast": row(p50_ms=2.0, retention=0.95), "accurate": row(p50_ms=4.0, retention=1.0)}
    assert weighted_pick(rows, ["fast", "accurate"], {"latency": 1.0, "accuracy": 0.1}) == "fast"
    assert weighted_pick(rows, ["fast", "accurate"], {"latency": 0.1, "accuracy": 1.0}) == "accurate"
    assert weighted_pick(rows, ["accurate"], {"latency": 1.0}) == "accurate"
    assert weighted_pick(rows, [], {"latency": 1.0}) is None
    assert weighted_scores(rows, ["fast", "accurate"], {"latency": 1.0}) == {"fast": 1.0, "accurate": 0.0}


def test_bad_policy_params_name_the_field():
    from conftest import small_params
    from edgekit.params import parse_params

    raw = small_params()
    raw["policy"] = {"stage": "prod"}
    with pytest.raises(UnknownNameError, match=r"policy\.stage = 'prod'.*production, staging"):
        parse_params(raw)
    raw["policy"] = {"preferences": {"latency": 0, "speed": 1}}
    with pytest.raises(ConfigError, match=r"policy\.preferences\.speed.*accuracy, latency, memory, size"):
        parse_params(raw)
    raw["policy"] = {"preferences": {"latency": 0}}
    with pytest.raises(ConfigError, match=r"policy\.preferences.*at least one positive weight"):
        parse_params(raw)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert parse_params(raw).policy.stage == "production"


def test_quality_gates_can_read_the_lower_end_of_their_confidence_interval():
    """A retention of 0.9478 against a 0.95 bar is a knife-edge; its CI says how sharp (issue 10)."""
    fairness = {"score": 0.834, "within_tolerance": 417, "pairs": 500, "tolerance": 0.05, "check": "counterfactual-similarity",
                "retention": 0.9478, "retention_ci95": [0.9212, 0.9753], "score_ci95": [0.80, 0.87]}
    ev = evidence(retention=0.9939, quality={"retention_ci95": [0.9465, 1.0001]}, fairness=fairness)
    point = evaluate_stage(policy(accuracy_retention={"min": 0.95}, fairness={"min": 0.92, "measure": "retention"}),
                           "production", ev)["gates"]
    low = evaluate_stage(policy(accuracy_retention={"min": 0.95, "estimate": "ci_low"},
                                fairness={"min": 0.92, "measure": "retention", "estimate": "ci_low"}), "production", ev)["gates"]
    assert [g["value"] for g in point] == [0.9939, 0.9478] and [g["result"] for g in point] == ["pass", "pass"]
    assert [g["value"] for g in low] == [0.9465, 0.9212] and [g["result"] for g in low] == ["fail", "pass"]
    assert "lower end of the 95% CI 0.9465–1.0001" in low[0]["detail"]
    no_ci = evaluate_stage(policy(fairness={"min": 0.8, "estimate": "ci_low"}), "production", evidence())["gates"][0]
    assert no_ci["value"] is None and no_ci["result"] == "fail"  # no interval recorded: no evidence, no pass
    with pytest.raises(ConfigError, match="estimate must be one of: point, ci_low"):
        policy(accuracy_retention={"min": 0.95, "estimate": "p05"})
