"""The Pareto frontier over latency, accuracy, memory and size, and a weighted pick from preferences.

Variant A dominates B when A is at least as good on every objective and strictly better on one. Two
variants equal on every objective dominate neither, so both stay on the frontier (a tie is kept, not
broken).

The weighted pick compares ratios, not raw differences: every objective is taken on a log scale
(latency, memory and size are costs whose ratios matter, 2× faster is 2× faster at 1 ms or 300 ms;
retention is a ratio already). Each is then scaled over the *reference set*, the candidates that pass
the target stage and are not dominated by another candidate: its best value there scores 1, its worst
0. A range narrower than ``MIN_SPAN`` is not stretched to the full 0–1, so a 0.003 retention spread
cannot weigh as much as a 2.35× latency spread. The score is the preference-weighted mean. Every
measured variant is scored on that same scale (one outside the reference set may fall below 0 or, if
it fails a gate, above 1); when no variant passes, the reference set is the frontier of every measured
variant. Ties (equal rounded scores) go to a reference-set member, then to the lower p50, then by name.

Because the reference set holds only passing variants that no passing variant dominates, adding a
variant that fails the stage, or that a passing variant dominates, cannot change the pick.

Example:
    >>> front = pareto_front(rows)
    >>> front["ort-int8"]["on_front"], front["gguf-q5_k_m"]["dominated_by"]
    (True, ['gguf-q4_k_m', 'ort-int8', ...])
    >>> weighted_pick(rows, ["ort-int8", "ov-int8"], {"latency": 0.5, "accuracy": 0.5})
"""

from __future__ import annotations

import math
from typing import Any

from edgekit import decide

# objective → (row key, True when larger is better); memory is the model's own cost, not the process's
# peak RSS (which mostly says whether torch was imported)
OBJECTIVES = {
    "latency": ("p50_ms", False),
    "accuracy": ("retention", True),
    "memory": ("model_memory_mb", False),
    "size": ("size_mb", False),
}
assert tuple(OBJECTIVES) == decide.OBJECTIVES  # the names params.yaml's policy.preferences may use

# The narrowest range (in natural-log units) that is stretched to an objective's full weight. 10% is
# what the benchmark resolves between processes (params benchmark.max_process_spread = 0.10); one point
# of retention is about the half-width of its 95% CI on the shipped test pairs.
MIN_SPAN = {"latency": math.log(1.10), "accuracy": math.log(1.01), "memory": math.log(1.10), "size": math.log(1.10)}


def _vector(row: dict[str, Any]) -> tuple[float, ...]:
    """The row's objectives as 'smaller is better' numbers."""
    return tuple(-row[key] if larger_better else row[key] for key, larger_better in OBJECTIVES.values())


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    va, vb = _vector(a), _vector(b)
    return all(x <= y for x, y in zip(va, vb, strict=True)) and any(x < y for x, y in zip(va, vb, strict=True))


def pareto_front(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each measured row: whether it is on the frontier and which variants dominate it."""
    measured = {name: row for name, row in rows.items() if row.get("status") == "ok"}
    result = {}
    for name, row in measured.items():
        dominated_by = sorted(other for other, rival in measured.items() if other != name and dominates(rival, row))
        result[name] = {"on_front": not dominated_by, "dominated_by": dominated_by}
    return result


def _log_value(row: dict[str, Any], objective: str) -> float | None:
    """The objective on a log scale, oriented so that larger is better; None when it has no positive value."""
    key, larger_better = OBJECTIVES[objective]
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return None
    return math.log(value) if larger_better else -math.log(value)


def reference_set(rows: dict[str, dict[str, Any]], candidates: list[str]) -> list[str]:
    """The variants the scores are scaled over: the candidates no other candidate dominates.

    Args:
        rows: the summary rows by variant name.
        candidates: the variants that pass the target stage.

    Returns:
        Sorted names; with no scorable candidate, the frontier of every scorable measured variant.
    """
    scorable = {n: r for n, r in rows.items() if r.get("status") == "ok" and all(_log_value(r, o) is not None for o in OBJECTIVES)}
    pool = {n: r for n, r in scorable.items() if n in candidates} or scorable
    return sorted(n for n, row in pool.items() if not any(dominates(rival, row) for rival in pool.values()))


def _scaled(rows: dict[str, dict[str, Any]], reference: list[str], objective: str) -> dict[str, float]:
    """1 at the reference set's best log value, 0 at its worst (or a ``MIN_SPAN`` below the best)."""
    values = {name: _log_value(row, objective) for name, row in rows.items()}
    best, worst = max(values[n] for n in reference), min(values[n] for n in reference)
    span = max(best - worst, MIN_SPAN[objective])
    return {name: 1.0 - (best - value) / span for name, value in values.items() if value is not None}


def weighted_scores(rows: dict[str, dict[str, Any]], candidates: list[str], preferences: dict[str, float]) -> dict[str, float | None]:
    """The preference-weighted score of every measured row, scaled over ``reference_set(rows, candidates)``.

    Args:
        rows: the summary rows by variant name (only ``status == "ok"`` rows are scored).
        candidates: the variants that pass the target stage.
        preferences: objective → weight (0 or more, at least one positive).

    Returns:
        name → score rounded to 4 places: 1 is best on every weighted objective of the reference set.
        None for a row without a positive value for each objective (no log scale).
    """
    measured = {name: row for name, row in rows.items() if row.get("status") == "ok"}
    reference = reference_set(measured, candidates)
    weights = {objective: weight for objective, weight in preferences.items() if weight > 0}
    if not reference or not weights:
        return dict.fromkeys(measured)
    scaled = {objective: _scaled(measured, reference, objective) for objective in weights}
    total = sum(weights.values())
    return {name: round(sum(w * scaled[o][name] for o, w in weights.items()) / total, 4)
            if all(name in scaled[o] for o in weights) else None for name in measured}


def weighted_pick(rows: dict[str, dict[str, Any]], candidates: list[str], preferences: dict[str, float]) -> str | None:
    """The best-scoring candidate (ties: a reference-set member, then lower p50, then name); None when there is none."""
    scores = weighted_scores(rows, candidates, preferences)
    reference = set(reference_set(rows, candidates))
    ranked = sorted((name for name in candidates if scores.get(name) is not None),
                    key=lambda name: (-scores[name], name not in reference, rows[name]["p50_ms"], name))
    return ranked[0] if ranked else None
