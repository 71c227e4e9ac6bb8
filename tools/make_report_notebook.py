"""Regenerate notebooks/report.ipynb and notebooks/model_card.ipynb from the cell sources below (reviewable diffs).

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
    ("md", "## Variants against the baseline\nSpeed-up is baseline p50 ÷ variant p50 at the headline scenario, p50 being "
           "the median of per-process medians; its 95% CI resamples processes, then calls within each (`processes`: the "
           "variant's against the baseline's). Model memory is the model's own cost (peak of load and run over the process's "
           "RSS with its runtime imported); peak RSS is the whole timing process. Retention is the variant's Spearman ÷ the "
           "baseline's on the test pairs, with its paired bootstrap 95% CI; cosine compares each sentence's embedding with "
           "the baseline's. Roofline efficiency is the achieved GFLOP/s over the bound for the precision the runtime computed in."),
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
    ("md", "## Decision\nEvery variant against every gate of the policy, for each stage; a `block` gate that fails keeps the "
           "variant out of the stage, a `warn` gate is reported only. A missing measurement fails its gate."),
    ("code", """\
decision, policy = results.decision, results.gates["policy"]
stage = decision["target_stage"]
display(Markdown(
    f"**Policy** `{policy['name']}` version {policy['version']} (`{policy['file']}`, sha256 `{policy['sha256']}`) · "
    f"**Target stage** {stage} · **Evidence** `outputs/gates.json`, pinned by `dvc.lock`\\n\\n"
    f"**Recommended for {stage}:** `{decision['recommended'] or 'none'}` — {decision['reason']}"
))
results.verdict_table().style.hide(axis="index").format(precision=4, na_rep="")"""),
    ("md", "### Gates with their evidence (target stage)\nValue, bound and result of every gate, and the DVC outputs the value was read from."),
    ("code", """\
evidence = pd.concat([results.gate_table(name).assign(variant=name) for name in results.measured], ignore_index=True)
evidence = evidence[["variant", "gate", "value", "bound", "result", "action", "detail", "evidence"]]
evidence.style.hide(axis="index").format(precision=4, na_rep="missing").map(
    lambda v: "color: #b00020; font-weight: bold" if v == "fail" else "", subset=["result"])"""),
    ("md", "## Pareto frontier\nA variant is on the frontier when no other is at least as good on latency, accuracy retention, "
           "peak memory and size, and better on one. Marker area is proportional to peak RSS."),
    ("code", """\
measured = table[table["status"] == "ok"].copy()
measured["on_front"] = [summary["variants"][v]["pareto"]["on_front"] for v in measured["variant"]]
fig, ax = plt.subplots(figsize=(9, 6))
for on_front, group in measured.groupby("on_front"):
    ax.scatter(group["p50_ms"], group["retention"], s=group["peak_rss_mb"] / 2, alpha=0.6,
               label="on the frontier" if on_front else "dominated", color="tab:green" if on_front else "tab:gray")
front = measured[measured["on_front"]].sort_values("p50_ms")
ax.plot(front["p50_ms"], front["retention"], color="tab:green", linewidth=1)
for row in measured.itertuples():
    ax.annotate(row.variant + (" ★" if row.variant == decision["recommended"] else ""), (row.p50_ms, row.retention),
                textcoords="offset points", xytext=(6, 4), fontsize=8)
ax.set_xscale("log")
ax.set_xlabel(f"p50 latency at {headline} (ms, log scale)")
ax.set_ylabel("accuracy retention (variant / baseline)")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()"""),
    ("md", "## Fairness\nThe counterfactual check runs on every variant's own embeddings; its definition:"),
    ("code", """\
fair = {n: summary["variants"][n]["fairness"] for n in results.measured if summary["variants"][n].get("fairness")}
if fair:
    first = next(iter(fair.values()))
    display(Markdown(f"> {first['definition']}\\n\\nTolerance ±{first['tolerance']} cosine, {first['pairs']} pairs."))
    rows = [{"variant": n, "score": f["score"], "within tolerance": f["within_tolerance"], "gap mean": f["gap_mean"],
             "gap max": f["gap_max"], **{f"{a}": v["score"] for a, v in f["by_attribute"].items()}} for n, f in fair.items()]
    display(pd.DataFrame(rows).style.hide(axis="index").format(precision=4))
    worst = pd.DataFrame(fair[summary["baseline"]]["worst"]) if summary["baseline"] in fair else pd.DataFrame()
    display(Markdown("Largest gaps of the baseline (the model itself, before any optimization):"))
    display(worst.style.hide(axis="index").format(precision=4))
else:
    display(Markdown("No fairness results: run `dvc repro evaluate`."))"""),
    ("md", "## Recommendation for this hardware\nFrom the environment fingerprint: the measured winner when the measurements "
           "were made on this host, otherwise a documented prior by CPU vendor and ISA."),
    ("code", """\
from edgekit.decide.hardware import describe

recommendation = summary["recommendation"]
display(Markdown(f"**{describe(recommendation)}**"))
prior = recommendation.get("prior") or recommendation
display(Markdown(f"Prior for this CPU (rule `{prior['rule']}`): {prior['runtime']} {prior['precision']} — {prior['reason']}"))"""),
    ("md", "## Diagnosis\nWhat limits each variant, from its roofline position, the fixed per-call cost across scenarios and "
           "the measurement noise; with what to try next for that runtime."),
    ("code", """\
diagnosis = pd.DataFrame([{"variant": n, "class": d["class"], "evidence": d["evidence"], "what to try": " · ".join(d["hints"])}
                          for n, d in summary["diagnosis"].items()])
diagnosis.style.hide(axis="index").set_properties(subset=["evidence", "what to try"], **{"text-align": "left"})"""),
    ("md", "## Latency distributions\nEach point of a box is one timed call after warm-up, in a fresh process per variant."),
    ("code", """\
scenarios = sorted(summary["variants"][summary["baseline"]]["p50_ms_by_scenario"],
                   key=lambda key: tuple(int(part[1:]) for part in key.split("_")))
columns = min(2, len(scenarios))
rows = -(-len(scenarios) // columns)
fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, rows * (0.35 * len(results.measured) + 1.5)), squeeze=False)
for ax in axes.flat[len(scenarios):]:
    ax.set_visible(False)
for ax, scenario in zip(axes.flat, scenarios, strict=False):
    timed = [v for v in results.measured if scenario in results.scenarios_of(v)]
    ax.boxplot([results.latency_samples(v, scenario) for v in timed], orientation="horizontal", showfliers=True,
               flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(timed) + 1), timed)
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
                 f"bf16 GEMM **{peaks.get('bf16_gemm_gflops') or 'n/a'} GFLOP/s** · "
                 f"memory **{peaks['memory_bandwidth_gbs']} GB/s** · energy: {peaks['energy']} ({summary['threads']} threads). "
                 "Each variant is held to the int8 peak if it is int8, to bf16 if its runtime computed in bf16, else fp32."))
roof = pd.DataFrame([{"variant": name, **summary["variants"][name]["roofline"]} for name in results.measured])
roof.style.hide(axis="index").format(precision=3)"""),
    ("md", "## Small language model\nThe decoder (params.yaml `decoder:`) against its fp32 PyTorch baseline, from "
           "`metrics/decoder_summary.json`. Decode tokens/s is one token at a time on top of the KV cache as each runtime "
           "keeps it, prefill tokens/s and time to first token are at the first prompt length; both speed-ups carry the "
           "hierarchical bootstrap 95% CI over processes. Perplexity Δ, KL (baseline ‖ variant, nats) and top-1 agreement "
           "are read on held-out text only. Decode roofline efficiency is tokens/s × the variant's weight bytes over the "
           "measured memory bandwidth: above 1 means the weights were served from cache, not DRAM."),
    ("code", """\
import json

decoder_path = Path(project_dir) / "metrics" / "decoder_summary.json"
if decoder_path.is_file():
    decoders = json.loads(decoder_path.read_text())
    columns = ["variant", "runtime", "precision", "status", "decode_tokens_per_s", "decode_speedup", "decode_speedup_ci95",
               "prefill_tokens_per_s", "prefill_speedup", "ttft_ms", "perplexity", "perplexity_delta", "kl_mean",
               "top1_agreement", "greedy_identical", "model_memory_mb", "size_mb", "decode_roofline_efficiency"]
    stage = decoders["stage"]
    rows = [{**{c: row.get(c) for c in columns}, stage: "pass" if row["verdicts"].get(stage, {}).get("passed") else "fail"}
            for row in decoders["variants"]]
    rec = decoders["recommendation"]
    evidence = (f": decode {rec['decode_speedup']:.2f}× the baseline (95% CI {rec['decode_speedup_ci95'][0]:.2f}–"
                f"{rec['decode_speedup_ci95'][1]:.2f}), KL {rec['kl_mean']:.2g}, perplexity {rec['perplexity_delta']:+.2%}"
                if rec["variant"] else "")
    display(Markdown(f"**Recommended decoder for {stage}:** `{rec['variant'] or 'none'}` — {rec['why']}{evidence} "
                     "(evidence: `metrics/decoder_summary.json`, `outputs/decoder_benchmark/`, `metrics/decoder_evaluate/`)"))
    display(pd.DataFrame(rows).style.hide(axis="index").format(precision=4, na_rep=""))
    failed = [(row["variant"], g) for row in decoders["variants"] for g in row["verdicts"].get(stage, {}).get("gates", [])
              if not g["passed"]]
    if failed:
        display(Markdown("Failed gates: " + "; ".join(f"`{v}` {g['gate']} = {g['value']}" for v, g in failed)))
else:
    display(Markdown("This project has no decoder (`decoder:` in params.yaml)."))"""),
    ("md", "## How this was measured\nEvery scenario ran in fresh processes (repeats), after a cold first call and a warm-up; "
           "sampling stopped when the 95% CI of the median was within the target, or at the time budget. "
           "A scenario measured on a busy machine (other processes' CPU time, or steal), that did not converge, or whose "
           "repeats disagree is flagged, not dropped. The CPU canary is the slowest CPU's time for a fixed loop, "
           "against the best `calibrate` found: evidence of contention from outside the machine, not a flag."),
    ("code", """\
rows = []
for name in results.measured:
    m = results.benchmark_metrics(name)
    for key, sc in m["scenarios"].items():
        rows.append({"variant": name, "scenario": key, "iterations": sc["iterations"], "repeats": sc["repeats"],
                     "p50 CI95 ms": sc["p50_ci95_ms"], "spread between processes": sc["between_process_spread"],
                     "first call ms": sc["first_ms"], "load s": sc["load_s"], "peak RSS MB": sc["peak_rss_mb"],
                     "foreign cores (max)": sc.get("foreign_load_max"), "CPU canary ms (max)": sc.get("canary_ms_max"),
                     "unstable": "; ".join(sc["unstable_reasons"]) or "no"})
first = results.benchmark_metrics(results.measured[0])
display(Markdown(f"Percentiles: {first['percentile_method']}. Stop rule: `{first['stop_rule']}`. "
                 f"Thread environment: `{first['process_settings']}`. "
                 f"CPU canary calibrated best: {summary['roofline_peaks'].get('cpu_canary_ms', 'n/a')} ms."))
pd.DataFrame(rows).style.hide(axis="index").format(precision=3)"""),
    ("code", """\
settings = pd.DataFrame([{"variant": n, **{k: str(v) for k, v in results.benchmark_metrics(n)["runtime_settings"].items()}}
                         for n in results.measured])
settings.style.hide(axis="index")"""),
]


MODEL_CARD_CELLS = [
    ("md", "# edgekit model card\nThe certification record of one variant: what it is, how it was judged and on what. "
           "`dvc repro` renders it for the recommended variant; `edgekit model-card --variant NAME` for another."),
    ("params", 'project_dir = "."  # the DVC project whose outputs this card certifies\n'
               'variant = ""  # the variant to certify (empty: the one recommended for the target stage)'),
    ("code", """\
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from edgekit.results import load_results

results = load_results(Path(project_dir))
summary, env, baseline, gates = results.summary, results.environment, results.baseline, results.gates
decision = summary["decision"]
# With nothing recommended, the card shows the best-scoring variant, marked as not certified for the stage.
scores = {n: r["preference_score"] for n, r in summary["variants"].items() if r["status"] == "ok"}
name = variant or decision["recommended"] or max(scores, key=scores.get)
if name not in summary["variants"]:
    raise ValueError(f"variant {name!r} is not in this project; known: {', '.join(summary['variants'])}")
row, verdicts = summary["variants"][name], gates["variants"][name]
status = " · ".join(f"**{stage}: {v['verdict']}**" for stage, v in verdicts.items())
banner = "" if verdicts[decision["target_stage"]]["verdict"].startswith("pass") else \\
    f"\\n\\n> **Not certified for {decision['target_stage']}**: it fails {', '.join(verdicts[decision['target_stage']].get('failed_blocking', []))}."
display(Markdown(f"## `{name}`\\n{status}{banner}"))"""),
    ("md", "## Identity"),
    ("code", """\
identity = {
    "variant": name, "runtime": row.get("runtime"), "precision": row.get("precision"),
    "model files sha256": row.get("files_sha256", "n/a"),
    "source model": f"{baseline['source']} ({baseline['model_type']}, {baseline['parameters']:,} parameters)",
    "source model sha256 (as normalized by the baseline stage)": baseline["model_sha256"],
    "size on disk (MiB)": row.get("size_mb"),
}
pd.DataFrame(identity.items(), columns=["field", "value"]).style.hide(axis="index")"""),
    ("md", "## Validation"),
    ("code", """\
policy = gates["policy"]
display(Markdown(
    f"**Judged** by the `select` stage (verdicts in `outputs/gates.json`, pinned by `dvc.lock`) against policy "
    f"`{policy['name']}` version {policy['version']} "
    f"(`{policy['file']}`, sha256 `{policy['sha256']}`) at scenario `{gates['headline_scenario']}` "
    f"(batch size, sequence length), baseline `{gates['baseline']}`."
))
if row["status"] != "ok":
    display(Markdown(f"Not measured: {verdicts[next(iter(verdicts))].get('reason')}"))"""),
    ("code", """\
for stage in verdicts:
    display(Markdown(f"### Gates for {stage}: {verdicts[stage]['verdict']}"))
    display(results.gate_table(name, stage).style.hide(axis="index").format(precision=4, na_rep="missing"))"""),
    ("md", "## Measurements"),
    ("code", """\
if row["status"] == "ok":
    low, high = row["speedup_ci95"]
    facts = {
        "p50 latency (ms)": row["p50_ms"], "p99 latency (ms)": row["p99_ms"],
        "speed-up vs baseline (95% CI)": f"{row['speedup']}× ({low}–{high})",
        "peak RSS (MB)": row["peak_rss_mb"], "memory reduction (range over repeats)": str(row["memory_reduction_range"]),
        "task metric (Spearman ×100)": row["spearman"], "retention": row["retention"],
        "cosine to the baseline (mean / min)": f"{row['cosine_mean']} / {row['cosine_min']}",
        "fairness score": row.get("fairness_score"), "on the Pareto frontier": row["pareto"]["on_front"],
        "diagnosis": summary["diagnosis"].get(name, {}).get("class"),
        "unstable scenarios": ", ".join(row["unstable_scenarios"]) or "none",
    }
    display(pd.DataFrame(facts.items(), columns=["measure", "value"]).style.hide(axis="index"))"""),
    ("md", "## Decoder\nWhere the project has a decoder (params.yaml `decoder:`): the decoder variant recommended for the "
           "target stage, judged by `decoder_select` against `decoder_stages` of the same policy (`metrics/decoder_summary.json`)."),
    ("code", """\
import json

decoder_path = Path(project_dir) / "metrics" / "decoder_summary.json"
if not decoder_path.is_file():
    display(Markdown("This project has no decoder."))
else:
    decoders = json.loads(decoder_path.read_text())
    rec, stage = decoders["recommendation"], decoders["stage"]
    chosen = next((r for r in decoders["variants"] if r["variant"] == rec["variant"]), None)
    if chosen is None:
        display(Markdown(f"**No decoder variant is certified for {stage}**: {rec['why']}."))
    else:
        low, high = chosen["decode_speedup_ci95"]
        facts = {
            "variant": chosen["variant"], "runtime": chosen["runtime"], "precision": chosen["precision"],
            "baseline": decoders["baseline"], "decode tokens/s": chosen["decode_tokens_per_s"],
            "decode speed-up vs baseline (95% CI)": f"{chosen['decode_speedup']:.3g}× ({low:.3g}–{high:.3g})",
            "prefill tokens/s": chosen["prefill_tokens_per_s"], "time to first token (ms)": chosen["ttft_ms"],
            "perplexity (Δ vs baseline)": f"{chosen['perplexity']:.4g} ({chosen['perplexity_delta']:+.3%})",
            "KL mean (95% CI)": f"{chosen['kl_mean']:.3g} ({chosen['kl_mean_ci95'][0]:.3g}–{chosen['kl_mean_ci95'][1]:.3g})",
            "top-1 agreement": chosen["top1_agreement"], "greedy continuations identical": chosen["greedy_identical"],
            "model memory (MB)": chosen["model_memory_mb"], "size on disk (MiB)": chosen["size_mb"],
        }
        display(Markdown(f"### `{chosen['variant']}`: passes the {stage} decoder gates"))
        display(pd.DataFrame(facts.items(), columns=["measure", "value"]).style.hide(axis="index"))
        display(pd.DataFrame(chosen["verdicts"][stage]["gates"]).style.hide(axis="index").format(precision=4, na_rep="missing"))"""),
    ("md", "## Environment\nThe machine and software the evidence was measured on."),
    ("code", """\
cpu = env["cpu"]
environment = {
    "CPU": f"{cpu['model']} ({cpu['vendor']}, {cpu['architecture']}), {cpu['physical_cores']} physical cores",
    "ISA": " ".join(cpu["isa"]), "accelerators": ", ".join(env["accelerators"]) or "none",
    "OS": f"{env['os']['system']} {env['os']['release']} ({env['os'].get('libc')})",
    "Python": env["python"]["version"], "dependency lock sha256": env["lock_sha256"],
    "threads": summary["threads"],
    **{f"package {k}": v for k, v in env["packages"].items() if v},
}
pd.DataFrame(environment.items(), columns=["field", "value"]).style.hide(axis="index")"""),
]


def build(cells=CELLS, mock_parameters=None) -> nbformat.NotebookNode:
    notebook = new_notebook()
    for kind, source in cells:
        if kind == "md":
            notebook.cells.append(new_markdown_cell(source))
            continue
        cell = new_code_cell(source)
        if kind == "params":
            cell.metadata["tags"] = ["parameters"]
            # nbmake runs the notebook from notebooks/ on a small fixture project.
            cell.metadata["nbmake"] = {"mock": {"project_dir": "../tests/fixtures/report_project", **(mock_parameters or {})}}
        notebook.cells.append(cell)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:02d}"
    return notebook


if __name__ == "__main__":
    folder = Path(__file__).resolve().parent.parent / "notebooks"
    for path, notebook in ((folder / "report.ipynb", build()), (folder / "model_card.ipynb", build(MODEL_CARD_CELLS, {"variant": ""}))):
        nbformat.write(notebook, path)
        print(f"wrote {path}")
