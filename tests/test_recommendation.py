"""The weighted recommendation: objectives on a log scale over the passing, non-dominated variants, so
neither the baseline, a slow failing variant nor a dominated one can sway the pick, and a noise-sized
difference is not stretched to an objective's full weight."""

from __future__ import annotations

import math
import random

import pytest

from edgekit.decide.pareto import MIN_SPAN, dominates, reference_set, weighted_pick, weighted_scores

DEFAULT = {"latency": 0.4, "accuracy": 0.3, "memory": 0.2, "size": 0.1}


def row(p50_ms: float, retention: float, model_memory_mb: float = 120.0, size_mb: float = 22.0, status: str = "ok") -> dict:
    return {"status": status, "p50_ms": p50_ms, "retention": retention, "model_memory_mb": model_memory_mb, "size_mb": size_mb}


def issue_rows() -> dict[str, dict]:
    """The shape of issue 10: two candidates, the baseline and an MLX-on-CPU variant that fail the stage."""
    return {
        "fast": row(1.0, 0.990, 118.0, 22.5),
        "accurate": row(2.35, 0.993, 115.0, 22.0),  # 0.003 more retention, a little less memory and size
        "pytorch-fp32": row(9.5, 1.0, 400.0, 87.0),
        "mlx-int8": row(300.0, 0.99, 900.0, 25.0),
    }


def test_a_2_35x_latency_advantage_beats_a_0_003_retention_difference():
    rows = issue_rows()
    assert weighted_pick(rows, ["fast", "accurate"], DEFAULT) == "fast"
    scores = weighted_scores(rows, ["fast", "accurate"], DEFAULT)
    assert scores["fast"] > scores["accurate"] + 0.2


def test_the_old_min_max_over_every_variant_picked_the_slow_one():
    """Why the scale changed: the previous rule (linear 0-1 over all measured rows) gets this case wrong."""
    rows = issue_rows()

    def old_score(name: str) -> float:
        total = 0.0
        for objective, key, larger in (("latency", "p50_ms", False), ("accuracy", "retention", True),
                                       ("memory", "model_memory_mb", False), ("size", "size_mb", False)):
            values = [r[key] for r in rows.values()]
            low, high = min(values), max(values)
            scaled = (rows[name][key] - low) / (high - low) if larger else (high - rows[name][key]) / (high - low)
            total += DEFAULT[objective] * scaled
        return total

    assert old_score("accurate") > old_score("fast")
    assert weighted_pick(rows, ["fast", "accurate"], DEFAULT) == "fast"


def test_a_failing_dominated_variant_cannot_change_the_pick_or_the_candidates_scores():
    rows = issue_rows()
    before = weighted_scores(rows, ["fast", "accurate"], DEFAULT)
    worse = {"slow-failing": row(400.0, 0.5, 2000.0, 300.0), "near-miss": row(2.4, 0.989, 119.0, 22.6)}
    assert all(dominates(rows["fast"], r) for r in worse.values())
    after = weighted_scores({**rows, **worse}, ["fast", "accurate"], DEFAULT)
    assert {n: after[n] for n in before} == before
    assert weighted_pick({**rows, **worse}, ["fast", "accurate"], DEFAULT) == "fast"


@pytest.mark.parametrize("seed", range(100))
def test_dominated_or_failing_additions_never_change_the_pick(seed):
    rng = random.Random(seed)

    def random_row() -> dict:
        return row(rng.uniform(0.8, 20), rng.uniform(0.9, 1.0), rng.uniform(50, 500), rng.uniform(5, 100))

    rows = {f"v{i}": random_row() for i in range(6)}
    candidates = [name for name in rows if rng.random() < 0.6] or ["v0"]
    preferences = {objective: rng.choice([0.0, 0.1, 0.3, 1.0]) for objective in DEFAULT} | {"latency": 0.4}
    pick = weighted_pick(rows, candidates, preferences)
    grown, grown_candidates = dict(rows), list(candidates)
    for i in range(4):
        name = f"extra{i}"
        grown[name] = random_row()  # a failing variant, however good
        if i % 2:  # a passing variant dominated by a candidate
            base = rows[rng.choice(candidates)]
            grown[name] = row(base["p50_ms"] * 1.3, base["retention"] - 0.01, base["model_memory_mb"] * 1.1, base["size_mb"])
            grown_candidates.append(name)
    assert weighted_pick(grown, grown_candidates, preferences) == pick


def test_a_noise_sized_range_is_not_stretched_to_the_full_weight():
    # 3% latency apart (inside the 10% the benchmark resolves) against 2 retention points
    rows = {"a": row(1.00, 0.97), "b": row(1.03, 0.99)}
    scores = weighted_scores(rows, ["a", "b"], {"latency": 0.6, "accuracy": 0.4})
    assert weighted_pick(rows, ["a", "b"], {"latency": 0.6, "accuracy": 0.4}) == "b"
    assert scores["b"] == pytest.approx(0.6 * (1 - math.log(1.03) / MIN_SPAN["latency"]) + 0.4, abs=1e-4)
    assert scores["a"] == 0.6  # best latency, worst retention


def test_scores_are_relative_to_the_passing_set_and_reported_for_every_measured_variant():
    rows = {**issue_rows(), "broken": row(1.0, -0.2), "skipped": {"status": "skipped"}}
    scores = weighted_scores(rows, ["fast", "accurate"], DEFAULT)
    assert set(scores) == {"fast", "accurate", "pytorch-fp32", "mlx-int8", "broken"}
    assert scores["broken"] is None  # a negative retention has no log scale
    assert 0.0 <= scores["accurate"] < scores["fast"] <= 1.0
    assert scores["mlx-int8"] < 0  # far outside the candidates' range, on the same scale
    assert reference_set(rows, ["fast", "accurate"]) == ["accurate", "fast"]


def test_with_no_candidate_the_scale_is_the_front_of_every_measured_variant():
    rows = issue_rows()
    assert weighted_pick(rows, [], DEFAULT) is None
    assert reference_set(rows, []) == ["accurate", "fast", "pytorch-fp32"]  # mlx-int8 is dominated by fast
    assert max(weighted_scores(rows, [], DEFAULT).values()) <= 1.0


def test_ties_go_to_lower_latency_then_to_the_name():
    rows = {"slow": row(3.0, 0.99), "quick": row(2.0, 0.99), "twin-b": row(2.0, 0.99), "twin-a": row(2.0, 0.99)}
    accuracy_only = {"accuracy": 1.0}
    assert len(set(weighted_scores(rows, list(rows), accuracy_only).values())) == 1
    assert weighted_pick(rows, list(rows), accuracy_only) == "quick"
    assert weighted_pick(rows, ["slow", "twin-b", "twin-a"], accuracy_only) == "twin-a"
    assert weighted_pick(rows, ["slow"], accuracy_only) == "slow"
