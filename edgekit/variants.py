"""The ``optimize`` and ``evaluate`` stages for one variant.

Both run the runtime in a child process (``edgekit.isolation``) with the time limit from params.
A variant whose runtime is missing is written as ``skipped`` (reason and install command), one
that crashes or runs out of time as ``failed`` (the error), and the pipeline goes on with the others.

Example:
    >>> optimize_variant(params, Layout(Path(".")), "ort-int8")["status"]
    'ok'
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit.data import load_eval_pairs, load_validation_pairs, read_sentences, unique_sentences
from edgekit.deps import probe
from edgekit.embedding import TextEncoder
from edgekit.errors import StageInputError, install_command
from edgekit.evaluate import embed, fairness_record, quality
from edgekit.fsutil import read_json, staged_dir, write_json
from edgekit.isolation import run_child
from edgekit.layout import Layout
from edgekit.manifest import read_manifest, status_record, verify_manifest, write_manifest
from edgekit.params import Params, parse_params
from edgekit.runtimes import get_runtime
from edgekit.runtimes.base import OptimizeContext

CARRIED_FILES = ("embedding.json", "source.json")


def _clear(folder: Path) -> None:
    for path in folder.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _tool_versions(config) -> dict[str, str | None]:
    deps = config.dependencies + config.optimize_dependencies
    return {"edgekit": __version__, "python": platform.python_version(),
            **{d.distribution: probe(d).version for d in deps}}


def _payload(params: Params, layout: Layout, name: str, **extra: Any) -> dict[str, Any]:
    return {"params": params.raw, "root": str(layout.root.resolve()), "variant": name, **extra}


def _unpack(payload: dict[str, Any]) -> tuple[Params, Layout, Any]:
    params = parse_params(payload["params"], deep=(payload["variant"],))
    return params, Layout(Path(payload["root"])), params.variant(payload["variant"])


def optimize_variant(params: Params, layout: Layout, name: str) -> dict[str, Any]:
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
            payload = _payload(params, layout, name, out=str(out))
            result = run_child("edgekit.variants:optimize_in_child", payload, params.optimize_timeout_seconds,
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


def optimize_in_child(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side of ``optimize_variant``: run the runtime's optimizer into ``payload['out']``."""
    params, layout, variant = _unpack(payload)
    config = get_runtime(variant.runtime)
    backend = config.backend(for_optimize=True)(variant.precision, variant.options, params.threads)
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
    )


def _baseline_validation_metric(layout: Layout) -> float:
    metrics = read_json(layout.baseline_metrics)
    if "spearman_validation" not in metrics:
        raise StageInputError(f"{layout.baseline_metrics} has no spearman_validation (made before the validation split)",
                              "run `dvc repro baseline`")
    return metrics["spearman_validation"]


def evaluate_variant(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    """Task metric, retention (with its CI) and fidelity on the test pairs, and the fairness check, of one
    variant; written to metrics/evaluate/<name>.json."""
    params.variant(name)
    folder = layout.variant_dir(name)
    manifest = read_manifest(folder)
    result = status_record(manifest)
    if manifest["status"] == "ok":
        verify_manifest(folder)
        outcome = run_child("edgekit.variants:evaluate_in_child", _payload(params, layout, name),
                            params.evaluate_timeout_seconds, "evaluate.timeout_seconds")
        result.update(outcome)
    write_json(layout.evaluate_metrics(name), result)
    return result


def evaluate_in_child(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side of ``evaluate_variant``: embed the test and fairness sentences and score them."""
    params, layout, variant = _unpack(payload)
    folder = layout.variant_dir(variant.name)
    config = get_runtime(variant.runtime)
    backend = config.backend()(variant.precision, variant.options, params.threads)
    backend.load(folder)
    pairs = load_eval_pairs(layout)
    sentences = unique_sentences(pairs)
    reference = _reference(layout.reference_embeddings, layout.reference_sentences, sentences)
    encoder = TextEncoder(folder, params.model.max_seq_length)
    pooling = read_json(folder / "embedding.json")
    vectors = embed(backend, encoder, sentences, params.evaluate_batch_size, pooling)
    return {**quality(vectors, reference, sentences, pairs, params.seed),
            "fairness": _fairness(params, layout, backend, encoder, pooling)}


def _reference(vectors_path: Path, sentences_path: Path, sentences: list[str]) -> np.ndarray:
    """The baseline's vectors of ``sentences``; a baseline made for other sentences is stale."""
    if read_json(sentences_path) != sentences:
        raise StageInputError(f"{sentences_path} lists other sentences than the data stage wrote (stale baseline)",
                              "run `dvc repro baseline`")
    reference = np.load(vectors_path)
    if reference.shape[0] != len(sentences):
        raise StageInputError(f"{vectors_path} has {reference.shape[0]} rows for {len(sentences)} sentences", "run `dvc repro baseline`")
    return reference


def _fairness(params: Params, layout: Layout, backend, encoder: TextEncoder, pooling: dict) -> dict[str, Any]:
    """The fairness check on this variant's own embeddings of the counterfactual sentences, against the baseline's."""
    from edgekit.fairness import get_fairness_check, load_fairness_set

    check = get_fairness_check(params.fairness.check)
    pairs = load_fairness_set(layout.fairness_dir)
    sentences = check.sentences(pairs)
    vectors = embed(backend, encoder, sentences, params.evaluate_batch_size, pooling)
    reference = _reference(layout.fairness_reference_embeddings, layout.fairness_reference_sentences, sentences)
    return fairness_record(check, vectors, reference, sentences, pairs, params.fairness.tolerance, params.seed)
