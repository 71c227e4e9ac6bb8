"""The ``edgekit`` command: a few lines per verb over ``edgekit.api``.

Errors: an ``EdgekitError`` is one red line on stderr and exit code 1, handled only in ``main``;
``--traceback`` re-raises it.

Example:
    $ edgekit doctor --json
    $ edgekit optimize ort-int8
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekit import __version__
from edgekit.errors import EdgekitError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Optimize, measure and select a model for edge runtimes.")
out = Console()
err = Console(stderr=True)
if not out.is_terminal:  # DVC and CI logs: wide enough that tables are not cut at 80 columns
    out.width = max(out.width, 120)
_state = {"traceback": False}

Project = Annotated[Path, typer.Option("--project", "-C", help="Project folder (holds params.yaml and dvc.yaml).")]
Variant = Annotated[str, typer.Argument(help="A variant name from params.yaml.")]


def _api():
    """edgekit.api, imported when a pipeline verb runs: it imports every runtime's config and numpy (0.6 s), which
    `edgekit registry ...` and `--help` do not need."""
    from edgekit import api

    return api


def _version(value: bool) -> None:
    if value:
        out.print(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    traceback: Annotated[bool, typer.Option("--traceback", help="Show the full traceback of an error.")] = False,
) -> None:
    _state["traceback"] = traceback


def _done(message: str) -> None:
    out.print(f"[green]✓[/] {escape(message)}")


@app.command()
def check(project: Project = Path(".")) -> None:
    """Validate params.yaml, the source model and the data files."""
    params = _api().check(project)
    _done(f"params valid: {len(params.variants)} variants, model {params.model.source}, {params.threads} threads")


@app.command()
def environment(project: Project = Path("."), output: Annotated[Path | None, typer.Option("--out")] = None) -> None:
    """Fingerprint the software and hardware."""
    record = _api().environment(project, output)
    _done(f"environment: {record['cpu']['model']}, ISA {' '.join(record['cpu']['isa'])}")


@app.command()
def calibrate(project: Project = Path(".")) -> None:
    """Measure this machine's roofline (GEMM throughput, memory bandwidth)."""
    record = _api().calibrate(project)
    int8 = record["int8_gemm_gops"]
    _done(f"roofline: fp32 GEMM {record['fp32_gemm_gflops']} GFLOP/s, int8 GEMM {int8 if int8 is not None else 'n/a'} GOP/s, "
          f"memory {record['memory_bandwidth_gbs']} GB/s, energy {record['energy']}")


@app.command()
def data(project: Project = Path(".")) -> None:
    """Build the evaluation and calibration sets."""
    record = _api().data(project)
    _done(f"data: {record['pairs']} evaluation pairs")


@app.command()
def baseline(project: Project = Path(".")) -> None:
    """Load the source model and record PyTorch fp32 reference outputs."""
    record = _api().baseline(project)
    _done(f"baseline: {record['source']} ({record['parameters']:,} parameters), Spearman {record['spearman']:.2f}")


def _report_status(name: str, record: dict[str, Any], what: str) -> None:
    status = record["status"]
    if status == "ok":
        _done(f"{what} {name}")
    else:
        detail = record.get("reason") or record.get("error")
        fix = f"; {record['install']}" if record.get("install") else ""
        err.print(f"[yellow]![/] {what} {escape(name)}: {status}: {escape(str(detail))}{escape(fix)}")


@app.command()
def optimize(variant: Variant, project: Project = Path(".")) -> None:
    """Make one variant (model files and manifest)."""
    _report_status(variant, _api().optimize(variant, project), "optimize")


@app.command()
def benchmark(variant: Variant, project: Project = Path(".")) -> None:
    """Time one variant: every scenario, each repeat in a fresh process (the DVC stage)."""
    _benchmark(variant, project)


@app.command()
def bench(variant: Variant, project: Project = Path(".")) -> None:
    """The same as `benchmark`, for the shell: same code path, same outputs."""
    _benchmark(variant, project)


def _benchmark(variant: str, project: Path) -> None:
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=True, disable=not out.is_terminal) as bar:
        task = bar.add_task(f"benchmark {variant}", total=_api().planned_runs(variant, project))

        def advance(key: str, run: dict) -> None:
            detail = f"{len(run['samples_ms'])} samples" if run["status"] == "ok" else run["status"]
            if run["status"] == "ok" and run["noise"]["busy"]:
                detail += f", busy: {run['noise']['foreign_load']} foreign cores"
            bar.update(task, advance=1, description=f"benchmark {variant} {key} ({detail})")

        record = _api().benchmark(variant, project, progress=advance)
    _report_status(variant, record, "benchmark")
    for key, scenario in record.get("scenarios", {}).items():
        flag = f" [yellow]unstable: {escape('; '.join(scenario['unstable_reasons']))}[/]" if scenario["unstable"] else ""
        out.print(f"  {key}: p50 {scenario['p50_ms']:.3f} ms (95% CI {scenario['p50_ci95_ms'][0]:.3f}–{scenario['p50_ci95_ms'][1]:.3f}),"
                  f" p99 {scenario['p99_ms']:.3f} ms, {scenario['items_per_s']:.1f} items/s, {scenario['repeats']} processes{flag}")


@app.command()
def evaluate(variant: Variant, project: Project = Path(".")) -> None:
    """Task metric, retention and fidelity of one variant."""
    record = _api().evaluate(variant, project)
    _report_status(variant, record, "evaluate")
    if record["status"] == "ok":
        out.print(f"  Spearman {record['spearman']:.2f}, retention {record['retention']:.4f}, cosine mean {record['cosine_mean']:.4f}")


@app.command()
def select(project: Project = Path(".")) -> None:
    """Compare every variant with the baseline."""
    summary = _api().select(project)
    stage = summary["decision"]["target_stage"]
    table = Table("variant", "status", "p50 ms", "speed-up (95% CI)", "peak RSS MB", "size MB", "cosine", "retention",
                  "fairness", "Pareto", stage)
    for name, row in summary["variants"].items():
        verdict = row["verdicts"][stage]
        if row["status"] == "ok":
            low, high = row["speedup_ci95"]
            status = "[yellow]unstable[/]" if row["unstable"] else "ok"
            fairness = "" if row["fairness_score"] is None else f"{row['fairness_score']:.3f}"
            table.add_row(name, status, f"{row['p50_ms']:.3f}", f"{row['speedup']:.2f}× ({low:.2f}–{high:.2f})",
                          f"{row['peak_rss_mb']:.0f}", f"{row['size_mb']:.1f}", f"{row['cosine_mean']:.4f}", f"{row['retention']:.4f}",
                          fairness, "yes" if row["pareto"]["on_front"] else "", _verdict_markup(verdict))
        else:
            table.add_row(name, row["status"], *[""] * 8, verdict)
    out.print(table)
    decision = summary["decision"]
    out.print(f"recommended for {stage}: [bold]{escape(decision['recommended'] or 'none')}[/] — {escape(decision['reason'])}")


def _verdict_markup(verdict: str) -> str:
    return {"pass": "[green]pass[/]", "pass with warnings": "[yellow]pass (warnings)[/]", "fail": "[red]fail[/]"}.get(verdict, verdict)


@app.command()
def gate(project: Project = Path("."),
         stage: Annotated[str | None, typer.Option(help="Stage to check (default: params.yaml policy.stage).")] = None,
         advisory: Annotated[bool, typer.Option(
             "--advisory", help="Report when nothing qualifies, exit 0 (the DVC stage); CI and promotion block.")] = False) -> None:
    """Fail unless some variant passes every blocking gate of the stage; name the ones that do."""
    result = _api().gate(project, stage, block=not advisory)
    policy = result["policy"]
    if result["message"]:
        out.print(f"[yellow]![/] {escape(result['message'])}")
        out.print(f"[yellow]nothing qualifies for {escape(result['stage'])} on this host[/]: the verdicts are recorded; "
                  f"{escape(result['evidence'])}. `edgekit gate --stage {escape(result['stage'])}` fails on this (CI, promotion).")
        return
    _done(f"{len(result['passing'])} variant(s) pass the blocking gates of {result['stage']} "
          f"(policy {policy['name']} {policy['version']}, sha256 {policy['sha256'][:12]}): {', '.join(result['passing'])}")
    for name, warnings in result["warnings"].items():
        if warnings:
            out.print(f"  [yellow]warn[/] {name}: {escape('; '.join(warnings))}")
    for name, failures in result["failing"].items():
        out.print(f"  [red]fail[/] {name}: {escape('; '.join(failures))}")
    if result["recommended"]:
        out.print(f"  recommended: [bold]{escape(result['recommended'])}[/]")
    if decoders := result.get("decoders"):
        if decoders["message"]:
            out.print(f"[yellow]![/] {escape(decoders['message'])}")
        else:
            _done(f"{len(decoders['passing'])} decoder variant(s) pass the blocking decoder gates of {decoders['stage']}: "
                  f"{', '.join(decoders['passing'])}")
        for name, failures in decoders["failing"].items():
            out.print(f"  [red]fail[/] {name}: {escape('; '.join(failures))}")
        if decoders["recommended"]:
            out.print(f"  recommended decoder: [bold]{escape(decoders['recommended'])}[/]")


@app.command("gates")
def list_gates() -> None:
    """The gates a policy file can use, with what each one measures."""
    table = Table("gate", "bound", "options", "measures")
    for g in _api().gates():
        options = ", ".join(f"{k}={v}" for k, v in g["options"].items())
        table.add_row(g["name"], g["direction"], options, g["description"])
    out.print(table)


@app.command("decoder-model")
def decoder_model(project: Project = Path(".")) -> None:
    """Make (or copy) the source language model and split its corpus."""
    record = _api().decoder_model(project)
    made = f", held-out perplexity {record['heldout_perplexity']:.1f}" if "heldout_perplexity" in record else ""
    _done(f"decoder model: {record['source']}{made}")


@app.command("decoder-baseline")
def decoder_baseline(project: Project = Path(".")) -> None:
    """Record the fp32 PyTorch reference logits and greedy continuations on the held-out text."""
    record = _api().decoder_baseline(project)
    _done(f"decoder baseline: {record['windows']} windows, perplexity {record['perplexity']:.2f}")


@app.command("decoder-optimize")
def decoder_optimize(variant: Variant, project: Project = Path(".")) -> None:
    """Make one decoder variant (model files and manifest)."""
    _report_status(variant, _api().decoder_optimize(variant, project), "decoder optimize")


@app.command("decoder-benchmark")
def decoder_benchmark(variant: Variant, project: Project = Path(".")) -> None:
    """Time one decoder variant's prefill and decode, each repeat in a fresh process."""
    record = _api().decoder_benchmark(variant, project)
    _report_status(variant, record, "decoder benchmark")
    if record["status"] == "ok":
        out.print(f"  decode {record['decode']['tokens_per_s']:.1f} tokens/s, prefill "
                  + ", ".join(f"{n}: {p['tokens_per_s']:.0f} tokens/s" for n, p in record["prefill"].items()))


@app.command("decoder-evaluate")
def decoder_evaluate(variant: Variant, project: Project = Path(".")) -> None:
    """Perplexity, KL and top-1 agreement of one decoder variant against the baseline."""
    record = _api().decoder_evaluate(variant, project)
    _report_status(variant, record, "decoder evaluate")
    if record["status"] == "ok":
        out.print(f"  perplexity {record['perplexity']:.3f} ({record['perplexity_delta']:+.2%}), KL {record['kl_mean']:.5f}, "
                  f"top-1 {record['top1_agreement']:.3f}, greedy identical {record['greedy']['identical']:.2f}")


@app.command("decoder-select")
def decoder_select(project: Project = Path(".")) -> None:
    """Every decoder variant against the baseline, its gates, and the recommendation."""
    summary = _api().decoder_select(project)
    table = Table("variant", "decode tok/s", "speed-up (95% CI)", "ppl Δ", "KL", "top-1", summary["stage"])
    for row in summary["variants"]:
        if row["status"] != "ok":
            table.add_row(row["variant"], row["status"], "", "", "", "", "")
            continue
        ci = row.get("decode_speedup_ci95") or [float("nan")] * 2
        table.add_row(row["variant"], f"{row['decode_tokens_per_s']:.0f}", f"{row.get('decode_speedup', float('nan')):.2f}× ({ci[0]:.2f}–{ci[1]:.2f})",
                      f"{row['perplexity_delta']:+.2%}", f"{row['kl_mean']:.4f}", f"{row['top1_agreement']:.3f}",
                      "pass" if row["verdicts"].get(summary["stage"], {}).get("passed") else "fail")
    out.print(table)
    recommendation = summary["recommendation"]
    _done(f"decoder recommendation: {recommendation['variant'] or 'none'} ({recommendation['why']})")


@app.command("model-card")
def model_card(project: Project = Path("."),
               variant: Annotated[str | None, typer.Option(help="Variant to certify (default: the recommended one).")] = None) -> None:
    """Render the certification report of one variant into reports/model_card.{ipynb,html}."""
    _done(f"model card: {_api().model_card(project, variant)}")


@app.command()
def report(project: Project = Path("."), notebook: Annotated[Path | None, typer.Option()] = None) -> None:
    """Execute the report notebook into reports/ (ipynb and HTML)."""
    _done(f"report: {_api().report(project, notebook)}")


@app.command()
def doctor(project: Project = Path("."), as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """What this machine offers: Python, lock, CPU and ISA, and each runtime."""
    record = _api().doctor(project)
    if as_json:
        print(json.dumps(record, indent=2, sort_keys=True))
        return
    cpu = record["cpu"]
    out.print(f"edgekit {record['edgekit']} · Python {record['python']['version']} · {record['os']['system']} {record['os']['release']}")
    out.print(f"lock: {record['lock_sha256'] or 'requirements/lock.txt not found'}")
    out.print(f"CPU: {cpu['model']} ({cpu['architecture']}), {cpu['physical_cores']} physical / {cpu['logical_cores']} logical cores")
    out.print(f"ISA: {' '.join(cpu['isa']) or 'none detected'}; accelerators: {', '.join(record['accelerators']) or 'none'}")
    from edgekit.tasks.base import task_names

    kinds = task_names()
    table = Table("runtime", "status", "versions", "devices", *(f"{kind} precisions" for kind in kinds))
    for name, runtime in record["runtimes"].items():
        versions = ", ".join(f"{k} {v}" for k, v in runtime["versions"].items())
        status = "[green]found[/]" if runtime["available"] else f"[yellow]missing[/] {escape(', '.join(runtime['missing']))}: {escape(runtime['install'])}"
        table.add_row(name, status, versions, ", ".join(runtime["devices"]),
                      *(", ".join(runtime["kinds"].get(kind, [])) or "-" for kind in kinds))
    out.print(table)
    for kind, about in record["kinds"].items():
        fairness = ", ".join(about["fairness_checks"]) or "none defined"
        out.print(f"kind {kind}: {escape(about['summary'])}; params.yaml `{about['params_section']}:`; "
                  f"runtimes {', '.join(about['runtimes'])}; fairness checks: {fairness}")
    from edgekit.decide.hardware import describe

    out.print(f"recommended here: {escape(describe(record['recommendation']))}")


@app.command()
def init(
    project: Annotated[Path, typer.Argument(help="A git repository (default: the current folder).")] = Path("."),
    model: Annotated[str | None, typer.Option("--model", help="Your model: a local folder, an installed model package or a Hugging Face id in the local cache.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="A folder laid out like edgekit's data/source (sts_pairs.tsv, calibration_sentences.txt, fairness/); default: edgekit's sample set.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files edgekit init wrote before.")] = False,
) -> None:
    """Scaffold an edgekit pipeline in your own repository: dvc.yaml, params.yaml, policy.yaml, notebooks, DVC."""
    # Imported only here, like the registry: the pipeline's stages never run it, so it is not a DVC dep.
    from edgekit.scaffold import init as scaffold

    result = scaffold(project, model=model, data=data, force=force)
    for path in result.written:
        _done(f"wrote {path}")
    for line in result.next_steps:
        out.print(escape(line), highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def registry(ctx: typer.Context) -> None:
    """The model registry: register, promote, approve, archive, rollback, show, history, verify, check, reproduce."""
    # `edgekit registry ...` reaches edgekit.registry.cli from edgekit/__main__.py without this module; this verb
    # lists it in --help and serves `edgekit --traceback registry ...`. Imported only here, so the pipeline's
    # stages, which run this module, neither import the registry nor list its files as DVC deps.
    from edgekit.registry.cli import run

    code = run(ctx.args)
    if code:
        raise typer.Exit(code)


def _serve_cli(verb: str, ctx: typer.Context) -> None:
    # Like `registry`: edgekit/__main__.py sends these verbs to edgekit.serve.cli directly; the server is imported
    # only here, so no pipeline stage lists it as a DVC dep.
    from edgekit.serve.cli import run

    code = run([verb, *ctx.args])
    if code:
        raise typer.Exit(code)


_FORWARDED = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=_FORWARDED)
def serve(ctx: typer.Context) -> None:
    """Serve a registered version (production by default) over HTTP, with a blue-green ramp to a candidate."""
    _serve_cli("serve", ctx)


@app.command(context_settings=_FORWARDED)
def monitor(ctx: typer.Context) -> None:
    """Live figures of the served versions next to their benchmark, drift, and a telemetry event in the registry."""
    _serve_cli("monitor", ctx)


_PER_VARIANT = ("optimize", "benchmark", "bench", "evaluate", "decoder-optimize", "decoder-benchmark", "decoder-evaluate")


def _name_stage(argv: list[str]) -> None:
    """Tell edgekit.importtrace which DVC stage this is (``optimize@ort-int8``), from the command line."""
    from edgekit.importtrace import set_stage

    words = [i for i, word in enumerate(argv) if not word.startswith("-")]
    if not words:
        return
    verb = argv[words[0]]
    following = argv[words[0] + 1] if words[0] + 1 < len(argv) else ""
    variant = following if verb in _PER_VARIANT and following and not following.startswith("-") else None
    set_stage("benchmark" if verb == "bench" else verb, variant)


def main() -> None:
    """Entry point of the ``edgekit`` console script."""
    from edgekit.isolation import OFFLINE_ENV

    for name, value in OFFLINE_ENV.items():  # before any runtime is imported (see OFFLINE_ENV)
        os.environ.setdefault(name, value)
    _name_stage(sys.argv[1:])
    try:
        # Standalone mode: usage errors get click's short message and exit code 2.
        app()
    except EdgekitError as exc:
        if _state["traceback"]:
            raise
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
