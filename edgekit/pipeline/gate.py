"""The ``gate`` stage: the select stage's verdicts for one stage (``edgekit.decide.verdict``).

`dvc repro` only records and reports (``edgekit gate --advisory``): a host where nothing qualifies is a
finding, not a broken pipeline. Blocking belongs to promotion and to CI's ``edgekit gate``.

Example:
    >>> run(Layout(Path(".")), "production")["passing"]
    ['ort-int8', 'ov-int8-accuracy']
"""

from __future__ import annotations

from typing import Any

from edgekit.decide.verdict import stage_verdicts
from edgekit.errors import StageInputError
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
    return stage_verdicts(read_json(layout.gates), (summary.get("decision") or {}).get("recommended"), stage, block)
