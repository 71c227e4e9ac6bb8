"""The policy's ``serving:`` section: the ramp a candidate goes through, its live limits and the drift bound.

Example:
    >>> serving = serving_from_mapping({"ramp": {"steps": [0.1, 1.0], "min_requests": 50}}, "policy.yaml")
    >>> serving.ramp_steps
    (0.1, 1.0)
    >>> serving.p99_limit_ms(benchmark_p99_ms=4.0)
    25.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgekit.errors import ConfigError

_SECTIONS = {"ramp", "limits", "drift"}


@dataclass(frozen=True)
class ServingPolicy:
    """Validated ``serving:`` settings; the defaults are what an absent section means."""

    ramp_steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    min_requests: int = 200
    p99_tolerance: float | None = 3.0   # live p99 limit = max(tolerance x benchmarked p99, floor) ...
    p99_floor_ms: float = 25.0
    p99_max_ms: float | None = None     # ... or this absolute bound when the policy gives `max:`
    error_rate_max: float = 0.01
    drift_alpha: float = 0.01
    drift_min_live: int = 50

    def p99_limit_ms(self, benchmark_p99_ms: float | None) -> float:
        """The live p99 above which a candidate is rolled back, in ms."""
        if self.p99_max_ms is not None:
            return self.p99_max_ms
        if benchmark_p99_ms is None or self.p99_tolerance is None:
            return self.p99_floor_ms
        return max(self.p99_tolerance * benchmark_p99_ms, self.p99_floor_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"ramp": {"steps": list(self.ramp_steps), "min_requests": self.min_requests},
                "limits": {"p99_ms": {"max": self.p99_max_ms} if self.p99_max_ms is not None else
                           {"tolerance": self.p99_tolerance, "floor": self.p99_floor_ms},
                           "error_rate": {"max": self.error_rate_max}},
                "drift": {"alpha": self.drift_alpha, "min_live": self.drift_min_live}}


def serving_policy(project) -> ServingPolicy:
    """The ``serving:`` section of the policy committed at the registry's HEAD (the one promotions read)."""
    from edgekit.registry.core import Registry

    policy = Registry.open(project).policy()
    return serving_from_mapping(policy.serving, policy.path)


def serving_from_mapping(section: Any, source: str) -> ServingPolicy:
    """Validate a ``serving:`` mapping as read from the policy file ``source``.

    Raises:
        ConfigError: naming the policy file, the field, the bad value and what is accepted.
    """
    section = _mapping(section or {}, "serving", _SECTIONS, source)
    ramp = _mapping(section.get("ramp") or {}, "serving.ramp", {"steps", "min_requests"}, source)
    limits = _mapping(section.get("limits") or {}, "serving.limits", {"p99_ms", "error_rate"}, source)
    drift = _mapping(section.get("drift") or {}, "serving.drift", {"alpha", "min_live"}, source)
    defaults = ServingPolicy()
    p99 = _mapping(limits.get("p99_ms") or {}, "serving.limits.p99_ms", {"tolerance", "floor", "max"}, source)
    if "max" in p99 and "tolerance" in p99:
        raise ConfigError("serving.limits.p99_ms", p99, "either `max: <ms>` (absolute) or `tolerance:` (x the benchmarked p99)", source)
    errors = _mapping(limits.get("error_rate") or {}, "serving.limits.error_rate", {"max"}, source)
    return ServingPolicy(
        ramp_steps=_steps(ramp.get("steps", list(defaults.ramp_steps)), source),
        min_requests=_integer("serving.ramp.min_requests", ramp.get("min_requests", defaults.min_requests), 1, source),
        p99_tolerance=None if "max" in p99 else _number("serving.limits.p99_ms.tolerance", p99.get("tolerance", defaults.p99_tolerance),
                                                      1.0, None, source),
        p99_floor_ms=_number("serving.limits.p99_ms.floor", p99.get("floor", defaults.p99_floor_ms), 0.0, None, source),
        p99_max_ms=_number("serving.limits.p99_ms.max", p99["max"], 0.0, None, source) if "max" in p99 else None,
        error_rate_max=_number("serving.limits.error_rate.max", errors.get("max", defaults.error_rate_max), 0.0, 1.0, source),
        drift_alpha=_number("serving.drift.alpha", drift.get("alpha", defaults.drift_alpha), 1e-9, 0.5, source),
        drift_min_live=_integer("serving.drift.min_live", drift.get("min_live", defaults.drift_min_live), 2, source))


def _mapping(raw: Any, field: str, allowed: set[str], source: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(field, raw, "a mapping", source)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}", raw[unknown[0]], f"one of the keys: {', '.join(sorted(allowed))}", source)
    return raw


def _number(field: str, value: Any, low: float, high: float | None, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(field, value, f"a number {bound}", source)
    return float(value)


def _integer(field: str, value: Any, low: int, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(field, value, f"a whole number, at least {low}", source)
    return value


def _steps(value: Any, source: str) -> tuple[float, ...]:
    """Traffic shares, rising, each in (0, 1], ending at 1 (a ramp that never reaches all traffic never completes)."""
    expected = "rising traffic shares in (0, 1] that end at 1.0, e.g. [0.05, 0.25, 0.5, 1.0]"
    if not isinstance(value, list) or not value:
        raise ConfigError("serving.ramp.steps", value, expected, source)
    steps = tuple(_number("serving.ramp.steps", step, 0.0, 1.0, source) for step in value)
    if any(step <= 0 for step in steps) or any(b <= a for a, b in zip(steps, steps[1:], strict=False)) or steps[-1] != 1.0:
        raise ConfigError("serving.ramp.steps", value, expected, source)
    return steps
