"""Rich displays for Jupyter: the pipeline's results, one variant, a gate verdict, the registry and one of its
versions. Each is a small object over the same dictionaries the CLI prints with ``--json``; Jupyter shows its
HTML, a terminal its text, and ``application/json`` carries the data itself.

Example:
    >>> from edgekit import notebook
    >>> notebook.registry(".")                       # in a cell: the models, versions and stages as a table
    >>> notebook.version(".", "all-minilm-l6-v2@v1.0.0")
"""

from __future__ import annotations

import html
import json
from typing import Any

from edgekit.registry.cli import HISTORY_COLUMNS, history_rows

_RESULT_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "warn": "#9a6700", "skip": "#57606a"}
_STYLE = ("<style>.edgekit-view table{border-collapse:collapse;font-size:12px;margin:4px 0}"
          ".edgekit-view th,.edgekit-view td{border:1px solid #d0d7de;padding:2px 6px;text-align:left}"
          ".edgekit-view th{background:#f6f8fa}.edgekit-view h4{margin:6px 0 2px}</style>")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def html_table(headers: list[str], rows: list[list[Any]], raw: frozenset[int] = frozenset()) -> str:
    """An HTML table; the columns in ``raw`` hold HTML already escaped by the caller."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{value if i in raw else _cell(value)}</td>" for i, value in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in cells)


def _result(result: str) -> str:
    colour = _RESULT_COLOURS.get(result, "#57606a")
    return f'<b style="color:{colour}">{html.escape(result)}</b>'


class View:
    """A display: ``title``, ``text`` for a terminal, ``body`` (HTML) for Jupyter, ``data`` for programs."""

    title = ""

    def __init__(self, data: Any):
        self.data = data

    def body(self) -> str:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return f'{_STYLE}<div class="edgekit-view"><h4>{html.escape(self.title)}</h4>{self.body()}</div>'

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return {"text/plain": repr(self), "text/html": self._repr_html_(),
                "application/json": json.loads(json.dumps(self.data, default=str))}

    def __repr__(self) -> str:
        return f"{self.title}\n{self.text()}"


class TableView(View):
    """A view that is one table: ``HEADERS`` and ``_rows()``."""

    HEADERS: list[str] = []

    def _rows(self) -> list[list[Any]]:
        raise NotImplementedError

    def body(self) -> str:
        return html_table(self.HEADERS, self._rows())

    def text(self) -> str:
        return text_table(self.HEADERS, self._rows())


class GateVerdictView(TableView):
    """One stage's gates for one variant: each gate's value against its threshold, its result and its evidence (the
    files the value was read from)."""

    HEADERS = ["gate", "result", "value", "op", "threshold", "action", "detail", "evidence"]

    def __init__(self, verdict: dict[str, Any], variant: str, stage: str):
        super().__init__(verdict)
        self.title = f"{variant} · {stage}: {verdict.get('verdict', 'no verdict')}"

    def _rows(self) -> list[list[Any]]:
        return [[g["gate"], g["result"], g.get("value"), g.get("op"), g.get("threshold"), g.get("action"), g.get("detail"),
                 ", ".join(g.get("evidence") or [])] for g in self.data.get("gates", [])]

    def body(self) -> str:
        rows = [[row[0], _result(row[1]), *row[2:]] for row in self._rows()]
        return html_table(self.HEADERS, rows, raw=frozenset({1}))


class VersionView(View):
    """A registry version (``edgekit.registry.describe``): stage, approvals, code, files and its gate verdicts."""

    def __init__(self, described: dict[str, Any]):
        super().__init__(described)
        self.title = f"{described['model']}@{described['version']} ({described['variant']}) · {described['stage'] or 'registered'}"

    def _facts(self) -> list[list[Any]]:
        d, record = self.data, self.data["record"]
        approvals = "; ".join(f"{stage}: {', '.join(who)}" for stage, who in d["approvals"].items()) or "none"
        return [["stage", d["stage"] or "registered"], ["approvals", approvals], ["code commit", d["commit"]],
                ["record sha256", d["record_sha256"]], ["runtime", f"{record['runtime']} ({record['precision']})"],
                ["host", record["hardware"]["cpu_model"]], ["policy", f"{record['gates']['policy']['name']} {record['gates']['policy']['version']}"],
                ["files", ", ".join(sorted(record["files"]))]]

    def _verdicts(self) -> list[GateVerdictView]:
        return [GateVerdictView(verdict, self.data["variant"], stage) for stage, verdict in self.data["record"]["gates"]["verdicts"].items()]

    def body(self) -> str:
        gates = "".join(f"<h4>{html.escape(v.title)}</h4>{v.body()}" for v in self._verdicts())
        return html_table(["", ""], self._facts()) + gates

    def text(self) -> str:
        return "\n\n".join([text_table(["", ""], self._facts()), *(f"{v.title}\n{v.text()}" for v in self._verdicts())])


class RegistryView(View):
    """The registry (``edgekit.registry.show``): for each model, which version holds each stage, and its versions."""

    HEADERS = ["version", "variant", "stage", "approvals", "entered", "commit"]

    def __init__(self, shown: dict[str, Any]):
        super().__init__(shown)
        self.title = f"registry at event {shown['head']['seq']} ({len(shown['models'])} model(s))"

    def _models(self) -> list[tuple[str, str, list[list[Any]]]]:
        out = []
        for name, model in self.data["models"].items():
            holders = ", ".join(f"{stage}: {version or '-'}" for stage, version in model["stages"].items())
            rows = [[v["version"], v["variant"], v["stage"] or "registered",
                     "; ".join(f"{s}: {', '.join(who)}" for s, who in v["approvals"].items()), v["entered_time"], v["commit"][:12]]
                    for v in reversed(model["versions"])]
            out.append((name, f"{name} · latest {model['latest']} · {holders}", rows))
        return out

    def body(self) -> str:
        return "".join(f"<h4>{html.escape(heading)}</h4>{html_table(self.HEADERS, rows)}" for _, heading, rows in self._models())

    def text(self) -> str:
        return "\n\n".join(f"{heading}\n{text_table(self.HEADERS, rows)}" for _, heading, rows in self._models())


class ResultsView(TableView):
    """The pipeline's variants side by side (``metrics/summary.json``), the recommended one first, each with its
    verdict for the target stage; a skipped variant shows why and its install command."""

    HEADERS = ["variant", "runtime", "precision", "status", "verdict", "speed-up", "95% CI", "p50 ms", "p99 ms", "retention",
               "model MB", "size MB"]

    def __init__(self, summary: dict[str, Any], stage: str | None = None):
        super().__init__(summary)
        self.recommended = (summary.get("recommendation") or {}).get("variant")
        rows = summary.get("variants", {})
        self.stage = stage or next((r.get("target_stage") for r in rows.values() if r.get("target_stage")), "production")
        self.title = f"{len(rows)} variants · {self.stage} · recommended: {self.recommended or 'none'}"

    def _rows(self) -> list[list[Any]]:
        order = sorted(self.data.get("variants", {}).items(), key=lambda item: (item[0] != self.recommended, -(item[1].get("speedup") or 0)))
        out = []
        for name, row in order:
            if row.get("status") != "ok":
                why = f"{row.get('reason') or row.get('error') or ''} {row.get('install') or ''}".strip()
                out.append([name, row.get("runtime"), row.get("precision"), row.get("status"), why, None, None, None, None, None, None, None])
                continue
            ci = row.get("speedup_ci95") or [None, None]
            out.append([name + (" ★" if name == self.recommended else ""), row.get("runtime"), row.get("precision"), "ok",
                        (row.get("verdicts") or {}).get(self.stage), row.get("speedup"),
                        f"{ci[0]:.3g}–{ci[1]:.3g}" if None not in ci else None, row.get("p50_ms"), row.get("p99_ms"),
                        row.get("retention"), row.get("model_memory_mb"), row.get("size_mb")])
        return out

    def body(self) -> str:
        reason = (self.data.get("recommendation") or {}).get("reason")
        return super().body() + (f"<p>{html.escape(reason)}</p>" if reason else "")


class VariantView(View):
    """One variant's row of the summary with its gate verdicts (``outputs/gates.json``) for every stage."""

    def __init__(self, name: str, row: dict[str, Any], gates: dict[str, Any]):
        super().__init__({"row": row, "gates": gates})
        self.name = name
        self.title = f"{name} ({row.get('runtime')}, {row.get('precision')}): {row.get('status')}"

    def _facts(self) -> list[list[Any]]:
        row = self.data["row"]
        keys = ["speedup", "speedup_ci95", "p50_ms", "p99_ms", "retention", "cosine_mean", "fairness_score", "model_memory_mb",
                "peak_rss_mb", "size_mb", "load_s", "unstable_scenarios", "reason", "install", "error"]
        return [[k, json.dumps(row[k]) if isinstance(row[k], list) else row[k]] for k in keys if k in row]

    def _verdicts(self) -> list[GateVerdictView]:
        return [GateVerdictView(verdict, self.name, stage) for stage, verdict in self.data["gates"].items()]

    def body(self) -> str:
        return html_table(["", ""], self._facts()) + "".join(f"<h4>{html.escape(v.title)}</h4>{v.body()}" for v in self._verdicts())

    def text(self) -> str:
        return "\n\n".join([text_table(["", ""], self._facts()), *(f"{v.title}\n{v.text()}" for v in self._verdicts())])


class BenchmarkView(TableView):
    """A benchmark stage's record (``edgekit.api.benchmark``): each scenario's p50 and p99 with its CI and throughput."""

    HEADERS = ["scenario", "p50 ms", "95% CI", "p99 ms", "items/s", "processes", "unstable"]

    def __init__(self, variant: str, record: dict[str, Any]):
        super().__init__(record)
        reason = record.get("reason") or record.get("error")
        self.title = f"benchmark {variant}: {record.get('status')}" + (f" ({reason})" if reason else "")

    def _rows(self) -> list[list[Any]]:
        return [[key, s["p50_ms"], f"{s['p50_ci95_ms'][0]:.4g}–{s['p50_ci95_ms'][1]:.4g}", s["p99_ms"], s["items_per_s"], s["repeats"],
                 "; ".join(s["unstable_reasons"])] for key, s in self.data.get("scenarios", {}).items()]


class ServingView(TableView):
    """What servers saw of a version (``edgekit.registry.observations``): each ``edgekit monitor`` summary, live
    figures beside the benchmark's, with its drift verdict, and each blue-green ramp's outcome."""

    HEADERS = ["seq", "event", "time", "answered", "error rate", "per", "live p50 ms", "live p99 ms", "bench p50 ms", "bench p99 ms",
               "p99 live/bench", "drift / outcome"]

    def __init__(self, events: list[dict[str, Any]], ref: str | None = None):
        super().__init__(events)
        alarms = sum(bool(e.get("summary", {}).get("drift", {}).get("alarm")) for e in events)
        self.title = f"{len(events)} serving observation(s)" + (f" of {ref}" if ref else "") + (f", {alarms} drift alarm(s)" if alarms else "")

    def _rows(self) -> list[list[Any]]:
        return [self._telemetry(e) if e["type"] == "telemetry" else self._ramp(e) for e in self.data]

    @staticmethod
    def _telemetry(event: dict[str, Any]) -> list[Any]:
        summary = event.get("summary", {})
        live, bench, drift = summary.get("live", {}), summary.get("benchmark", {}), summary.get("drift", {})
        verdict = "ALARM" if drift.get("alarm") else (drift.get("status") or "-")
        if "completion_tokens" in live:  # a decoder: per output token (a request's latency depends on its max_tokens)
            return [event["seq"], "telemetry", event["time"], live.get("answered"), live.get("error_rate"), "output token",
                    live.get("tpot_p50_ms"), live.get("tpot_p99_ms"), bench.get("tpot_p50_ms"), bench.get("tpot_p99_ms"),
                    summary.get("tpot_p99_live_over_benchmark"), verdict]
        return [event["seq"], "telemetry", event["time"], live.get("answered"), live.get("error_rate"), "request", live.get("p50_ms"),
                live.get("p99_ms"), bench.get("p50_ms"), bench.get("p99_ms"), summary.get("p99_live_over_benchmark"), verdict]

    @staticmethod
    def _ramp(event: dict[str, Any]) -> list[Any]:
        steps = [s for s in event.get("evidence", {}).get("timeline", []) if "requests" in s]
        last = steps[-1] if steps else {}
        outcome = f"ramp {event.get('outcome')} vs {event.get('against')}" + (f": {event['reason']}" if event.get("reason") else "")
        return [event["seq"], "ramp", event["time"], sum(s["requests"] for s in steps), last.get("error_rate"), "request",
                last.get("p50_ms"), last.get("p99_ms"), None, None, None, outcome]

    def body(self) -> str:
        rows = [[*row[:-1], f'<b style="color:#cf222e">{html.escape(str(row[-1]))}</b>' if row[-1] == "ALARM" or "rolled_back" in str(row[-1])
                 else _cell(row[-1])] for row in self._rows()]
        return html_table(self.HEADERS, rows, raw=frozenset({len(self.HEADERS) - 1}))


class HistoryView(TableView):
    """Registry events (``edgekit.registry.history``), oldest first, in the CLI's columns."""

    HEADERS = HISTORY_COLUMNS

    def __init__(self, events: list[dict[str, Any]], ref: str | None = None):
        super().__init__(events)
        self.title = f"{len(events)} registry event(s)" + (f" of {ref}" if ref else "")

    def _rows(self) -> list[list[Any]]:
        return history_rows(self.data)
