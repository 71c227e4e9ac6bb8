"""The verdicts of one stage, from the select stage's gates record; fail when nothing passes, if asked.

`dvc repro` only records and reports (``edgekit gate --advisory``): a host where nothing qualifies is a
finding, not a broken pipeline. Blocking belongs to promotion and to CI's ``edgekit gate``.

Example:
    >>> stage_verdicts(read_json(Path("outputs/gates.json")), "ort-int8", "production")["passing"]
    ['ort-int8', 'ov-int8-accuracy']
"""

from __future__ import annotations

from typing import Any

from edgekit.decide.policy import describe_failure
from edgekit.errors import GateError


def stage_verdicts(record: dict[str, Any], recommended: str | None, stage: str, block: bool = True) -> dict[str, Any]:
    """Passing, failing (with each failed blocking gate in words) and unmeasured variants of ``stage``.

    Args:
        record: outputs/gates.json (``edgekit.decide.decision.gates_record``).
        recommended: the decision's recommended variant, reported when ``stage`` is the record's target stage.
        block: raise when no variant passes; otherwise return the result with ``message`` saying so.

    Raises:
        GateError: ``block`` and no variant passes; the message names every variant's failing gates.
    """
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
    result["recommended"] = recommended if stage == record["target_stage"] else None
    result["message"] = None if result["passing"] else _failure_message(result)
    result["evidence"] = EVIDENCE
    if result["message"] and block:
        raise GateError(result["message"], f"{EVIDENCE}, or change {policy['file']}")
    return result


EVIDENCE = "the evidence: outputs/gates.json (every gate with its value and bound) and reports/report.html"


def _failure_message(result: dict[str, Any]) -> str:
    policy = result["policy"]
    lines = [f"no variant passes the blocking gates of stage {result['stage']!r} "
             f"(policy {policy['name']} {policy['version']}, {policy['file']} sha256 {policy['sha256'][:12]}):"]
    lines += [f"  {name}: {'; '.join(failures)}" for name, failures in result["failing"].items()]
    lines += [f"  {name}: not measured ({reason})" for name, reason in result["not_measured"].items()]
    return "\n".join(lines)
