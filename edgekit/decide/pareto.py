"""The Pareto frontier over latency, accuracy, memory and size, and a weighted pick from preferences.

Variant A dominates B when A is at least as good on every objective and strictly better on one. Two
variants equal on every objective dominate neither, so both stay on the frontier (a tie is kept, not
broken). The weighted pick scales each objective to [0, 1] over the measured variants (1 = best, all
equal → 1 for everyone), takes the preference-weighted mean, and breaks a tie by lower latency, then by name.

Example:
    >>> front = pareto_front(rows)
    >>> front["ort-int8"]["on_front"], front["gguf-q5_k_m"]["dominated_by"]
    (True, ['gguf-q4_k_m', 'ort-int8', ...])
    >>> weighted_pick(rows, ["ort-int8", "ov-int8"], {"latency": 0.5, "accuracy": 0.5})
"""

from __future__ import annotations

from typing import Any

# objective → (row key, True when larger is better)
OBJECTIVES = {
    "latency": ("p50_ms", False),
    "accuracy": ("retention", True),
    "memory": ("peak_rss_mb", False),
    "size": ("size_mb", False),
}


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


def _scaled(rows: dict[str, dict[str, Any]], objective: str) -> dict[str, float]:
    key, larger_better = OBJECTIVES[objective]
    values = {name: float(row[key]) for name, row in rows.items()}
    low, high = min(values.values()), max(values.values())
    if high == low:
        return dict.fromkeys(values, 1.0)
    return {name: (v - low) / (high - low) if larger_better else (high - v) / (high - low) for name, v in values.items()}


def weighted_scores(rows: dict[str, dict[str, Any]], preferences: dict[str, float]) -> dict[str, float]:
    """Preference-weighted score in [0, 1] of every measured row (objectives scaled over all of them)."""
    measured = {name: row for name, row in rows.items() if row.get("status") == "ok"}
    if not measured:
        return {}
    total = sum(preferences.values())
    scaled = {objective: _scaled(measured, objective) for objective in preferences if preferences[objective] > 0}
    return {name: round(sum(preferences[o] * scaled[o][name] for o in scaled) / total, 4) for name in measured}


def weighted_pick(rows: dict[str, dict[str, Any]], candidates: list[str], preferences: dict[str, float]) -> str | None:
    """The best-scoring candidate (ties: lower p50, then name); None when there is no candidate."""
    scores = weighted_scores(rows, preferences)
    ranked = sorted((name for name in candidates if name in scores),
                    key=lambda name: (-scores[name], rows[name]["p50_ms"], name))
    return ranked[0] if ranked else None
