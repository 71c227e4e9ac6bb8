"""edgekit in Jupyter: ``%load_ext edgekit`` registers the ``%edgekit`` magic, and these functions return rich
displays of what the pipeline and the registry hold (HTML in a notebook, text in a terminal).

Example:
    In [1]: %load_ext edgekit
    In [2]: %edgekit registry show
    In [3]: from edgekit import notebook
    In [4]: notebook.results()                 # the variants side by side, the recommended one first
    In [5]: notebook.variant("ort-int8")       # its figures and every stage's gates with their evidence
    In [6]: notebook.BenchmarkExplorer()       # the table, the Pareto plot and a variant's detail, interactive
    In [7]: notebook.RegistryPanel()           # versions, records and the promote/approve/... buttons
"""

from __future__ import annotations

from pathlib import Path

from edgekit.notebook.display import GateVerdictView, RegistryView, ResultsView, VariantView, VersionView
from edgekit.notebook.magics import load


def _read(path: Path, stage: str) -> dict:
    from edgekit.errors import EdgekitError
    from edgekit.fsutil import read_json

    if not path.is_file():
        raise EdgekitError(f"{path} does not exist", f"run `dvc repro {stage}` (or `dvc pull`) in the project first")
    return read_json(path)


def results(project: str | Path = ".", stage: str | None = None) -> ResultsView:
    """The variants of the last pipeline run (``metrics/summary.json``), with their verdicts for ``stage``."""
    from edgekit.layout import Layout

    return ResultsView(_read(Layout(Path(project)).summary, "select"), stage)


def variant(name: str, project: str | Path = ".") -> VariantView:
    """One variant's figures and its gate verdicts for every stage."""
    from edgekit.errors import EdgekitError
    from edgekit.layout import Layout

    layout = Layout(Path(project))
    rows = _read(layout.summary, "select")["variants"]
    if name not in rows:
        raise EdgekitError(f"variant {name!r} is not in {layout.summary}", f"variants: {', '.join(rows)}")
    return VariantView(name, rows[name], _read(layout.gates, "select")["variants"].get(name, {}))


def verdict(name: str, stage: str | None = None, project: str | Path = ".") -> GateVerdictView:
    """One variant's gates for one stage (default: the pipeline's target stage)."""
    from edgekit.layout import Layout

    gates = _read(Layout(Path(project)).gates, "select")
    stage = stage or gates["target_stage"]
    return GateVerdictView(gates["variants"].get(name, {}).get(stage, {}), name, stage)


def registry(project: str | Path = ".", model: str | None = None) -> RegistryView:
    """The registry's models, versions and stages (``edgekit.registry.show``)."""
    from edgekit import registry as api

    return RegistryView(api.show(project, model))


def version(project: str | Path, ref: str) -> VersionView:
    """One registry version with its reproduction record and gate verdicts (``edgekit.registry.describe``)."""
    from edgekit import registry as api

    return VersionView(api.describe(project, ref))


def __getattr__(name: str):
    if name == "RegistryPanel":  # the widgets import ipywidgets (and plotly): only when asked for
        from edgekit.notebook.panel import RegistryPanel

        return RegistryPanel
    if name == "BenchmarkExplorer":
        from edgekit.notebook.explorer import BenchmarkExplorer

        return BenchmarkExplorer
    raise AttributeError(name)


__all__ = ["BenchmarkExplorer", "RegistryPanel", "load", "registry", "results", "variant", "verdict", "version"]
