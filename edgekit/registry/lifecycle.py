"""The registry's lifecycle, read from the policy file's ``lifecycle:`` section.

Example:
    >>> life = lifecycle_from_mapping(yaml.safe_load(Path("policy.yaml").read_text())["lifecycle"], "policy.yaml")
    >>> life.stages, life.next_stage(None), life.approvals_needed("production")
    (('staging', 'production', 'archived'), 'staging', 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import ConfigError

_KEYS = {"stages", "exclusive", "approvals", "allowed_signers", "review_days", "warn_days", "deploy", "sign"}
SIGN = ("approvals", "all")
DEFAULT = {"stages": ["staging", "production", "archived"], "exclusive": ["staging", "production"],
           "approvals": {}, "allowed_signers": ".edgekit/allowed_signers", "review_days": {}, "warn_days": 14,
           "deploy": {}, "sign": "approvals"}


@dataclass(frozen=True)
class Lifecycle:
    """Stage order (after registration), exclusive stages, approvals, review-by days and deploy hooks.

    The last stage is where versions retire (``archive``); a promotion moves a version one stage on.
    """

    stages: tuple[str, ...]
    exclusive: frozenset[str]
    approvals: dict[str, int] = field(default_factory=dict)
    allowed_signers: str = ".edgekit/allowed_signers"
    review_days: dict[str, float] = field(default_factory=dict)
    warn_days: float = 14
    deploy: dict[str, str] = field(default_factory=dict)
    sign: str = "approvals"  # "all": every event must be signed by an allowed signer, not only approvals

    @property
    def retired(self) -> str:
        return self.stages[-1]

    def next_stage(self, current: str | None) -> str | None:
        """The stage a promotion of a version now in ``current`` (None: just registered) moves it to."""
        order = [None, *self.stages[:-1]]
        return order[order.index(current) + 1] if current in order and order.index(current) + 1 < len(order) else None

    def approvals_needed(self, stage: str) -> int:
        return int(self.approvals.get(stage, 0))


def lifecycle_from_mapping(section: Any, source: str) -> Lifecycle:
    """Validate a ``lifecycle:`` mapping as read from the policy file ``source`` (None: all defaults).

    Raises:
        ConfigError: naming the policy file, the field, the bad value and what is accepted.
    """
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise ConfigError("lifecycle", section, "a mapping (stages, exclusive, approvals, ...)", source)
    raw = {**DEFAULT, **section}
    unknown = set(section) - _KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"lifecycle.{key}", section[key], f"one of the keys {', '.join(sorted(_KEYS))}", source)
    stages = _stage_list(raw["stages"], source)
    _subset("lifecycle.exclusive", raw["exclusive"], stages[:-1], source)
    for name in ("approvals", "review_days", "deploy"):
        _subset(f"lifecycle.{name}", list(_dict(f"lifecycle.{name}", raw[name], source)), stages[:-1], source)
    _numbers("lifecycle.approvals", raw["approvals"], source, integer=True)
    _numbers("lifecycle.review_days", raw["review_days"], source)
    if isinstance(raw["warn_days"], bool) or not isinstance(raw["warn_days"], (int, float)) or raw["warn_days"] < 0:
        raise ConfigError("lifecycle.warn_days", raw["warn_days"], "a number of days ≥ 0", source)
    if not isinstance(raw["allowed_signers"], str) or not raw["allowed_signers"]:
        raise ConfigError("lifecycle.allowed_signers", raw["allowed_signers"], "a path to ssh-keygen's allowed signers file", source)
    if raw["sign"] not in SIGN:
        raise ConfigError("lifecycle.sign", raw["sign"], "approvals (only approvals are signed) or all (every event is)", source)
    deploy = {k: str(v or "") for k, v in raw["deploy"].items()}
    return Lifecycle(tuple(stages), frozenset(raw["exclusive"]), dict(raw["approvals"]), raw["allowed_signers"],
                     dict(raw["review_days"]), float(raw["warn_days"]), deploy, raw["sign"])


def _stage_list(value: Any, source: str) -> list[str]:
    if (not isinstance(value, list) or len(value) < 2 or len(set(value)) != len(value)
            or not all(isinstance(s, str) and s.isidentifier() for s in value)):
        raise ConfigError("lifecycle.stages", value, "a list of at least two distinct stage names (letters, digits, _), "
                          "in promotion order, the last one where versions retire", source)
    return value


def _dict(field_name: str, value: Any, source: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(field_name, value, "a mapping of stage → value", source)
    return value


def _subset(field_name: str, names: Any, allowed: list[str], source: str) -> None:
    if not isinstance(names, list):
        raise ConfigError(field_name, names, "a list of stage names", source)
    for name in names:
        if name not in allowed:
            raise ConfigError(f"{field_name}", name, f"one of the stages a version is promoted to: {', '.join(allowed)}", source)


def _numbers(field_name: str, mapping: dict, source: str, integer: bool = False) -> None:
    for stage, value in mapping.items():
        bad = isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or value < 0
        if bad:
            raise ConfigError(f"{field_name}.{stage}", value, "a whole number ≥ 0" if integer else "a number of days ≥ 0", source)
