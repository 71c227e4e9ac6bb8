"""``BenchmarkExplorer``: the pipeline's variants in a notebook (ipywidgets, with plotly's FigureWidget).

The variants table (sorted by any column; filtered by runtime, precision and verdict), the Pareto plot of
latency against accuracy retention (marker area by model memory, the latency/retention frontier drawn, the
recommended variant starred; a click on a point selects it), and the selected variant's detail: its latency
distribution in every scenario, its gate verdicts with their evidence, its roofline and the diagnosis.
``compare(a, b)`` puts two experiments of ``dvc exp show`` side by side.

Everything is read from the pinned pipeline outputs (``metrics/summary.json``, ``outputs/gates.json``,
``outputs/benchmark/``), the files ``dvc repro`` writes and ``dvc pull`` fetches.

Without a widget frontend (papermill, nbconvert, a notebook viewer) the explorer's output carries a static
HTML alternative: the same table, the Pareto plot as an image and the recommended variant's gates.

Example:
    >>> from edgekit.notebook import BenchmarkExplorer
    >>> explorer = BenchmarkExplorer(".")      # the last expression of a cell: the explorer shows
    >>> explorer.select("ort-int8")
    >>> explorer.compare("workspace", "exp-1a2b3")
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from edgekit.errors import EdgekitError
from edgekit.notebook.display import GateVerdictView, html_table
from edgekit.results import Results, load_results

ALL = "(all)"
# column label, summary key
COLUMNS = [("variant", "variant"), ("runtime", "runtime"), ("precision", "precision"), ("verdict", "verdict"),
           ("speed-up", "speedup"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("retention", "retention"),
           ("cosine", "cosine_mean"), ("model MB", "model_memory_mb"), ("size MB", "size_mb"), ("Pareto (all objectives)", "pareto")]
_VERDICT_COLOURS = {"pass": "#1a7f37", "pass with warnings": "#9a6700", "fail": "#cf222e"}


def rows_of(results: Results) -> list[dict[str, Any]]:
    """One flat row per variant: the table's columns, ``verdict`` for the pipeline's target stage."""
    stage = results.decision["target_stage"]
    rows = []
    for name, row in results.summary["variants"].items():
        flat = {key: row.get(key) for _, key in COLUMNS}
        flat.update(variant=name, status=row.get("status"), pareto=bool((row.get("pareto") or {}).get("on_front")),
                    verdict=(row.get("verdicts") or {}).get(stage) or row.get("status"))
        rows.append(flat)
    return rows


def sort_rows(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    """Rows by ``key``; rows without a value for it go last whichever the direction."""
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    return sorted(present, key=lambda r: (r[key], r["variant"]), reverse=descending) + missing


def latency_frontier(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats on both p50 latency and accuracy retention, fastest first: the plot's frontier.
    (The table's Pareto column is the pipeline's, over every objective the policy names: memory and size too.)"""
    front: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: (r["p50_ms"], -r["retention"])):
        if not front or row["retention"] > front[-1]["retention"]:
            front.append(row)
    return front


def filter_rows(rows: list[dict[str, Any]], runtime: str = ALL, precision: str = ALL, verdict: str = ALL) -> list[dict[str, Any]]:
    return [r for r in rows if runtime in (ALL, r["runtime"]) and precision in (ALL, r["precision"]) and verdict in (ALL, r["verdict"])]


class BenchmarkExplorer:
    """The variants of ``project``'s last pipeline run as a widget; ``widget`` is what the notebook shows."""

    def __init__(self, project: str | Path = "."):
        import plotly.graph_objects as go

        self.project = Path(project)
        summary = self.project / "metrics" / "summary.json"
        if not summary.is_file():
            raise EdgekitError(f"{summary} does not exist", "run `dvc repro` (or `dvc pull`) in the project first")
        self.results = load_results(self.project)
        self.rows = rows_of(self.results)
        self.recommended = (self.results.summary.get("recommendation") or {}).get("variant")
        self.stage = self.results.decision["target_stage"]

        def choices(key: str) -> list[str]:
            return [ALL, *sorted({str(r[key]) for r in self.rows if r[key] is not None})]

        self.runtime = widgets.Dropdown(options=choices("runtime"), description="runtime")
        self.precision = widgets.Dropdown(options=choices("precision"), description="precision")
        self.verdict = widgets.Dropdown(options=choices("verdict"), description="verdict")
        self.sort_by = widgets.Dropdown(options=COLUMNS, value="speedup", description="sort by")
        self.descending = widgets.ToggleButton(value=True, description="descending", icon="sort-amount-desc")
        self.table = widgets.HTML()
        self.chosen = widgets.Dropdown(description="variant")
        self.detail = widgets.HTML()
        self.figure = go.FigureWidget(layout=dict(
            title=f"p50 latency (batch 1) against accuracy retention · {self.stage}", xaxis_title="p50 latency (ms), log scale",
            yaxis_title="accuracy retention vs the baseline", xaxis_type="log", height=420, width=640,
            margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.2)))
        for name in ("variants", "frontier (latency, retention)", "recommended"):
            self.figure.add_scatter(x=[], y=[], name=name, mode="markers" if name == "variants" else "lines+markers" if name != "recommended" else "markers")
        self.latency = go.FigureWidget(layout=dict(title="latency per call, every repeat pooled", yaxis_title="ms",
                                                   height=320, width=640, margin=dict(l=60, r=20, t=50, b=40)))
        self.figure.data[0].on_click(self._clicked)
        self.exp_a, self.exp_b = widgets.Dropdown(description="experiment"), widgets.Dropdown(description="against")
        self.list_experiments = widgets.Button(description="dvc exp show", tooltip="list this project's experiments")
        self.comparison = widgets.HTML()
        self.list_experiments.on_click(lambda _: self.load_experiments())
        for control in (self.exp_a, self.exp_b):
            control.observe(lambda _: self._compare_chosen(), names="value")

        for control in (self.runtime, self.precision, self.verdict, self.sort_by, self.descending):
            control.observe(lambda _: self.refresh(), names="value")
        self.chosen.observe(lambda change: self._show(change["new"]), names="value")
        filters = widgets.HBox([self.runtime, self.precision, self.verdict])
        order = widgets.HBox([self.sort_by, self.descending])
        experiments_box = widgets.VBox([widgets.HBox([self.list_experiments, self.exp_a, self.exp_b]), self.comparison])
        self.widget = widgets.VBox([filters, order, self.table, self.figure, self.chosen, self.detail, self.latency,
                                    widgets.HTML("<h4>experiments side by side</h4>"), experiments_box])
        self.refresh()
        self.select(self.recommended or (self.visible[0]["variant"] if self.visible else None))

    # -- table and plot --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Apply the filters and the sort to the table, the plot and the variant choices."""
        chosen = filter_rows(self.rows, self.runtime.value, self.precision.value, self.verdict.value)
        self.visible = sort_rows(chosen, self.sort_by.value, self.descending.value)
        self.table.value = table_html(self.visible, self.recommended)
        measured = [r for r in self.visible if r["status"] == "ok" and r["p50_ms"] is not None and r["retention"] is not None]
        front = latency_frontier(measured)
        star = [r for r in measured if r["variant"] == self.recommended]
        biggest = max((r["model_memory_mb"] or 0 for r in measured), default=1) or 1
        with self.figure.batch_update():
            points, line, best = self.figure.data
            points.update(x=[r["p50_ms"] for r in measured], y=[r["retention"] for r in measured],
                          text=[r["variant"] for r in measured], customdata=[r["variant"] for r in measured],
                          hovertemplate="%{text}<br>p50 %{x:.3g} ms<br>retention %{y:.4f}<extra></extra>",
                          marker=dict(size=[8 + 32 * (r["model_memory_mb"] or 0) / biggest for r in measured],
                                      color=[_VERDICT_COLOURS.get(r["verdict"], "#57606a") for r in measured], opacity=0.75))
            line.update(x=[r["p50_ms"] for r in front], y=[r["retention"] for r in front], text=[r["variant"] for r in front],
                        hoverinfo="skip", line=dict(dash="dot", color="#0969da", shape="hv"), marker=dict(size=4, color="#0969da"))
            best.update(x=[r["p50_ms"] for r in star], y=[r["retention"] for r in star], text=[r["variant"] for r in star],
                        marker=dict(symbol="star", size=18, color="#bf8700", line=dict(width=1, color="black")))
        current = self.chosen.value
        self.chosen.options = [r["variant"] for r in self.visible]
        if current in self.chosen.options:
            self.chosen.value = current

    def _clicked(self, trace, points, state) -> None:
        if points.point_inds:
            self.select(trace.customdata[points.point_inds[0]])

    def select(self, name: str | None) -> None:
        """Show ``name``'s detail (also what a click on its point does)."""
        if name is None:
            self.detail.value = "<i>no variant to show</i>"
            return
        if name not in self.results.summary["variants"]:
            raise EdgekitError(f"variant {name!r} is not in {self.project / 'metrics' / 'summary.json'}",
                               f"variants: {', '.join(self.results.summary['variants'])}")
        if name not in self.chosen.options:  # filtered out: clear the filters that hide it
            self.runtime.value = self.precision.value = self.verdict.value = ALL
        if self.chosen.value == name:
            self._show(name)
        else:
            self.chosen.value = name  # its observer shows it

    def _show(self, name: str | None) -> None:
        if not name:
            return
        self.detail.value = detail_html(self.results, name)
        row = self.results.summary["variants"][name]
        with self.latency.batch_update():
            self.latency.data = []
            if row.get("status") == "ok":
                for scenario in self.results.scenarios_of(name):
                    self.latency.add_box(y=self.results.latency_samples(name, scenario), name=scenario, boxpoints=False)
            self.latency.layout.title = f"{name}: latency per call in each scenario, every repeat pooled"

    # -- experiments ----------------------------------------------------------------------------------
    def load_experiments(self) -> None:
        """Fill the two experiment choices from ``dvc exp show``."""
        self.experiments = experiments(self.project)
        names = list(self.experiments)
        self.exp_a.options, self.exp_b.options = names, names
        if len(names) > 1:
            self.exp_b.value = names[1]

    def _compare_chosen(self) -> None:
        if self.exp_a.value and self.exp_b.value:
            self.comparison.value = compare_html(self.experiments, self.exp_a.value, self.exp_b.value)

    def compare(self, a: str, b: str) -> widgets.HTML:
        """Two experiments of ``dvc exp show`` side by side (``workspace``, a branch or an experiment's name): every
        metric, parameter and dependency that differs."""
        return widgets.HTML(compare_html(experiments(self.project), a, b))

    # -- display --------------------------------------------------------------------------------------
    def static_html(self) -> str:
        """What a notebook without a widget frontend shows: the table, the plot as an image, the detail."""
        return (f'<div class="edgekit-view"><h4>{len(self.rows)} variants · {html.escape(self.stage)} · recommended: '
                f'{html.escape(self.recommended or "none")}</h4>{table_html(self.visible, self.recommended)}'
                f'<img alt="Pareto plot" src="data:image/png;base64,{pareto_png(self.rows, self.recommended)}"/>'
                f'{self.detail.value}</div>')

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        return {**bundle, "text/html": self.static_html()}


def table_html(rows: list[dict[str, Any]], recommended: str | None) -> str:
    body = []
    for r in rows:
        values = [r[key] for _, key in COLUMNS]
        values[0] = r["variant"] + (" ★" if r["variant"] == recommended else "")
        values[-1] = "yes" if r["pareto"] else ""
        body.append(values)
    return html_table([label for label, _ in COLUMNS], body)


def detail_html(results: Results, name: str) -> str:
    """One variant: figures, gates (with their evidence) for every stage, roofline and diagnosis."""
    row = results.summary["variants"][name]
    if row.get("status") != "ok":
        why = row.get("reason") or row.get("error") or row.get("status")
        return f"<h4>{html.escape(name)}: {html.escape(str(row.get('status')))}</h4><p>{html.escape(str(why))}</p>" + (
            f"<p>install: <code>{html.escape(row['install'])}</code></p>" if row.get("install") else "")
    ci = row.get("speedup_ci95") or [None, None]
    facts = [["speed-up", f"{row['speedup']}× (95% CI {ci[0]}–{ci[1]})"], ["p50 / p99", f"{row['p50_ms']} / {row['p99_ms']} ms"],
             ["accuracy retention", row.get("retention")], ["cosine to the baseline", f"mean {row.get('cosine_mean')}, min {row.get('cosine_min')}"],
             ["model memory", f"{row.get('model_memory_mb')} MB (peak RSS {row.get('peak_rss_mb')} MB)"], ["size", f"{row.get('size_mb')} MB"],
             ["load", f"{row.get('load_s')} s"], ["fairness score", row.get("fairness_score")]]
    parts = [f"<h4>{html.escape(name)} ({html.escape(row['runtime'])}, {html.escape(row['precision'])})</h4>", html_table(["", ""], facts)]
    for stage, verdict in results.gates["variants"].get(name, {}).items():
        view = GateVerdictView(verdict, name, stage)
        parts.append(f"<h4>{html.escape(view.title)}</h4>{view.body()}")
    roofline = row.get("roofline") or {}
    if roofline:
        parts.append("<h4>roofline</h4>" + html_table(["", ""], [[k, v] for k, v in roofline.items()]))
    diagnosis = (results.summary.get("diagnosis") or {}).get(name)
    if diagnosis:
        hints = "".join(f"<li>{html.escape(h)}</li>" for h in diagnosis.get("hints", []))
        parts.append(f"<h4>diagnosis: {html.escape(diagnosis['class'])}</h4><p>{html.escape(diagnosis['evidence'])}</p><ul>{hints}</ul>")
    return "".join(parts)


def pareto_png(rows: list[dict[str, Any]], recommended: str | None) -> str:
    """The Pareto plot as a base64 PNG (matplotlib), for outputs read without a widget frontend."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    measured = [r for r in rows if r["status"] == "ok" and r["p50_ms"] is not None and r["retention"] is not None]
    biggest = max((r["model_memory_mb"] or 0 for r in measured), default=1) or 1
    figure = Figure(figsize=(6.4, 4), dpi=90)
    axes = figure.subplots()
    axes.scatter([r["p50_ms"] for r in measured], [r["retention"] for r in measured],
                 s=[30 + 400 * (r["model_memory_mb"] or 0) / biggest for r in measured], alpha=0.6,
                 c=[_VERDICT_COLOURS.get(r["verdict"], "#57606a") for r in measured])
    front = latency_frontier(measured)
    axes.step([r["p50_ms"] for r in front], [r["retention"] for r in front], ":", where="post", color="#0969da",
              label="frontier (latency, retention)")
    for r in measured:
        axes.annotate(r["variant"] + (" ★" if r["variant"] == recommended else ""), (r["p50_ms"], r["retention"]), fontsize=7)
    axes.set(xscale="log", xlabel="p50 latency (ms), log scale", ylabel="accuracy retention vs the baseline")
    axes.legend(loc="lower right", fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def experiments(project: Path) -> dict[str, dict[str, Any]]:
    """``dvc exp show``'s rows by name (``workspace``, the baseline commit's short rev, each experiment's name)."""
    from dvc.api import exp_show

    rows = {}
    for row in exp_show(repo=str(project)):
        name = row.get("Experiment") or row.get("rev")
        rows.setdefault(str(name), row)
    return rows


def compare_html(rows: dict[str, dict[str, Any]], a: str, b: str) -> str:
    for name in (a, b):
        if name not in rows:
            raise EdgekitError(f"experiment {name!r} is not in `dvc exp show`", f"experiments: {', '.join(rows)}")
    skip = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
    keys = [k for k in rows[a] if k not in skip and rows[a].get(k) != rows[b].get(k)]
    keys += [k for k in rows[b] if k not in skip and k not in rows[a]]
    if not keys:
        return f"<p>{html.escape(a)} and {html.escape(b)} have the same metrics and parameters</p>"
    return html_table(["metric or parameter", a, b], [[k, rows[a].get(k), rows[b].get(k)] for k in keys])
