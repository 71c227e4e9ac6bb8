"""The ``report`` stage: papermill executes the report notebook, nbconvert renders offline HTML.

Both outputs are written to temporary files and renamed into place, so a killed run never leaves
a truncated report (papermill itself writes its output in place).

Example:
    >>> run(Layout(Path(".")), Path("notebooks/report.ipynb"))
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from edgekit.deps import PAPERMILL, require
from edgekit.errors import EdgekitError
from edgekit.fsutil import write_text
from edgekit.layout import Layout

# Any script, stylesheet or image fetched from the network makes the report depend on a CDN.
REMOTE_ASSET = re.compile(r"""<(script|link|img)\b[^>]*\b(src|href)\s*=\s*["']?(https?:)?//""", re.IGNORECASE)


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any], cwd: Path) -> None:
    """Run ``notebook`` with papermill into ``output`` atomically."""
    require(PAPERMILL)
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".papermill-") as scratch:
        staged = Path(scratch) / output.name
        try:
            papermill.execute_notebook(str(notebook), str(staged), parameters=parameters, cwd=str(cwd),
                                       kernel_name="python3", progress_bar=False)
        except papermill.PapermillExecutionError as exc:
            raise EdgekitError(f"{notebook} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}",
                               f"open {staged.name} in reports/ after fixing, or run the notebook in JupyterLab") from exc
        write_text(output, staged.read_text(encoding="utf-8"))


def to_html(notebook: Path, output: Path) -> None:
    """Render an executed notebook to HTML that needs no network to display."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", exclude_input=False, embed_images=True)
    # No MathJax or require.js from a CDN: the report has no math and no JavaScript widgets.
    exporter.mathjax_url = ""
    exporter.require_js_url = ""
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    body = _strip_remote_scripts(body)
    remote = REMOTE_ASSET.search(body)
    if remote:
        raise EdgekitError(f"{output} would load {remote.group(0)!r} from the network", "remove the remote asset from the notebook")
    write_text(output, body)


def _strip_remote_scripts(html: str) -> str:
    """Drop script tags that load from the network, or from nowhere (``src=""``, left by empty URLs)."""
    pattern = r"""<script\b[^>]*\bsrc\s*=\s*(["'](https?:)?//[^"']*["']|["']\s*["'])[^>]*>\s*</script>"""
    return re.sub(pattern, "", html, flags=re.IGNORECASE)


def render_report(layout: Layout, notebook: Path, name: str = "report", parameters: dict[str, Any] | None = None) -> Path:
    """Execute ``notebook`` into reports/<name>.ipynb and reports/<name>.html; return the HTML path."""
    executed = layout.reports_dir / f"{name}.ipynb"
    params = {"project_dir": ".", **(parameters or {})}
    execute_notebook(notebook, executed, params, cwd=layout.root)
    html = layout.reports_dir / f"{name}.html"
    to_html(executed, html)
    return html


def run(layout: Layout, notebook: Path) -> Path:
    """Write reports/report.ipynb and reports/report.html; return the HTML path."""
    return render_report(layout, notebook)
