"""``BenchmarkExplorer``: the pipeline's variants in a notebook (ipywidgets, with plotly's FigureWidget).

The variants table (sorted by any column; filtered by runtime, precision and verdict), the Pareto plot of
latency against accuracy retention (marker area by model memory, the latency/retention frontier drawn, the
recommended variant starred; a click on a point selects it), and the selected variant's detail: its latency
distribution in every scenario, its gate verdicts with their evidence, its roofline and the diagnosis.
``compare(a, b)`` puts two experiments of ``dvc exp show`` side by side.

When the project also measures a decoder (``metrics/decoder_summary.json`` exists), these sit in an "encoders" tab
beside a "decoders" tab: the decoder variants' table (sorted and filtered the same way), decode speed-up against
KL divergence to the baseline (the speed-up/KL frontier drawn, the recommended variant starred; a click selects),
and the selected decoder variant's figures with their CIs and its gates for every stage. Without that file the
explorer is the encoders' alone, as it was before decoders were measured.

Everything is read from the pinned pipeline outputs (``metrics/summary.json``, ``outputs/gates.json``,
``outputs/benchmark/``, ``metrics/decoder_summary.json``), the files ``dvc repro`` writes and ``dvc pull`` fetches.

Without a widget frontend (papermill, nbconvert, a notebook viewer) the explorer's output carries a static
HTML alternative: the same table, the Pareto plot as an image and the recommended variant's gates; then the
same for the decoders when there are some.

Example:
    >>> from edgekit.notebook import BenchmarkExplorer
    >>> explorer = BenchmarkExplorer(".")      # the last expression of a cell: the explorer shows
    >>> explorer.select("ort-int8")
    >>> explorer.select_decoder("gguf-q4_k_m")  # decoder variants have their own names: "ov-int8" may be both
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
from edgekit.fsutil import read_json
from edgekit.layout import Layout
from edgekit.notebook.display import GateVerdictView, html_table
from edgekit.results import Results, load_results
from edgekit.tasks.generation.gates import GATES as DECODER_GATES

ALL = "(all)"
# column label, summary key
COLUMNS = [("variant", "variant"), ("runtime", "runtime"), ("precision", "precision"), ("verdict", "verdict"),
           ("speed-up", "speedup"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("retention", "retention"),
           ("cosine", "cosine_mean"), ("model MB", "model_memory_mb"), ("size MB", "size_mb"), ("Pareto (all objectives)", "pareto")]
# column label, decoder_summary.json row key
DECODER_COLUMNS = [("variant", "variant"), ("runtime", "runtime"), ("precision", "precision"), ("verdict", "verdict"),
                   ("decode tok/s", "decode_tokens_per_s"), ("decode speed-up (95% CI)", "decode_speedup"), ("TTFT ms", "ttft_ms"),
                   ("perplexity Δ", "perplexity_delta"), ("KL", "kl_mean"), ("top-1", "top1_agreement"),
                   ("model MB", "model_memory_mb"), ("size MB", "size_mb"), ("roofline efficiency", "decode_roofline_efficiency")]
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


def keep_choice(dropdown: widgets.Dropdown, names: list[str]) -> None:
    """Give ``dropdown`` these options, keeping its value when it is still one of them."""
    current = dropdown.value
    dropdown.options = names
    if current in names:
        dropdown.value = current


def choices(rows: list[dict[str, Any]], key: str) -> list[str]:
    """A filter's options: every value of ``key`` in ``rows``, after ``ALL``."""
    return [ALL, *sorted({str(r[key]) for r in rows if r[key] is not None})]


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
        self.runtime = widgets.Dropdown(options=choices(self.rows, "runtime"), description="runtime")
        self.precision = widgets.Dropdown(options=choices(self.rows, "precision"), description="precision")
        self.verdict = widgets.Dropdown(options=choices(self.rows, "verdict"), description="verdict")
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
        decoder_summary = Layout(self.project).decoder_summary
        self.decoders = DecoderSection(read_json(decoder_summary), decoder_summary) if decoder_summary.is_file() else None
        self.widget = self._lay_out([filters, order, self.table, self.figure, self.chosen, self.detail, self.latency],
                                    [widgets.HTML("<h4>experiments side by side</h4>"), experiments_box])
        self.refresh()
        self.select(self.recommended or (self.visible[0]["variant"] if self.visible else None))

    def _lay_out(self, encoders: list[widgets.Widget], experiments_part: list[widgets.Widget]) -> widgets.VBox:
        """The encoders' part and the decoders' side by side in tabs; the encoders' alone (as before decoders were
        measured) when the project has no decoder. The experiments' comparison, over both, below."""
        self.tabs = None
        if self.decoders is None:
            return widgets.VBox([*encoders, *experiments_part])
        self.tabs = widgets.Tab([widgets.VBox(encoders), self.decoders.widget], titles=("encoders", "decoders"))
        return widgets.VBox([self.tabs, *experiments_part])

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
        keep_choice(self.chosen, [r["variant"] for r in self.visible])

    def _clicked(self, trace, points, state) -> None:
        if points.point_inds:
            self.select(trace.customdata[points.point_inds[0]])

    def select(self, name: str | None) -> None:
        """Show encoder variant ``name``'s detail (also what a click on its point does); a decoder variant is
        ``select_decoder``'s.

        Raises:
            EdgekitError: ``name`` is not a variant of metrics/summary.json.
        """
        if name is None:
            self.detail.value = "<i>no variant to show</i>"
            return
        if name not in self.results.summary["variants"]:
            raise EdgekitError(f"variant {name!r} is not in {self.project / 'metrics' / 'summary.json'}",
                               f"variants: {', '.join(self.results.summary['variants'])}")
        if name not in self.chosen.options:  # filtered out: clear the filters that hide it
            self.runtime.value = self.precision.value = self.verdict.value = ALL
        if self.tabs is not None:
            self.tabs.selected_index = 0
        if self.chosen.value == name:
            self._show(name)
        else:
            self.chosen.value = name  # its observer shows it

    def select_decoder(self, name: str) -> None:
        """Show decoder variant ``name``'s detail in the decoders tab (also what a click on its point does). Decoder
        variants are named apart from the encoder's: ``select("ov-int8")`` is the encoder variant, ``select_decoder("ov-int8")``
        the decoder one.

        Raises:
            EdgekitError: the project measures no decoder (no metrics/decoder_summary.json), or ``name`` is not in it.
        """
        if self.decoders is None:
            raise EdgekitError(f"{Layout(self.project).decoder_summary} does not exist: this project measures no decoder",
                               "add a decoder: section to params.yaml and run `dvc repro` (or `dvc pull`)")
        self.decoders.select(name)
        self.tabs.selected_index = 1

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
        """What a notebook without a widget frontend shows: the table, the plot as an image, the detail; then the
        decoders' (see ``DecoderSection.static_html``) when the project has some."""
        decoders = self.decoders.static_html() if self.decoders is not None else ""
        return (f'<div class="edgekit-view"><h4>{len(self.rows)} variants · {html.escape(self.stage)} · recommended: '
                f'{html.escape(self.recommended or "none")}</h4>{table_html(self.visible, self.recommended)}'
                f'<img alt="Pareto plot" src="data:image/png;base64,{pareto_png(self.rows, self.recommended)}"/>'
                f'{self.detail.value}{decoders}</div>')

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
    measured = [r for r in rows if r["status"] == "ok" and r["p50_ms"] is not None and r["retention"] is not None]
    biggest = max((r["model_memory_mb"] or 0 for r in measured), default=1) or 1
    figure, axes = _static_axes()
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
    return _png(figure)


def _static_axes() -> tuple[Any, Any]:
    """A matplotlib figure (no display backend) and its axes, for a plot's static image."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4), dpi=90)
    return figure, figure.subplots()


def _png(figure: Any) -> str:
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


# -- decoders (metrics/decoder_summary.json, written by the decoder_select stage) ---------------------------
def decoder_verdict(verdict: dict[str, Any] | None) -> str | None:
    """A decoder stage verdict (``check_stage``'s ``{"passed", "gates"}``) in the encoders' words: pass, pass with
    warnings (a ``warn`` gate failed) or fail."""
    if verdict is None:
        return None
    if not verdict["passed"]:
        return "fail"
    return "pass with warnings" if any(not gate["passed"] for gate in verdict["gates"]) else "pass"


def decoder_rows_of(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per decoder variant: the decoder table's columns, the speed-up's CI, ``verdict`` for the summary's
    stage (a variant not measured has its status instead, e.g. skipped) and ``reason`` (why it was not measured)."""
    rows = []
    for row in summary["variants"]:
        flat = {key: row.get(key) for _, key in DECODER_COLUMNS}
        verdict = decoder_verdict((row.get("verdicts") or {}).get(summary["stage"])) if row.get("status") == "ok" else None
        flat.update(status=row.get("status"), reason=row.get("reason"), install=row.get("install"),
                    decode_speedup_ci95=row.get("decode_speedup_ci95"),
                    verdict=verdict or row.get("status"))
        rows.append(flat)
    return rows


def measured_decoders(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the decoder plot can place: measured, with a decode speed-up and a KL divergence."""
    return [r for r in rows if r["status"] == "ok" and r["decode_speedup"] is not None and r["kl_mean"] is not None]


def decode_frontier(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats on both decode speed-up (higher is better) and KL divergence to the baseline (lower
    is better), lowest KL first (so slowest first): the decoder plot's frontier."""
    front: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: (r["kl_mean"], -r["decode_speedup"])):
        if not front or row["decode_speedup"] > front[-1]["decode_speedup"]:
            front.append(row)
    return front


def kl_heights(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Where each row sits on the plot's log KL axis: its KL, except that a KL of 0 (the baseline against itself),
    which a log axis cannot show, sits a decade under the smallest positive one."""
    floor = min((r["kl_mean"] for r in rows if r["kl_mean"] > 0), default=1e-6) / 10
    return {r["variant"]: r["kl_mean"] if r["kl_mean"] > 0 else floor for r in rows}


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"  # 14318 tokens/s, not 1.432e+04
    return "n/a" if value is None else str(value)


def _with_ci(value: float | None, ci95: list[float] | None, unit: str = "") -> str | None:
    """``7.218× (95% CI 6.917–7.491)``; None without a value (an empty cell)."""
    if value is None:
        return None
    return f"{_number(value)}{unit}" + (f" (95% CI {_number(ci95[0])}–{_number(ci95[1])})" if ci95 else "")


def _install_html(command: str | None) -> str:
    return f"; install: <code>{html.escape(command)}</code>" if command else ""


def decoder_table_html(rows: list[dict[str, Any]], recommended: str | None) -> str:
    """The decoder table, then the variants in it that were not measured, each with its reason."""
    body = []
    for r in rows:
        cells = {key: r[key] for _, key in DECODER_COLUMNS}
        cells.update(variant=r["variant"] + (" ★" if r["variant"] == recommended else ""),
                     decode_speedup=_with_ci(r["decode_speedup"], r["decode_speedup_ci95"], "×"))
        body.append([cells[key] for _, key in DECODER_COLUMNS])
    missing = "".join(f"<li>{html.escape(r['variant'])} ({html.escape(str(r['status']))}): "
                      f"{html.escape(str(r['reason'] or 'no reason recorded'))}{_install_html(r.get('install'))}</li>"
                      for r in rows if r["status"] != "ok")
    return html_table([label for label, _ in DECODER_COLUMNS], body) + (f"<p>not measured:</p><ul>{missing}</ul>" if missing else "")


def decoder_gates_html(verdict: dict[str, Any], variant: str, stage: str) -> str:
    """One stage's decoder gates for one variant (``check_stage``'s verdict), laid out like the encoders'
    ``GateVerdictView``: each gate's result, its value against its bound, the estimate the value is (the point, or the
    end of the 95% CI on the failing side) and its action."""
    rows = []
    for gate in verdict.get("gates", []):
        direction = "min" if "min" in gate else "max"
        result = "pass" if gate["passed"] else "fail"
        estimate = gate.get("estimate", "point")
        if estimate == "ci":
            estimate += f" ({'lower' if direction == 'min' else 'upper'} end of the 95% CI)"
        rows.append([gate["gate"], f'<b style="color:{_VERDICT_COLOURS[result]}">{result}</b>', gate.get("value"),
                     "≥" if direction == "min" else "≤", gate.get(direction), estimate, gate.get("action"),
                     DECODER_GATES.get(gate["gate"], ("", "", ""))[2]])
    title = f"{variant} · {stage}: {decoder_verdict(verdict)}"
    table = html_table(["gate", "result", "value", "op", "bound", "estimate", "action", "what the value is"], rows, raw=frozenset({1}))
    return f"<h4>{html.escape(title)}</h4>{table}"


def _decoder_facts(row: dict[str, Any], bandwidth_gbs: float | None) -> list[list[Any]]:
    prompt = f"{row.get('prompt_length')}-token prompts"
    return [
        ["decode", f"{_with_ci(row.get('decode_tokens_per_s'), row.get('decode_tokens_per_s_ci95'))} tokens/s; "
                   f"p99 {_number(row.get('decode_ms_p99'))} ms per token"],
        ["decode speed-up", _with_ci(row.get("decode_speedup"), row.get("decode_speedup_ci95"), "×")],
        ["prefill", f"{_with_ci(row.get('prefill_tokens_per_s'), row.get('prefill_tokens_per_s_ci95'))} tokens/s at {prompt}; "
                    f"speed-up {_with_ci(row.get('prefill_speedup'), row.get('prefill_speedup_ci95'), '×')}"],
        ["time to first token", f"{_number(row.get('ttft_ms'))} ms (p50, {prompt})"],
        ["perplexity (held out)", _number(row.get("perplexity"))],
        ["perplexity Δ vs the baseline", _with_ci(row.get("perplexity_delta"), row.get("perplexity_delta_ci95"))],
        ["KL to the baseline", f"{_with_ci(row.get('kl_mean'), row.get('kl_mean_ci95'))} nats (mean over next tokens)"],
        ["top-1 agreement", _with_ci(row.get("top1_agreement"), row.get("top1_agreement_ci95"))],
        ["greedy continuations identical", _number(row.get("greedy_identical"))],
        ["model memory", f"{_number(row.get('model_memory_mb'))} MB (peak RSS {_number(row.get('peak_rss_mb'))} MB; "
                         f"reduction {_number(row.get('memory_reduction'))})"],
        ["size", f"{_number(row.get('size_mb'))} MB"],
        ["decode roofline efficiency", f"{_number(row.get('decode_roofline_efficiency'))} (tokens/s × weight bytes over the "
                                       f"measured {_number(bandwidth_gbs)} GB/s memory bandwidth)"],
        ["load", f"{_number(row.get('load_s'))} s"], ["busy timing processes", _number(row.get("busy_processes"))],
    ]


def decoder_detail_html(summary: dict[str, Any], name: str) -> str:
    """One decoder variant: its figures with their 95% CIs and its gates for every stage; or why it was not measured."""
    row = next(r for r in summary["variants"] if r["variant"] == name)
    if row.get("status") != "ok":
        why = row.get("reason") or row.get("status")
        return (f"<h4>{html.escape(name)}: {html.escape(str(row.get('status')))}</h4><p>{html.escape(str(why))}</p>"
                + (f"<p>install: <code>{html.escape(row['install'])}</code></p>" if row.get("install") else ""))
    baseline = " · the baseline" if name == summary.get("baseline") else ""
    parts = [f"<h4>{html.escape(name)} ({html.escape(row['runtime'])}, {html.escape(row['precision'])}){baseline}</h4>",
             html_table(["", ""], _decoder_facts(row, summary.get("memory_bandwidth_gbs")))]
    parts += [decoder_gates_html(verdict, name, stage) for stage, verdict in (row.get("verdicts") or {}).items()]
    return "".join(parts)


def _decoder_hover(row: dict[str, Any]) -> str:
    kl = _number(row["kl_mean"]) if row["kl_mean"] > 0 else "0 (drawn at the axis floor)"
    return (f"{html.escape(row['variant'])}<br>decode speed-up {_with_ci(row['decode_speedup'], row['decode_speedup_ci95'], '×')}"
            f"<br>KL {kl} nats<br>{html.escape(str(row['verdict']))}")


def _speedup_bars(rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """How far each row's 95% CI reaches below and above its speed-up (0 without a CI)."""
    below = [r["decode_speedup"] - r["decode_speedup_ci95"][0] if r["decode_speedup_ci95"] else 0 for r in rows]
    above = [r["decode_speedup_ci95"][1] - r["decode_speedup"] if r["decode_speedup_ci95"] else 0 for r in rows]
    return below, above


def decoder_png(rows: list[dict[str, Any]], recommended: str | None) -> str:
    """The decoder plot (decode speed-up against KL, the frontier, the recommendation) as a base64 PNG."""
    measured = measured_decoders(rows)
    heights = kl_heights(measured)
    biggest = max((r["model_memory_mb"] or 0 for r in measured), default=1) or 1
    figure, axes = _static_axes()
    speedups, kls = [r["decode_speedup"] for r in measured], [heights[r["variant"]] for r in measured]
    axes.errorbar(speedups, kls, xerr=_speedup_bars(measured), fmt="none", ecolor="#8c959f", elinewidth=0.8)
    axes.scatter(speedups, kls, s=[30 + 400 * (r["model_memory_mb"] or 0) / biggest for r in measured], alpha=0.6,
                 c=[_VERDICT_COLOURS.get(r["verdict"], "#57606a") for r in measured])
    front = decode_frontier(measured)
    axes.step([r["decode_speedup"] for r in front], [heights[r["variant"]] for r in front], ":", where="pre", color="#0969da",
              label="frontier (decode speed-up, KL)")
    for r in measured:
        label = r["variant"] + (" (KL 0)" if r["kl_mean"] == 0 else "") + (" ★" if r["variant"] == recommended else "")
        axes.annotate(label, (r["decode_speedup"], heights[r["variant"]]), fontsize=7)
    axes.set(yscale="log", xlabel="decode speed-up vs the baseline (×), 95% CI bars",
             ylabel="mean KL to the baseline (nats), log scale")
    axes.legend(loc="lower right", fontsize=7)
    return _png(figure)


class DecoderSection:
    """The decoder variants of ``metrics/decoder_summary.json``, the explorer's "decoders" tab (``widget``): their table
    (sorted by any column; filtered by runtime, precision and verdict), decode speed-up against KL divergence (marker
    area by model memory, the speed-up/KL frontier drawn, the recommended variant starred; a click on a point selects
    it), and the selected variant's figures and gates. ``BenchmarkExplorer`` makes it when the file exists."""

    def __init__(self, summary: dict[str, Any], source: Path):
        import plotly.graph_objects as go

        self.summary, self.source = summary, source
        self.rows = decoder_rows_of(summary)
        self.stage = summary["stage"]
        self.recommended = (summary.get("recommendation") or {}).get("variant")
        self.runtime = widgets.Dropdown(options=choices(self.rows, "runtime"), description="runtime")
        self.precision = widgets.Dropdown(options=choices(self.rows, "precision"), description="precision")
        self.verdict = widgets.Dropdown(options=choices(self.rows, "verdict"), description="verdict")
        self.sort_by = widgets.Dropdown(options=DECODER_COLUMNS, value="decode_speedup", description="sort by")
        self.descending = widgets.ToggleButton(value=True, description="descending", icon="sort-amount-desc")
        self.table, self.chosen, self.detail = widgets.HTML(), widgets.Dropdown(description="variant"), widgets.HTML()
        self.figure = go.FigureWidget(layout=dict(
            title=f"decode speed-up against KL divergence to the baseline · {self.stage}",
            xaxis_title="decode speed-up vs the baseline (×), 95% CI bars", yaxis_title="mean KL (nats), log scale; lower is better",
            yaxis_type="log", height=420, width=640,
            margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.2)))
        for name, mode in (("variants", "markers"), ("frontier (decode speed-up, KL)", "lines+markers"), ("recommended", "markers")):
            self.figure.add_scatter(x=[], y=[], name=name, mode=mode)
        self.figure.data[0].on_click(self._clicked)
        for control in (self.runtime, self.precision, self.verdict, self.sort_by, self.descending):
            control.observe(lambda _: self.refresh(), names="value")
        self.chosen.observe(lambda change: self._show(change["new"]), names="value")
        filters = widgets.HBox([self.runtime, self.precision, self.verdict])
        order = widgets.HBox([self.sort_by, self.descending])
        self.widget = widgets.VBox([filters, order, self.table, self.figure, self.chosen, self.detail])
        self.refresh()
        self.select(self.recommended or (self.visible[0]["variant"] if self.visible else None))

    def refresh(self) -> None:
        """Apply the filters and the sort to the table, the plot and the variant choices."""
        chosen = filter_rows(self.rows, self.runtime.value, self.precision.value, self.verdict.value)
        self.visible = sort_rows(chosen, self.sort_by.value, self.descending.value)
        self.table.value = decoder_table_html(self.visible, self.recommended)
        measured = measured_decoders(self.visible)
        heights, front = kl_heights(measured), decode_frontier(measured)
        star = [r for r in measured if r["variant"] == self.recommended]
        biggest = max((r["model_memory_mb"] or 0 for r in measured), default=1) or 1
        below, above = _speedup_bars(measured)
        with self.figure.batch_update():
            points, line, best = self.figure.data
            points.update(x=[r["decode_speedup"] for r in measured], y=[heights[r["variant"]] for r in measured],
                          text=[r["variant"] for r in measured], customdata=[r["variant"] for r in measured],
                          hovertext=[_decoder_hover(r) for r in measured], hovertemplate="%{hovertext}<extra></extra>",
                          error_x=dict(type="data", symmetric=False, array=above, arrayminus=below, thickness=1, width=0,
                                       color="#8c959f"),
                          marker=dict(size=[8 + 32 * (r["model_memory_mb"] or 0) / biggest for r in measured],
                                      color=[_VERDICT_COLOURS.get(r["verdict"], "#57606a") for r in measured], opacity=0.75))
            # "vh": a variant at least as fast as a speed-up between two frontier points has at best the faster one's KL
            line.update(x=[r["decode_speedup"] for r in front], y=[heights[r["variant"]] for r in front],
                        text=[r["variant"] for r in front], hoverinfo="skip", line=dict(dash="dot", color="#0969da", shape="vh"),
                        marker=dict(size=4, color="#0969da"))
            best.update(x=[r["decode_speedup"] for r in star], y=[heights[r["variant"]] for r in star],
                        text=[r["variant"] for r in star],
                        marker=dict(symbol="star", size=18, color="#bf8700", line=dict(width=1, color="black")))
        keep_choice(self.chosen, [r["variant"] for r in self.visible])

    def _clicked(self, trace, points, state) -> None:
        if points.point_inds:
            self.select(trace.customdata[points.point_inds[0]])

    def select(self, name: str | None) -> None:
        """Show decoder variant ``name``'s detail (also what a click on its point does).

        Raises:
            EdgekitError: ``name`` is not a variant of metrics/decoder_summary.json.
        """
        if name is None:
            self.detail.value = "<i>no decoder variant to show</i>"
            return
        names = [r["variant"] for r in self.rows]
        if name not in names:
            raise EdgekitError(f"decoder variant {name!r} is not in {self.source}", f"decoder variants: {', '.join(names)}")
        if name not in self.chosen.options:  # filtered out: clear the filters that hide it
            self.runtime.value = self.precision.value = self.verdict.value = ALL
        if self.chosen.value == name:
            self._show(name)
        else:
            self.chosen.value = name  # its observer shows it

    def _show(self, name: str | None) -> None:
        if name:
            self.detail.value = decoder_detail_html(self.summary, name)

    def static_html(self) -> str:
        """The decoders without a widget frontend: the recommendation and why, the table (with the variants not measured
        and their reasons), the plot as an image and the selected variant's detail (the recommended one's, unless
        another was selected)."""
        why = (self.summary.get("recommendation") or {}).get("why") or ""
        plot = decoder_png(self.rows, self.recommended)
        return (f'<h4>{len(self.rows)} decoder variants · {html.escape(self.stage)} · recommended: '
                f'{html.escape(self.recommended or "none")}</h4><p>{html.escape(why)}</p>{decoder_table_html(self.visible, self.recommended)}'
                f'<img alt="decode speed-up against KL divergence" src="data:image/png;base64,{plot}"/>{self.detail.value}')
