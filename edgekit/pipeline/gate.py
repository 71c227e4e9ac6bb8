"""The ``gate`` stage: the select stage's verdicts for one stage (``edgekit.decide.verdict``), and where the
project has a decoder, decoder_select's verdicts for the same stage (``decoders``): CI's gate blocks when
either kind has no passing variant.

`dvc repro` only records and reports (``edgekit gate --advisory``): a host where nothing qualifies is a
finding, not a broken pipeline. Blocking belongs to promotion and to CI's ``edgekit gate``.

Example:
    >>> run(Layout(Path(".")), "production")["passing"]
    ['ort-int8', 'ov-int8-accuracy']
"""

from __future__ import annotations

from typing import Any

from edgekit.decide.verdict import stage_verdicts
from edgekit.errors import GateError, StageInputError
from edgekit.fsutil import read_json
from edgekit.layout import Layout


def run(layout: Layout, stage: str, block: bool = True) -> dict[str, Any]:
    """Passing, failing and unmeasured variants of ``stage``; see ``stage_verdicts``.

    Raises:
        GateError: ``block`` and no variant passes.
        StageInputError: the select stage has not run.
    """
    if not layout.gates.is_file():
        raise StageInputError(f"{layout.gates} is missing", "run `dvc repro select` first")
    summary = read_json(layout.summary) if layout.summary.is_file() else {}
    decoders = decoder_verdicts(read_json(layout.decoder_summary), stage) if layout.decoder_summary.is_file() else None
    if decoders and decoders["message"] and block:
        raise GateError(decoders["message"], f"the evidence: {layout.decoder_summary.relative_to(layout.root)} "
                                             "(every decoder gate with its value and bound) and reports/report.html")
    result = stage_verdicts(read_json(layout.gates), (summary.get("decision") or {}).get("recommended"), stage, block)
    return {**result, "decoders": decoders}


def decoder_verdicts(summary: dict[str, Any], stage: str) -> dict[str, Any]:
    """The decoder variants passing and failing ``stage``'s decoder gates (decoder_select's verdicts), in the shape
    of ``stage_verdicts``; ``message`` says why none qualifies, or is None. The baseline is not a candidate."""
    result: dict[str, Any] = {"stage": stage, "passing": [], "failing": {}, "not_measured": {}, "recommended": None}
    for row in summary["variants"]:
        if row["variant"] == summary["baseline"]:
            continue
        if row["status"] != "ok":
            result["not_measured"][row["variant"]] = row.get("reason") or row["status"]
            continue
        verdict = row["verdicts"].get(stage)
        if verdict is None:
            raise GateError(f"metrics/decoder_summary.json has no decoder gates for stage {stage!r}",
                            f"add decoder_stages.{stage} to the policy, or use one of: {', '.join(row['verdicts'])}")
        if verdict["passed"]:
            result["passing"].append(row["variant"])
        else:
            result["failing"][row["variant"]] = [_decoder_failure(g) for g in verdict["gates"] if not g["passed"] and g["action"] == "block"]
    if stage == summary["recommendation"]["stage"]:
        result["recommended"] = summary["recommendation"]["variant"]
    result["message"] = None if result["passing"] else "\n".join(
        [f"no decoder variant passes the blocking decoder gates of stage {stage!r}:"]
        + [f"  {name}: {'; '.join(failures)}" for name, failures in result["failing"].items()]
        + [f"  {name}: not measured ({reason})" for name, reason in result["not_measured"].items()])
    return result


def _decoder_failure(gate: dict[str, Any]) -> str:
    direction = "min" if "min" in gate else "max"
    if gate["value"] is None:
        return f"{gate['gate']} not measured"
    where = " (95% CI end)" if gate["estimate"] == "ci" else ""
    return f"{gate['gate']} {gate['value']:.4g}{where} {'<' if direction == 'min' else '>'} {gate[direction]}"
