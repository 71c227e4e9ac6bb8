"""The public Python API: one function per pipeline stage, the same ones the CLI, the DVC stages,
the notebooks and the tests call. Each loads params and the layout and calls its stage's module,
``edgekit.pipeline.<stage>.run`` (stage, CLI verb, function and module share one name).

Example:
    >>> from edgekit import api
    >>> api.optimize("ort-int8")
    >>> api.benchmark("ort-int8")["scenarios"]["b1_s32"]["p50_ms"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError
from edgekit.layout import Layout
from edgekit.params import Params, load_params

PARAMS_FILE = "params.yaml"
REPORT_NOTEBOOK = Path("notebooks") / "report.ipynb"
MODEL_CARD_NOTEBOOK = Path("notebooks") / "model_card.ipynb"


def _setup(project: str | Path, params_file: str | Path | None, deep: tuple[str, ...] = ()) -> tuple[Params, Layout]:
    """Params and layout for one stage; only the ``deep`` variants are checked against their runtime's config.

    A stage imports only the runtime code it runs, so its DVC deps can name exactly that code; `edgekit
    check` and the environment stage (which runs first on every `dvc repro`) validate every variant.
    """
    root = Path(project)
    return load_params(Path(params_file) if params_file else root / PARAMS_FILE, deep), Layout(root)


def check(project: str | Path = ".", params_file: str | Path | None = None, deep: tuple[str, ...] | None = None) -> Params:
    """Validate params.yaml, the policy file it names, the source model and the data files before any work.

    Args:
        deep: the variants checked against their runtime's config (None: every variant).
    """
    return _checked(project, params_file, deep)[0]


def _checked(project: str | Path, params_file: str | Path | None, deep: tuple[str, ...] | None) -> tuple[Params, Layout, Any]:
    """``check``'s work; also returns the layout and the resolved source model (``edgekit.modelsource.ModelSource``)."""
    from edgekit.decide.policy import require_stage
    from edgekit.policyfile import load_policy

    params, layout = _setup(project, params_file, deep)
    require_stage(load_policy(layout.root / params.policy.file, params.policy.file), params.policy.stage)
    return params, layout, _check_model_and_data(params, layout)


def _check_model_and_data(params: Params, layout: Layout):
    """Check the data sources and resolve the source model (returned), each failing with its fix."""
    from edgekit.datasets import check_sources
    from edgekit.modelsource import resolve_source

    check_sources(params, layout.root)
    return resolve_source(params.model.source)


def environment(project: str | Path = ".", out: str | Path | None = None) -> dict[str, Any]:
    """Write the environment fingerprint (``outputs/environment.json`` by default) and the source models'
    digests (``outputs/model_source.json``, ``outputs/decoder_source.json``; not with ``out``).

    It also validates everything `edgekit check` does: the stage runs first on every `dvc repro`
    (``always_changed``), so bad params or a bad policy fail before any work, and an edited local model
    folder re-runs the baseline and what follows.
    """
    from edgekit.pipeline.environment import run

    if out is not None:
        return run(Layout(Path(project)), Path(out))
    params, layout, source = _checked(project, None, None)
    return run(layout, spec=params.model.source, source=source, decoder=params.decoder)


def calibrate(project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Measure this machine's roofline: fp32/int8 GEMM throughput and memory bandwidth."""
    from edgekit.pipeline.calibrate import run

    return run(*_setup(project, params_file))


def data(project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Build the evaluation and calibration sets."""
    from edgekit.pipeline.data import run

    return run(*_setup(project, params_file))


def baseline(project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Load the source model and record the PyTorch fp32 reference outputs."""
    from edgekit.pipeline.baseline import run

    params, layout = _setup(project, params_file)
    _check_model_and_data(params, layout)
    return run(params, layout)


def optimize(variant: str, project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Make one variant folder with its manifest."""
    from edgekit.pipeline.optimize import run

    return run(*_setup(project, params_file, (variant,)), variant)


def benchmark(variant: str, project: str | Path = ".", params_file: str | Path | None = None, progress=None) -> dict[str, Any]:
    """Time every scenario of one variant, each repeat in a fresh process.

    Args:
        progress: optional ``callable(scenario_key, run_record)`` called after each process.
    """
    from edgekit.pipeline.benchmark import run

    return run(*_setup(project, params_file, (variant,)), variant, progress)


def planned_runs(variant: str, project: str | Path = ".", params_file: str | Path | None = None) -> int:
    """How many timed processes one variant's benchmark starts at least (headline_repeats + other scenarios × repeats)."""
    params, _ = _setup(project, params_file)
    return params.benchmark.planned_processes(len(params.scenarios(variant)))


def evaluate(variant: str, project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Task metric, retention and fidelity of one variant."""
    from edgekit.pipeline.evaluate import run

    return run(*_setup(project, params_file, (variant,)), variant)


def select(project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """The table of all variants against the baseline."""
    from edgekit.pipeline.select import run

    return run(*_setup(project, params_file))


def report(project: str | Path = ".", notebook: str | Path | None = None) -> Path:
    """Execute the report notebook into reports/report.ipynb and reports/report.html."""
    from edgekit.pipeline.report import run

    layout = Layout(Path(project))
    return run(layout, Path(notebook) if notebook else layout.root / REPORT_NOTEBOOK)


def gate(project: str | Path = ".", stage: str | None = None, block: bool = True) -> dict[str, Any]:
    """The verdicts of one stage (params' ``policy.stage`` by default) from outputs/gates.json.

    Args:
        block: raise when no variant passes (CI, promotion); False only reports it (``dvc repro``).

    Returns:
        ``{"stage", "policy", "passing": [...], "failing": {variant: ["speedup 1.84 < 2", ...]},
        "not_measured": {variant: reason}, "recommended", "message", "decoders"}``; ``message`` says why nothing
        qualifies, or is None; ``decoders`` is the same for the decoder variants (None without a decoder).

    Raises:
        GateError: ``block`` and no variant (or no decoder variant) passes the blocking gates of the stage, naming
            each variant's failures.
        StageInputError: when the select stage has not run.
    """
    from edgekit.pipeline.gate import run

    layout = Layout(Path(project))
    params = load_params(layout.root / PARAMS_FILE, deep=())
    return run(layout, stage or params.policy.stage, block)


def gates() -> list[dict[str, Any]]:
    """Every registered gate: name, direction, options and what it measures."""
    from edgekit.decide.gates import gates as table

    return [{"name": g.name, "direction": g.direction, "options": dict(g.options), "description": g.description}
            for g in table().values()]


def model_card(project: str | Path = ".", variant: str | None = None, notebook: str | Path | None = None) -> Path:
    """Render the certification report of one variant (the recommended one by default) to reports/."""
    from edgekit.pipeline.model_card import run

    layout = Layout(Path(project))
    return run(layout, Path(notebook) if notebook else layout.root / MODEL_CARD_NOTEBOOK, variant)


def doctor(project: str | Path = ".") -> dict[str, Any]:
    """What this machine offers: Python, lock digest, CPU and ISA, each runtime with its devices, each model kind."""
    from edgekit.fingerprint import fingerprint
    from edgekit.runtimes import runtimes

    record = fingerprint(Path(project))
    for name, config in runtimes().items():
        entry = record["runtimes"][name]
        # Asking for devices imports the runtime, so only for installed ones and only here.
        entry["devices"] = _devices(config) if entry["available"] else []
    record["recommendation"] = _recommendation(record, Layout(Path(project)))
    record["kinds"] = _kinds()
    return record


def _kinds() -> dict[str, Any]:
    """Each model kind: what it is, the params.yaml section and stages that carry it, the runtimes serving it."""
    from edgekit.tasks.base import get_task, task_names

    kinds = {}
    for name in task_names():
        task = get_task(name)
        kinds[name] = {"summary": task.summary, "params_section": task.params_section, "stages": list(task.stages),
                       "runtimes": task.runtimes(), "fairness_checks": sorted(task.fairness_checks())}
    return kinds


def _recommendation(record: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """This host's recommended runtime: from the project's measurements when they were made here, else the prior."""
    from edgekit.decide.hardware import HardwareProfile, recommend_for_host
    from edgekit.fsutil import read_json

    summary = read_json(layout.summary) if layout.summary.is_file() else None
    return recommend_for_host(HardwareProfile.from_fingerprint(record), summary)


def _devices(config) -> list[str]:
    try:
        return list(config.devices())
    except Exception as exc:  # a broken runtime install must not take doctor down
        return [f"error: {type(exc).__name__}: {exc}"]


# --- the decoder (``decoder:`` in params.yaml) ---
def _decoder_setup(project: str | Path, params_file: str | Path | None) -> tuple[Params, Layout]:
    params, layout = _setup(project, params_file, ())
    if params.decoder is None:
        raise ConfigError("decoder", None, "a decoder: section in params.yaml (see the README's 'Small language models')")
    return params, layout


def decoder_model(project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Make (or copy) the source language model and split its corpus."""
    from edgekit.pipeline.decoder_model import run

    return run(*_decoder_setup(project, params_file))


def decoder_baseline(project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """The fp32 PyTorch reference logits and greedy continuations on the held-out text."""
    from edgekit.pipeline.decoder_baseline import run

    return run(*_decoder_setup(project, params_file))


def decoder_optimize(variant: str, project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Make one decoder variant folder with its manifest."""
    from edgekit.pipeline.decoder_optimize import run

    return run(*_decoder_setup(project, params_file), variant)


def decoder_benchmark(variant: str, project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Time one decoder variant's prefill and decode in fresh processes."""
    from edgekit.pipeline.decoder_benchmark import run

    return run(*_decoder_setup(project, params_file), variant)


def decoder_evaluate(variant: str, project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Perplexity, KL and top-1 agreement of one decoder variant against the baseline."""
    from edgekit.pipeline.decoder_evaluate import run

    return run(*_decoder_setup(project, params_file), variant)


def decoder_select(project: str | Path = ".", params_file: str | Path | None = None) -> dict[str, Any]:
    """Every decoder variant against the baseline, its gates, and the recommendation."""
    from edgekit.pipeline.decoder_select import run

    return run(*_decoder_setup(project, params_file))
