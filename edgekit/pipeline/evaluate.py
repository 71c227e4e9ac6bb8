"""The ``evaluate`` stage for one variant: task metric, retention (with its CI) and fidelity on the test
pairs, and the fairness check, written to metrics/evaluate/<name>.json.

The variant runs in a child process (``edgekit.isolation``), like the optimizer; the scoring is
``edgekit.quality``. A variant that was not made keeps its manifest's status.

Example:
    >>> run(params, Layout(Path(".")), "ort-int8")["retention"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.datasets import load_eval_pairs, unique_sentences
from edgekit.embedding import TextEncoder
from edgekit.errors import StageInputError
from edgekit.fsutil import read_json, write_json
from edgekit.isolation import run_child, unpack_variant, variant_payload
from edgekit.layout import Layout
from edgekit.manifest import read_manifest, status_record, verify_manifest
from edgekit.params import Params
from edgekit.quality import embed, fairness_record, quality
from edgekit.runtimes import get_runtime


def run(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    """Task metric, retention (with its CI) and fidelity on the test pairs, and the fairness check, of one
    variant; written to metrics/evaluate/<name>.json."""
    params.variant(name)
    folder = layout.variant_dir(name)
    manifest = read_manifest(folder)
    result = status_record(manifest)
    if manifest["status"] == "ok":
        verify_manifest(folder)
        outcome = run_child("edgekit.pipeline.evaluate:child", variant_payload(params, layout, name),
                            params.evaluate_timeout_seconds, "evaluate.timeout_seconds")
        result.update(outcome)
    write_json(layout.evaluate_metrics(name), result)
    return result


def child(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side of ``run``: embed the test and fairness sentences and score them."""
    params, layout, variant = unpack_variant(payload)
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
