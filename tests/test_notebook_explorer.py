"""``BenchmarkExplorer`` without a browser, on real pipeline measurements (the report fixture) and on a real
DVC project with an experiment: what the table, the plot and the detail show after filtering, sorting and a
click on a point, what a notebook without a widget frontend keeps, and two experiments side by side."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from plotly.callbacks import Points

from edgekit.errors import EdgekitError
from edgekit.fsutil import read_json
from edgekit.notebook import BenchmarkExplorer
from edgekit.notebook.explorer import ALL, compare_html, experiments
from edgekit.results import load_results

FIXTURE = Path(__file__).parent / "fixtures" / "report_project"


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
