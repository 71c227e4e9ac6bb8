"""Regenerate notebooks/report.ipynb from the cell sources below (keeps the notebook reviewable).

Run: python tools/make_report_notebook.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", "# edgekit report\nEvery figure here is read from the pipeline's pinned DVC outputs (`metrics/`, `outputs/`); "
           "`dvc repro` re-executes this notebook with papermill."),
    ("params", 'project_dir = "."  # the DVC project whose outputs this report shows'),
    ("code", """\
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from edgekit.results import load_results

results = load_results(Path(project_dir))
summary, env, baseline = results.summary, results.environment, results.baseline
headline = summary["headline_scenario"]
cpu = env["cpu"]
display(Markdown(
    f"**Model** `{baseline['source']}` ({baseline['model_type']}, {baseline['parameters']:,} parameters) · "
    f"**Baseline** `{summary['baseline']}` · **Threads** {summary['threads']}\\n\\n"
    f"**CPU** {cpu['model']} ({cpu['architecture']}, {cpu['physical_cores']} physical cores) · "
    f"**ISA** {' '.join(cpu['isa'])} · **Python** {env['python']['version']} · "
    f"**Lock** `{(env['lock_sha256'] or 'none')[:12]}`"
))"""),
    ("md", "## Variants against the baseline\nSpeed-up is baseline p50 ÷ variant p50 at the headline scenario; "
           "memory reduction is 1 − peak RSS ÷ baseline peak RSS, each measured in its own process; "
           "retention is the variant's Spearman ÷ the baseline's; cosine compares each sentence's embedding with the baseline's."),
    ("code", """\
table = results.table()
display(Markdown(f"Headline scenario: `{headline}` (batch size, sequence length)."))
table.style.hide(axis="index").format(precision=4, na_rep="")"""),
    ("code", """\
not_measured = table[table["status"] != "ok"]
if len(not_measured):
    display(Markdown("### Not measured\\n" + "\\n".join(
        f"- `{r.variant}`: **{r.status}** — {getattr(r, 'reason', None) or getattr(r, 'error', '')}" for r in not_measured.itertuples())))
else:
    display(Markdown("All variants were measured."))"""),
    ("md", "## Latency distributions\nEach point of a box is one timed call after warm-up, in a fresh process per variant."),
    ("code", """\
scenarios = sorted(summary["variants"][summary["baseline"]]["p50_ms_by_scenario"],
                   key=lambda key: tuple(int(part[1:]) for part in key.split("_")))
columns = min(2, len(scenarios))
rows = -(-len(scenarios) // columns)
fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, rows * (0.35 * len(results.measured) + 1.5)), squeeze=False)
for ax in axes.flat[len(scenarios):]:
    ax.set_visible(False)
for ax, scenario in zip(axes.flat, scenarios):
    data = [results.latency_samples(v, scenario) for v in results.measured]
    ax.boxplot(data, orientation="horizontal", showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(results.measured) + 1), results.measured)
    ax.set_xscale("log")
    ax.set_xlabel("latency per call (ms, log scale)")
    ax.set_title(f"scenario {scenario}")
    ax.grid(axis="x", which="both", alpha=0.3)
fig.tight_layout()
plt.show()"""),
    ("md", "## Speed against fidelity\nUp and to the left is better: faster, and closer to the baseline's embeddings."),
    ("code", """\
measured = table[table["status"] == "ok"]
fig, ax = plt.subplots(figsize=(9, 6))
ax.scatter(measured["p50_ms"], measured["cosine_mean"], s=60)
for row in measured.itertuples():
    ax.annotate(row.variant, (row.p50_ms, row.cosine_mean), textcoords="offset points", xytext=(6, 4))
ax.set_xscale("log")
ax.set_xlabel(f"p50 latency at {headline} (ms, log scale)")
ax.set_ylabel("mean cosine to the baseline")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()"""),
    ("md", "## Roofline\nAchieved throughput at the headline scenario against this machine's bound: "
           "min(compute peak, arithmetic intensity × memory bandwidth), from the `calibrate` stage."),
    ("code", """\
peaks = summary["roofline_peaks"]
display(Markdown(f"fp32 GEMM **{peaks['fp32_gemm_gflops']} GFLOP/s** · int8 GEMM **{peaks['int8_gemm_gops']} GOP/s** · "
                 f"memory **{peaks['memory_bandwidth_gbs']} GB/s** · energy: {peaks['energy']} ({summary['threads']} threads)"))
roof = pd.DataFrame([{"variant": name, **summary["variants"][name]["roofline"]} for name in results.measured])
roof.style.hide(axis="index").format(precision=3)"""),
    ("md", "## How this was measured\nEvery scenario ran in fresh processes (repeats), after a cold first call and a warm-up; "
           "sampling stopped when the 95% CI of the median was within the target, or at the time budget. "
           "A scenario measured on a busy machine or that did not converge is flagged, not dropped."),
    ("code", """\
rows = []
for name in results.measured:
    m = results.benchmark_metrics(name)
    for key, sc in m["scenarios"].items():
        rows.append({"variant": name, "scenario": key, "iterations": sc["iterations"], "repeats": sc["repeats"],
                     "p50 CI95 ms": sc["p50_ci95_ms"], "spread between processes": sc["between_process_spread"],
                     "first call ms": sc["first_ms"], "load s": sc["load_s"], "peak RSS MB": sc["peak_rss_mb"],
                     "unstable": "; ".join(sc["unstable_reasons"]) or "no"})
first = results.benchmark_metrics(results.measured[0])
display(Markdown(f"Percentiles: {first['percentile_method']}. Stop rule: `{first['stop_rule']}`. "
                 f"Thread environment: `{first['process_settings']}`."))
pd.DataFrame(rows).style.hide(axis="index").format(precision=3)"""),
    ("code", """\
settings = pd.DataFrame([{"variant": n, **{k: str(v) for k, v in results.benchmark_metrics(n)["runtime_settings"].items()}}
                         for n in results.measured])
settings.style.hide(axis="index")"""),
]


def build() -> nbformat.NotebookNode:
    notebook = new_notebook()
    for kind, source in CELLS:
        if kind == "md":
            notebook.cells.append(new_markdown_cell(source))
            continue
        cell = new_code_cell(source)
        if kind == "params":
            cell.metadata["tags"] = ["parameters"]
            # nbmake runs the notebook from notebooks/ on a small fixture project.
            cell.metadata["nbmake"] = {"mock": {"project_dir": "../tests/fixtures/report_project"}}
        notebook.cells.append(cell)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:02d}"
    return notebook


if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "notebooks" / "report.ipynb"
    nbformat.write(build(), path)
    print(f"wrote {path}")
