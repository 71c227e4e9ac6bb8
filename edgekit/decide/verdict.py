"""The ``gate`` step: read the select stage's verdicts for one stage and fail when nothing passes.

Example:
    >>> stage_verdicts(Layout(Path(".")), "production")["passing"]
    ['ort-int8', 'ov-int8-accuracy']
"""

from __future__ import annotations

from typing import Any

from edgekit.decide.policy import describe_failure
from edgekit.errors import GateError, StageInputError
from edgekit.fsutil import read_json
from edgekit.layout import Layout


def stage_verdicts(layout: Layout, stage: str) -> dict[str, Any]:
    """Passing, failing (with each failed blocking gate in words) and unmeasured variants of ``stage``.

    Raises:
        GateError: no variant passes; the message names every variant's failing gates.
    """
    if not layout.gates.is_file():
        raise StageInputError(f"{layout.gates} is missing", "run `dvc repro select` first")
    record = read_json(layout.gates)
    policy = record["policy"]
    result: dict[str, Any] = {"stage": stage, "policy": policy, "passing": [], "warnings": {}, "failing": {}, "not_measured": {}}
    for name, stages in record["variants"].items():
        if stage not in stages:
            raise GateError(f"{policy['file']} has no gates for stage {stage!r}", f"use one of: {', '.join(stages)}")
        verdict = stages[stage]
        if verdict["verdict"] == "not measured":
            result["not_measured"][name] = verdict["reason"]
        elif verdict["verdict"] == "fail":
            result["failing"][name] = [describe_failure(g) for g in verdict["gates"] if g["result"] == "fail" and g["action"] == "block"]
        else:
            result["passing"].append(name)
            result["warnings"][name] = [describe_failure(g) for g in verdict["gates"] if g["result"] == "fail"]
    summary = read_json(layout.summary) if layout.summary.is_file() else {}
    result["recommended"] = (summary.get("decision") or {}).get("recommended") if stage == record["target_stage"] else None
    if not result["passing"]:
        raise GateError(_failure_message(result), f"see reports/report.html for the evidence, or change {policy['file']}")
    return result


def _failure_message(result: dict[str, Any]) -> str:
    policy = result["policy"]
    lines = [f"no variant passes the blocking gates of stage {result['stage']!r} "
             f"(policy {policy['name']} {policy['version']}, {policy['file']} sha256 {policy['sha256'][:12]}):"]
    lines += [f"  {name}: {'; '.join(failures)}" for name, failures in result["failing"].items()]
    lines += [f"  {name}: not measured ({reason})" for name, reason in result["not_measured"].items()]
    return "\n".join(lines)
