"""The ``optimize`` and ``evaluate`` stages for one variant.

A variant whose runtime is missing is written as ``skipped`` (reason and install command), one
whose optimization crashes as ``failed`` (the error), and the pipeline goes on with the others.

Example:
    >>> optimize_variant(params, Layout(Path(".")), "ort-int8")["status"]
    'ok'
"""

from __future__ import annotations

import platform
import shutil
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit.data import load_eval_pairs, read_sentences, unique_sentences
from edgekit.deps import probe
from edgekit.embedding import TextEncoder
from edgekit.errors import EdgekitError, StageInputError, install_command
from edgekit.evaluate import embed, fidelity, task_metric
from edgekit.fsutil import read_json, staged_dir, write_json
from edgekit.layout import Layout
from edgekit.manifest import read_manifest, verify_manifest, write_manifest
from edgekit.params import Params
from edgekit.runtimes import get_runtime

CARRIED_FILES = ("embedding.json", "source.json")


def _clear(folder: Path) -> None:
    for path in folder.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _tool_versions(config) -> dict[str, str | None]:
    deps = config.dependencies + config.optimize_dependencies
    return {"edgekit": __version__, "python": platform.python_version(),
            **{d.distribution: probe(d).version for d in deps}}


def optimize_variant(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    """Make models/variants/<name> with its manifest; return the manifest."""
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
            record.update(_run_optimize(config, variant, params, layout, out))
        return write_manifest(out, record)


def _run_optimize(config, variant, params: Params, layout: Layout, out: Path) -> dict[str, Any]:
    try:
        backend = config.backend(for_optimize=True)(variant.precision, variant.options, params.threads)
        steps = backend.optimize(layout.source_model, out, read_sentences(layout.calibration))
    except EdgekitError:
        raise
    except Exception as exc:  # a runtime's own failure is the variant's result, not the pipeline's
        _clear(out)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}
    for name in CARRIED_FILES:
        shutil.copy2(layout.source_model / name, out / name)
    return {"status": "ok", "optimization": steps}


def status_record(manifest: dict[str, Any]) -> dict[str, Any]:
    """The fields a later stage copies from a variant that was not made."""
    keys = ("variant", "runtime", "precision", "status", "reason", "install", "error")
    return {k: manifest[k] for k in keys if k in manifest}


def evaluate_variant(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    """Task metric, retention and fidelity of one variant; written to metrics/evaluate/<name>.json."""
    params.variant(name)
    folder = layout.variant_dir(name)
    manifest = read_manifest(folder)
    if manifest["status"] != "ok":
        result = status_record(manifest)
    else:
        result = _evaluate(params, layout, folder, verify_manifest(folder))
    write_json(layout.evaluate_metrics(name), result)
    return result


def _evaluate(params: Params, layout: Layout, folder: Path, manifest: dict) -> dict[str, Any]:
    config = get_runtime(manifest["runtime"])
    options = config.options.parse(manifest["options"], "options")
    backend = config.backend()(manifest["precision"], options, params.threads)
    backend.load(folder)
    pairs = load_eval_pairs(layout)
    sentences = unique_sentences(pairs)
    reference = np.load(layout.reference_embeddings)
    if reference.shape[0] != len(sentences):
        raise StageInputError(f"{layout.reference_embeddings} has {reference.shape[0]} rows for {len(sentences)} sentences",
                              "run `dvc repro baseline`")
    encoder = TextEncoder(folder, params.model.max_seq_length)
    vectors = embed(backend, encoder, sentences, params.evaluate_batch_size, read_json(folder / "embedding.json"))
    metric = task_metric(vectors, sentences, pairs)
    baseline = read_json(layout.baseline_metrics)["spearman"]
    return {
        **status_record(manifest),
        "spearman": round(metric, 4),
        "retention": round(metric / baseline, 6) if baseline else None,
        **fidelity(vectors, reference),
        "pairs": len(pairs),
    }
