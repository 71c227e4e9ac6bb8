"""Policy as code: the gates a variant must pass to enter each stage, read from a versioned YAML file.

The file names a policy, its version, and per target stage (``staging``, ``production``) a mapping of
gate → bound, e.g. ``speedup: {min: 2.0, confidence: 0.95, action: block}``. A ``block`` gate that
fails keeps the variant out of that stage; a ``warn`` gate is reported and does not. The file's sha256
is recorded next to every verdict, so a verdict can be traced to the exact policy text.

Example:
    >>> policy = policy_from_yaml(Path("policy.yaml").read_bytes(), "policy.yaml")
    >>> verdict = evaluate_stage(policy, "production", evidence)
    >>> verdict["verdict"], [g["gate"] for g in verdict["failed_blocking"]]
    ('fail', ['speedup'])
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from edgekit.decide import STAGES
from edgekit.decide.gates import Evidence, get_gate
from edgekit.errors import ConfigError

ACTIONS = ("block", "warn")
_TOP_LEVEL = {"name", "version", "description", "stages", "lifecycle", "decoder_stages", "serving"}


@dataclass(frozen=True)
class GateRule:
    """One gate of one stage: the bound, its direction, the action and the gate's own options."""

    gate: str
    direction: str
    bound: float
    action: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    description: str
    stages: dict[str, tuple[GateRule, ...]]
    path: str
    sha256: str
    # The registry's section (stage order, approvals, review dates, deploy hook); edgekit.registry
    # validates it, so deciding never imports the registry.
    lifecycle: dict[str, Any] = field(default_factory=dict)
    # The decoders' gates (``edgekit.tasks.generation.gates`` validates and applies them).
    decoder_stages: dict[str, Any] = field(default_factory=dict)
    # The server's ramp, live limits and drift bound (``edgekit.serve.policy`` validates them).
    serving: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What is written next to a verdict to identify this policy."""
        return {"name": self.name, "version": self.version, "file": self.path, "sha256": self.sha256}


def policy_from_yaml(data: bytes, source: str) -> Policy:
    """Parse and validate a policy file's bytes; its sha256 identifies it in every verdict.

    Raises:
        ConfigError: naming the file, the dotted field, the bad value and what is accepted.
    """
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", source, f"valid YAML ({exc})".replace("\n", " "), source) from exc
    return parse_policy(raw, source, hashlib.sha256(data).hexdigest())


def require_stage(policy: Policy, stage: str, field: str = "policy.stage") -> None:
    """Raise unless ``policy`` has gates for ``stage`` (params.yaml's target stage)."""
    if stage not in policy.stages:
        raise ConfigError(field, stage, f"a stage that {policy.path} has gates for: {', '.join(policy.stages)}")


def _mapping(raw: Any, allowed: set[str] | None, field: str, source: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(field, raw, "a mapping", source)
    for key in raw:
        if allowed is not None and key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"did you mean {close[0]!r}? Known keys" if close else "known keys"
            raise ConfigError(f"{field}.{key}".lstrip("."), raw[key], f"{hint}: {', '.join(sorted(allowed))}", source)
    return raw


def parse_policy(raw: Any, source: str = "policy.yaml", sha256: str = "") -> Policy:
    """Validate a policy mapping (as loaded from YAML)."""
    raw = _mapping(raw, _TOP_LEVEL, "", source)
    for key in ("name", "version"):
        if not isinstance(raw.get(key), (str, int, float)) or isinstance(raw.get(key), bool) or not str(raw[key]).strip():
            raise ConfigError(key, raw.get(key), f"a non-empty {key} (it is recorded with every verdict)", source)
    stages = _mapping(raw.get("stages"), set(STAGES), "stages", source)
    if not stages:
        raise ConfigError("stages", stages, f"gates for at least one of: {', '.join(STAGES)}", source)
    rules = {stage: tuple(_rule(f"stages.{stage}.{name}", name, spec, source) for name, spec in
                          _mapping(gates or {}, None, f"stages.{stage}", source).items())
             for stage, gates in stages.items()}
    lifecycle = _mapping(raw.get("lifecycle") or {}, None, "lifecycle", source)
    decoder_stages = _mapping(raw.get("decoder_stages") or {}, set(STAGES), "decoder_stages", source)
    serving = _mapping(raw.get("serving") or {}, None, "serving", source)
    return Policy(str(raw["name"]), str(raw["version"]), str(raw.get("description", "")), rules, source, sha256, lifecycle,
                  decoder_stages, serving)


def _rule(field: str, name: str, spec: Any, source: str) -> GateRule:
    gate = get_gate(name, field, source)
    other = "max" if gate.direction == "min" else "min"
    kind = "a lower" if gate.direction == "min" else "an upper"
    if isinstance(spec, dict) and other in spec:
        raise ConfigError(f"{field}.{other}", spec[other], f"`{gate.direction}:` instead: {name} is {kind} bound ({gate.description})", source)
    spec = _mapping(spec, {gate.direction, "action", *gate.options}, field, source)
    if gate.direction not in spec:
        raise ConfigError(f"{field}.{gate.direction}", None, f"a number: {name} is {kind} bound ({gate.description})", source)
    bound = spec[gate.direction]
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise ConfigError(f"{field}.{gate.direction}", bound, "a number", source)
    action = spec.get("action", "block")
    if action not in ACTIONS:
        raise ConfigError(f"{field}.action", action, "one of: block, warn", source)
    options = {k: v for k, v in spec.items() if k in gate.options}
    problem = gate.check_options(options)
    if problem:
        raise ConfigError(field, options, problem, source)
    return GateRule(name, gate.direction, float(bound), action, options)


def apply_rule(rule: GateRule, evidence: Evidence) -> dict[str, Any]:
    """One gate's verdict for one variant: measured value, bound, result and the outputs it came from."""
    measured = get_gate(rule.gate).measure(evidence, rule.options)
    if measured.value is None:
        result = "fail"
    elif rule.direction == "min":
        result = "pass" if measured.value >= rule.bound else "fail"
    else:
        result = "pass" if measured.value <= rule.bound else "fail"
    return {
        "gate": rule.gate, "action": rule.action, "op": "≥" if rule.direction == "min" else "≤",
        "threshold": rule.bound, "value": measured.value, "result": result,
        "detail": measured.detail, "evidence": measured.sources, "options": rule.options,
    }


def evaluate_stage(policy: Policy, stage: str, evidence: Evidence) -> dict[str, Any]:
    """Every gate of ``stage`` for one variant, and the overall verdict.

    Returns:
        ``{"verdict": "pass" | "pass with warnings" | "fail", "gates": [...], "failed_blocking": [...],
        "warnings": [...]}``.
    """
    results = [apply_rule(rule, evidence) for rule in policy.stages.get(stage, ())]
    blocking = [r for r in results if r["result"] == "fail" and r["action"] == "block"]
    warnings = [r for r in results if r["result"] == "fail" and r["action"] == "warn"]
    verdict = "fail" if blocking else "pass with warnings" if warnings else "pass"
    return {"verdict": verdict, "gates": results, "failed_blocking": [r["gate"] for r in blocking],
            "warnings": [r["gate"] for r in warnings]}


def describe_failure(result: dict[str, Any]) -> str:
    """'speedup 1.84 < 2.0' — one failing gate in words."""
    value = "missing" if result["value"] is None else f"{result['value']:g}"
    flipped = {"≥": "<", "≤": ">"}[result["op"]]
    return f"{result['gate']} {value} {flipped} {result['threshold']:g}" if result["value"] is not None \
        else f"{result['gate']} missing ({result['detail']})"
