"""The ``optimize`` stage for one variant: models/variants/<name> with its manifest.

The runtime's optimizer runs in a child process (``edgekit.isolation``) with the time limit from
params. A variant whose runtime is missing is written as ``skipped`` (reason and install command),
one that crashes or runs out of time as ``failed`` (the error), and the pipeline goes on with the others.

Example:
    >>> run(params, Layout(Path(".")), "ort-int8")["status"]
    'ok'
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.datasets import load_validation_pairs, read_sentences
from edgekit.deps import probe
from edgekit.errors import StageInputError, install_command
from edgekit.fsutil import read_json, staged_dir
from edgekit.isolation import run_child, unpack_variant, variant_payload
from edgekit.layout import Layout
from edgekit.manifest import write_manifest
from edgekit.params import Params
from edgekit.runtimes import get_runtime
from edgekit.tasks.embedding.backend import OptimizeContext
from edgekit.tasks.embedding.encoding import TextEncoder

CARRIED_FILES = ("embedding.json", "source.json")


def _clear(folder: Path) -> None:
    for path in folder.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _tool_versions(config) -> dict[str, str | None]:
    deps = config.dependencies + config.optimize_dependencies
    return {"edgekit": __version__, "python": platform.python_version(),
            **{d.distribution: probe(d).version for d in deps}}


def run(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    """Make models/variants/<name> with its manifest; return the manifest.

    A variant that cannot be made is still a manifest: ``skipped`` (runtime not installed, or it
    does not support the model: ``reason``) or ``failed`` (crash, time-out, or the runtime's own
    error: ``error`` and ``hint``), so the later stages record it and the pipeline goes on.

    Raises:
        StageInputError: the baseline stage has not run.
        EdgekitError: the runtime's child raised an error that ``stops_pipeline`` (a project error).
    """
    variant = params.variant(name)
    config = get_runtime(variant.runtime)
    source = layout.source_model
    if not (source / "source.json").is_file():
        raise StageInputError(f"{source} has no source.json", "run `dvc repro baseline`")
    record: dict[str, Any] = {
        "variant": name, "runtime": variant.runtime, "precision": variant.precision,
        "options": variant.options.to_dict(), "source": read_json(source / "source.json"),
        "source_sha256": read_json(layout.baseline_metrics)["model_sha256"], "tools": _tool_versions(config),
    }
    with staged_dir(layout.variant_dir(name)) as out:
        missing = config.missing(for_optimize=True)
        if missing:
            names = ", ".join(d.distribution for d in missing)
            record.update(status="skipped", reason=f"{names} not installed", install=install_command(config.extra))
        else:
            payload = variant_payload(params, layout, name, out=str(out))
            result = run_child("edgekit.pipeline.optimize:child", payload, params.optimize_timeout_seconds,
                               "optimize.timeout_seconds")
            record.update(_optimize_outcome(result, layout, out))
        return write_manifest(out, record)


def _optimize_outcome(result: dict[str, Any], layout: Layout, out: Path) -> dict[str, Any]:
    """The manifest fields for the child's result; a variant not made keeps only its record."""
    if result["status"] != "ok":
        _clear(out)  # no half-made model files next to a failed manifest
        return result
    for name in CARRIED_FILES:
        shutil.copy2(layout.source_model / name, out / name)
    return {"status": "ok", "optimization": result["optimization"]}


def child(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side of ``run``: run the runtime's optimizer into ``payload['out']``."""
    params, layout, variant = unpack_variant(payload)
    config = get_runtime(variant.runtime)
    backend = config.backend("embedding", for_optimize=True)(variant.precision, variant.options, params.threads)
    with tempfile.TemporaryDirectory(prefix=f"edgekit-{variant.name}-") as scratch:
        steps = backend.optimize(layout.source_model, Path(payload["out"]), _context(params, layout, Path(scratch)))
    return {"optimization": steps}


def _context(params: Params, layout: Layout, scratch: Path) -> OptimizeContext:
    # Validation pairs only: an optimizer that tuned on the test pairs would grade its own homework.
    return OptimizeContext(
        calibration=read_sentences(layout.calibration),
        validation_pairs=load_validation_pairs(layout),
        baseline_metric=_baseline_validation_metric(layout),
        max_seq_length=params.model.max_seq_length,
        pooling=read_json(layout.source_model / "embedding.json"),
        seed=params.seed,
        scratch=scratch,
        encoder=TextEncoder(layout.source_model, params.model.max_seq_length),
    )


def _baseline_validation_metric(layout: Layout) -> float:
    metrics = read_json(layout.baseline_metrics)
    if "spearman_validation" not in metrics:
        raise StageInputError(f"{layout.baseline_metrics} has no spearman_validation (made before the validation split)",
                              "run `dvc repro baseline`")
    return metrics["spearman_validation"]
