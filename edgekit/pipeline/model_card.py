"""The ``model_card`` stage: the certification report of one variant (the recommended one by default),
the model card notebook executed like the report (``edgekit.pipeline.report``).

Example:
    >>> run(Layout(Path(".")), Path("notebooks/model_card.ipynb"), "ort-int8")
"""

from __future__ import annotations

from pathlib import Path

from edgekit.layout import Layout
from edgekit.pipeline.report import render_report


def run(layout: Layout, notebook: Path, variant: str | None = None) -> Path:
    """Write reports/model_card.ipynb and .html; return the HTML path."""
    return render_report(layout, notebook, name="model_card", parameters={"variant": variant or ""})
