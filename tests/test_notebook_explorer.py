"""``BenchmarkExplorer`` without a browser, on real pipeline measurements (the report fixture) and on a real
DVC project with an experiment: what the table, the plot and the detail show after filtering, sorting and a
click on a point, what a notebook without a widget frontend keeps, and two experiments side by side. Then the
decoders' tab, on the report fixture plus a real metrics/decoder_summary.json (with one variant skipped added)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import ipywidgets as widgets
import pytest
from plotly.callbacks import Points

from edgekit.errors import EdgekitError
from edgekit.fsutil import read_json
from edgekit.notebook import BenchmarkExplorer
from edgekit.notebook.explorer import ALL, DECODER_COLUMNS, compare_html, decode_frontier, decoder_verdict, experiments
from edgekit.results import load_results

FIXTURE = Path(__file__).parent / "fixtures" / "report_project"
# a decoder_select output of a real run, plus a variant skipped for a missing runtime
DECODER_SUMMARY = Path(__file__).parent / "fixtures" / "decoder_summary.json"


@pytest.fixture(scope="module")
def explorer() -> BenchmarkExplorer:
    return BenchmarkExplorer(FIXTURE)


def table_variants(explorer: BenchmarkExplorer) -> list[str]:
    return [re.sub(r"<.*?>", "", row).removesuffix(" ★") for row in re.findall(r"<tr><td>(.*?)</td>", explorer.table.value)]


def reset(explorer: BenchmarkExplorer) -> None:
    explorer.runtime.value = explorer.precision.value = explorer.verdict.value = ALL
    explorer.sort_by.value, explorer.descending.value = "speedup", True


def test_the_table_and_the_plot_show_every_variant_the_frontier_and_the_recommendation(explorer):
    reset(explorer)
    summary = read_json(FIXTURE / "metrics" / "summary.json")
    variants = summary["variants"]
    assert sorted(table_variants(explorer)) == sorted(variants)
    measured = {n for n, row in variants.items() if row["status"] == "ok"}
    points, front, star = explorer.figure.data
    assert set(points.customdata) == measured
    for name, x, y in zip(points.customdata, points.x, points.y, strict=True):
        assert (x, y) == (variants[name]["p50_ms"], variants[name]["retention"])
    # the frontier: every measured variant that no other is both faster and more accurate than
    beaten = {n for n in measured for m in measured if m != n and variants[m]["p50_ms"] <= variants[n]["p50_ms"]
              and variants[m]["retention"] >= variants[n]["retention"]
              and (variants[m]["p50_ms"], variants[m]["retention"]) != (variants[n]["p50_ms"], variants[n]["retention"])}
    assert list(front.text) == sorted(measured - beaten, key=lambda n: variants[n]["p50_ms"]) and 1 < len(front.text) < len(measured)
    assert all(retention < following for retention, following in zip(front.y, front.y[1:], strict=False))
    assert list(star.text) == [summary["recommendation"]["variant"]]
    sizes = dict(zip(points.customdata, points.marker.size, strict=True))  # marker area grows with model memory
    by_memory = sorted(measured, key=lambda n: variants[n]["model_memory_mb"])
    assert sizes[by_memory[0]] < sizes[by_memory[-1]]


def test_filters_and_sorting_change_the_table_the_plot_and_the_choices(explorer):
    reset(explorer)
    variants = read_json(FIXTURE / "metrics" / "summary.json")["variants"]
    explorer.runtime.value = "openvino"
    shown = table_variants(explorer)
    assert shown and {variants[n]["runtime"] for n in shown} == {"openvino"}
    assert set(explorer.figure.data[0].customdata) <= set(shown) and list(explorer.chosen.options) == shown
    explorer.runtime.value, explorer.verdict.value = ALL, "fail"
    assert {variants[n]["verdicts"]["production"] for n in table_variants(explorer)} == {"fail"}
    explorer.verdict.value, explorer.precision.value = ALL, "int8"
    assert {variants[n]["precision"] for n in table_variants(explorer)} == {"int8"}
    explorer.precision.value, explorer.sort_by.value, explorer.descending.value = ALL, "p50_ms", False
    latencies = [variants[n].get("p50_ms") for n in table_variants(explorer)]
    timed = [v for v in latencies if v is not None]
    assert timed == sorted(timed) and latencies[: len(timed)] == timed  # variants not timed go last
    explorer.descending.value = True
    assert [variants[n].get("p50_ms") for n in table_variants(explorer)][: len(timed)] == sorted(timed, reverse=True)


def test_a_click_on_a_point_shows_that_variant_s_latencies_gates_with_evidence_roofline_and_diagnosis(explorer):
    reset(explorer)
    results = load_results(FIXTURE)
    points = explorer.figure.data[0]
    index = list(points.customdata).index("gguf-q4_k_m")
    explorer._clicked(points, Points(point_inds=[index], xs=[points.x[index]], ys=[points.y[index]], trace_name="variants", trace_index=0), None)
    assert explorer.chosen.value == "gguf-q4_k_m"
    page = explorer.detail.value
    for stage, verdict in results.gates["variants"]["gguf-q4_k_m"].items():
        assert f"gguf-q4_k_m · {stage}: {verdict['verdict']}" in page
        for gate in verdict["gates"]:
            assert all(path in page for path in gate["evidence"])
    assert "<h4>roofline</h4>" in page and results.summary["diagnosis"]["gguf-q4_k_m"]["class"] in page
    boxes = {box.name: list(box.y) for box in explorer.latency.data}
    assert boxes == {s: results.latency_samples("gguf-q4_k_m", s) for s in results.scenarios_of("gguf-q4_k_m")}


def test_selecting_a_filtered_out_variant_clears_the_filters_and_an_unknown_one_is_refused(explorer):
    reset(explorer)
    explorer.runtime.value = "llamacpp"
    explorer.select("ort-int8")
    assert explorer.runtime.value == ALL and explorer.chosen.value == "ort-int8" and "ort-int8 (onnxruntime, int8)" in explorer.detail.value
    with pytest.raises(EdgekitError, match="variant 'nope' is not in .*variants: "):
        explorer.select("nope")


def test_without_a_widget_frontend_the_output_keeps_the_table_the_plot_and_the_detail(explorer):
    reset(explorer)
    bundle = explorer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    static = bundle["text/html"]
    assert '<img alt="Pareto plot" src="data:image/png;base64,iVBOR' in static  # a PNG
    assert all(name in static for name in read_json(FIXTURE / "metrics" / "summary.json")["variants"])
    assert explorer.detail.value in static


def test_a_project_without_results_says_how_to_make_them(tmp_path):
    with pytest.raises(EdgekitError, match="summary.json does not exist.*dvc repro"):
        BenchmarkExplorer(tmp_path)


MAKE = """\
import json, os, yaml
params = yaml.safe_load(open("params.yaml"))
os.makedirs("metrics", exist_ok=True)
json.dump({"variants": {"ort-int8": {"speedup": params["threads"] * 1.5}}, "recommended": "ort-int8"}, open("metrics/decision.json", "w"))
"""
PIPELINE = """\
stages:
  make:
    cmd: python make.py
    deps: [make.py]
    params: [threads]
    metrics: [metrics/decision.json]
"""


def test_two_experiments_side_by_side_show_what_differs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")

    def run(*args: str) -> None:
        done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    run("git", "init", "-q")
    run("git", "config", "user.email", "t@example.com")
    run("git", "config", "user.name", "t")
    run("dvc", "init", "-q")
    (tmp_path / "params.yaml").write_text("threads: 1\n")
    (tmp_path / "make.py").write_text(MAKE)
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    run("dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    run("dvc", "exp", "run", "-q", "-S", "threads=2", "-n", "two-threads")
    rows = experiments(tmp_path)
    assert {"workspace", "two-threads"} <= set(rows)
    branch = next(name for name in rows if name not in ("workspace", "two-threads"))
    page = compare_html(rows, branch, "two-threads")
    found = {cells[0]: cells[1:] for cells in (re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", page)) if cells}
    assert found == {"variants.ort-int8.speedup": ["1.5", "3"], "threads": ["1", "2"]}
    assert "have the same metrics" in compare_html(rows, "workspace", "two-threads")
    with pytest.raises(EdgekitError, match="experiment 'nope' is not in `dvc exp show`"):
        compare_html(rows, "nope", "workspace")


# -- decoders ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def decoder_project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("decoders") / "project"
    shutil.copytree(FIXTURE, project)
    shutil.copy(DECODER_SUMMARY, project / "metrics" / "decoder_summary.json")
    return project


@pytest.fixture(scope="module")
def decoder_explorer(decoder_project) -> BenchmarkExplorer:
    return BenchmarkExplorer(decoder_project)


def reset_decoders(explorer: BenchmarkExplorer) -> None:
    section = explorer.decoders
    section.runtime.value = section.precision.value = section.verdict.value = ALL
    section.sort_by.value, section.descending.value = "decode_speedup", True


def table_cells(page: str) -> dict[str, list[str]]:
    """A table's rows by their first cell (the variant, without its star)."""
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", page)]
    return {row[0].removesuffix(" ★"): row[1:] for row in rows if row}


def shown(value) -> str:
    """A number as the explorer's tables print it."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def test_the_decoder_table_shows_every_decoder_variant_its_verdict_and_figures_and_why_one_was_not_measured(decoder_explorer):
    reset_decoders(decoder_explorer)
    summary = read_json(DECODER_SUMMARY)
    section = decoder_explorer.decoders
    assert re.findall(r"<th>(.*?)</th>", section.table.value) == [label for label, _ in DECODER_COLUMNS]
    rows = table_cells(section.table.value)
    assert list(rows) == table_variants(section) and set(rows) == {r["variant"] for r in summary["variants"]}
    assert re.search(r"<tr><td>(.*?)</td>", section.table.value).group(1) == summary["recommendation"]["variant"] + " ★"
    for row in summary["variants"]:
        runtime, precision, verdict, tokens_per_s, speedup, ttft, delta, kl, top1, memory, size, roofline = rows[row["variant"]]
        assert (runtime, precision) == (row["runtime"], row["precision"])
        if row["status"] != "ok":
            assert verdict == row["status"] and not any([tokens_per_s, speedup, ttft, delta, kl, top1, memory, size, roofline])
            continue
        assert verdict == ("pass" if row["verdicts"][summary["stage"]]["passed"] else "fail")
        low, high = row["decode_speedup_ci95"]
        assert speedup == f"{shown(row['decode_speedup'])}× (95% CI {shown(low)}–{shown(high)})"
        assert [tokens_per_s, ttft, delta, kl, top1, memory, size, roofline] == [shown(row[key]) for key in (
            "decode_tokens_per_s", "ttft_ms", "perplexity_delta", "kl_mean", "top1_agreement", "model_memory_mb", "size_mb",
            "decode_roofline_efficiency")]
    assert ("<li>ort-int8 (skipped): onnxruntime-genai not installed; install: <code>pip install -c requirements/lock.txt "
            "-e &quot;.[onnxruntime]&quot;</code></li>") in section.table.value


def test_decoder_filters_and_sorting_change_the_table_the_plot_and_the_choices(decoder_explorer):
    reset_decoders(decoder_explorer)
    section = decoder_explorer.decoders
    variants = {r["variant"]: r for r in read_json(DECODER_SUMMARY)["variants"]}
    speedups = [variants[n].get("decode_speedup") for n in table_variants(section)]
    assert speedups[:-1] == sorted(speedups[:-1], reverse=True) and speedups[-1] is None  # the skipped variant last
    section.sort_by.value, section.descending.value = "kl_mean", False
    kls = [variants[n].get("kl_mean") for n in table_variants(section)]
    assert kls[:-1] == sorted(kls[:-1]) and kls[-1] is None
    section.runtime.value = "openvino"
    shown_variants = table_variants(section)
    assert set(shown_variants) == {n for n, r in variants.items() if r["runtime"] == "openvino"} and len(shown_variants) > 1
    assert set(section.figure.data[0].customdata) == set(shown_variants) and list(section.chosen.options) == shown_variants
    section.runtime.value, section.verdict.value = ALL, "fail"
    assert set(table_variants(section)) == {n for n, r in variants.items() if r["status"] == "ok" and not r["verdicts"]["production"]["passed"]}
    section.verdict.value = "skipped"
    assert table_variants(section) == ["ort-int8"] and list(section.figure.data[0].customdata) == []
    section.verdict.value, section.precision.value = ALL, "int4"
    assert {variants[n]["precision"] for n in table_variants(section)} == {"int4"} and len(table_variants(section)) == 3


def test_the_decode_frontier_keeps_the_variants_no_other_is_both_faster_and_closer_to_the_baseline():
    def row(name: str, speedup: float, kl: float) -> dict:
        return {"variant": name, "decode_speedup": speedup, "kl_mean": kl}

    rows = [row("fastest", 4.0, 0.1), row("slower-and-farther", 1.5, 0.02), row("fast", 2.0, 0.01), row("as-close-faster", 3.0, 0.01),
            row("as-fast-farther", 3.0, 0.05), row("baseline", 1.0, 0.0), row("slower-than-the-baseline", 0.5, 0.001)]
    assert [r["variant"] for r in decode_frontier(rows)] == ["baseline", "as-close-faster", "fastest"]
    assert decode_frontier([]) == []


def test_a_decoder_variant_failing_only_a_warn_gate_passes_with_warnings_as_an_encoder_would():
    gates = [{"gate": "kl_mean", "max": 0.05, "value": 0.01, "estimate": "ci", "passed": True, "action": "block"},
             {"gate": "busy_processes", "max": 0, "value": 2, "estimate": "point", "passed": False, "action": "warn"}]
    assert decoder_verdict({"passed": True, "gates": gates}) == "pass with warnings"
    assert decoder_verdict({"passed": True, "gates": gates[:1]}) == "pass"
    assert decoder_verdict({"passed": False, "gates": gates}) == "fail"


def test_the_decoder_plot_draws_speedup_against_kl_the_frontier_and_the_recommendation(decoder_explorer):
    reset_decoders(decoder_explorer)
    summary = read_json(DECODER_SUMMARY)
    variants = {r["variant"]: r for r in summary["variants"]}
    measured = {n for n, r in variants.items() if r["status"] == "ok"}
    points, front, star = decoder_explorer.decoders.figure.data
    assert set(points.customdata) == measured and decoder_explorer.decoders.figure.layout.yaxis.type == "log"
    smallest = min(r["kl_mean"] for n, r in variants.items() if n in measured and r["kl_mean"] > 0)
    for name, x, y in zip(points.customdata, points.x, points.y, strict=True):
        assert x == variants[name]["decode_speedup"]
        kl = variants[name]["kl_mean"]
        assert y == kl if kl > 0 else 0 < y < smallest  # a log axis drops a 0: the baseline's KL is drawn under the rest
    beaten = {n for n in measured for m in measured if m != n and variants[m]["decode_speedup"] >= variants[n]["decode_speedup"]
              and variants[m]["kl_mean"] <= variants[n]["kl_mean"]
              and (variants[m]["decode_speedup"], variants[m]["kl_mean"]) != (variants[n]["decode_speedup"], variants[n]["kl_mean"])}
    assert list(front.text) == sorted(measured - beaten, key=lambda n: variants[n]["kl_mean"]) and 1 < len(front.text) < len(measured)
    assert list(star.text) == [summary["recommendation"]["variant"]]


def test_select_decoder_and_a_click_show_that_decoder_variant_s_figures_and_every_gate_s_value_and_bound(decoder_explorer):
    reset_decoders(decoder_explorer)
    section = decoder_explorer.decoders
    row = next(r for r in read_json(DECODER_SUMMARY)["variants"] if r["variant"] == "ov-int8")
    section.runtime.value = "llamacpp"  # ov-int8 filtered out: selecting it clears the filters
    decoder_explorer.select_decoder("ov-int8")
    assert decoder_explorer.tabs.selected_index == 1 and section.chosen.value == "ov-int8" and section.runtime.value == ALL
    page = section.detail.value
    assert page.startswith("<h4>ov-int8 (openvino, int8)</h4>")
    facts = table_cells(page.split("<h4>")[1])
    low, high = row["kl_mean_ci95"]
    assert facts["KL to the baseline"] == [f"{shown(row['kl_mean'])} (95% CI {shown(low)}–{shown(high)}) nats (mean over next tokens)"]
    sections = re.split(r"<h4>(.*?)</h4>", page)[3:]
    assert [title for title in sections[::2]] == [f"ov-int8 · {stage}: pass" for stage in row["verdicts"]]
    for body, verdict in zip(sections[1::2], row["verdicts"].values(), strict=True):
        gates = table_cells(body)
        assert list(gates) == [g["gate"] for g in verdict["gates"]]
        for gate in verdict["gates"]:
            result, value, op, bound, estimate, action, _ = gates[gate["gate"]]
            direction = "min" if "min" in gate else "max"
            assert (re.sub(r"<.*?>", "", result), value, op, bound, action) == (
                "pass" if gate["passed"] else "fail", shown(gate["value"]), "≥" if direction == "min" else "≤", shown(gate[direction]),
                gate["action"])
            assert estimate.startswith(gate["estimate"])
    points = section.figure.data[0]
    index = list(points.customdata).index("mlx-int4")
    section._clicked(points, Points(point_inds=[index], xs=[points.x[index]], ys=[points.y[index]], trace_name="variants", trace_index=0), None)
    assert section.chosen.value == "mlx-int4" and "mlx-int4 · production: fail" in section.detail.value
    decoder_explorer.select_decoder("ort-int8")
    assert section.detail.value == ("<h4>ort-int8: skipped</h4><p>onnxruntime-genai not installed</p><p>install: <code>pip install "
                                    "-c requirements/lock.txt -e &quot;.[onnxruntime]&quot;</code></p>")
    with pytest.raises(EdgekitError, match="decoder variant 'nope' is not in .*decoder_summary.json.*decoder variants: llama-fp32, "):
        decoder_explorer.select_decoder("nope")


def test_select_still_means_the_encoder_variant_when_a_decoder_one_has_the_same_name(decoder_explorer):
    reset(decoder_explorer)
    reset_decoders(decoder_explorer)
    decoder_explorer.select_decoder("ov-int8")
    decoder_explorer.select("ov-int8")
    assert decoder_explorer.tabs.selected_index == 0 and decoder_explorer.chosen.value == "ov-int8"
    assert decoder_explorer.detail.value.startswith("<h4>ov-int8 (openvino, int8)</h4>") and "ov-int8 · production: fail" in decoder_explorer.detail.value
    assert decoder_explorer.decoders.chosen.value == "ov-int8" and "ov-int8 · production: pass" in decoder_explorer.decoders.detail.value


def test_without_a_widget_frontend_the_output_also_keeps_the_decoder_table_and_the_recommended_decoder_s_gates(decoder_project):
    summary = read_json(DECODER_SUMMARY)
    recommended = summary["recommendation"]["variant"]
    static = BenchmarkExplorer(decoder_project)._repr_mimebundle_()["text/html"]
    decoders = static[static.index(f"{len(summary['variants'])} decoder variants · production · recommended: {recommended}"):]
    assert summary["recommendation"]["why"] in decoders
    assert set(table_cells(decoders.split("<h4>")[0])) == {r["variant"] for r in summary["variants"]}
    assert "ort-int8 (skipped): onnxruntime-genai not installed" in decoders
    assert '<img alt="decode speed-up against KL divergence" src="data:image/png;base64,iVBOR' in decoders
    verdicts = next(r for r in summary["variants"] if r["variant"] == recommended)["verdicts"]
    for stage, verdict in verdicts.items():
        gates = table_cells(decoders.split(f"<h4>{recommended} · {stage}: pass</h4>")[1].split("</table>")[0])
        assert {name: cells[1] for name, cells in gates.items()} == {g["gate"]: shown(g["value"]) for g in verdict["gates"]}


def test_a_project_without_a_decoder_gets_the_encoder_explorer_alone(decoder_project):
    without, with_decoders = BenchmarkExplorer(FIXTURE), BenchmarkExplorer(decoder_project)
    assert without.decoders is None and without.tabs is None
    assert [type(child) for child in without.widget.children] == [
        widgets.HBox, widgets.HBox, widgets.HTML, type(without.figure), widgets.Dropdown, widgets.HTML, type(without.latency),
        widgets.HTML, widgets.VBox]
    assert without.widget.children[2:7] == (without.table, without.figure, without.chosen, without.detail, without.latency)
    assert [type(child) for child in with_decoders.widget.children] == [widgets.Tab, widgets.HTML, widgets.VBox]
    assert with_decoders.tabs.titles == ("encoders", "decoders")
    assert list(with_decoders.tabs.children[0].children[2:7]) == [with_decoders.table, with_decoders.figure, with_decoders.chosen,
                                                                  with_decoders.detail, with_decoders.latency]
    encoders_only = without.static_html()
    assert "decoder" not in encoders_only
    assert with_decoders.static_html().startswith(encoders_only.removesuffix("</div>"))  # the same encoder part, then the decoders
    with pytest.raises(EdgekitError, match="decoder_summary.json does not exist: this project measures no decoder"):
        without.select_decoder("ov-int8")
