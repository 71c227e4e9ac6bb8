"""The ``evaluate`` stage for one variant: task metric, retention (with its CI) and fidelity on the test
pairs, and the fairness check, written to metrics/evaluate/<name>.json.

The variant runs in a child process (``edgekit.isolation``), like the optimizer, which embeds the sentences;
this process scores them (``edgekit.tasks.embedding.metrics``). A runtime that computes on one thread whatever ``threads``
says (MLX on a CPU) embeds in ``threads`` children at once, each a share of the same batches, so the vectors
are bit-identical to one child's. A variant that was not made keeps its manifest's status.

Example:
    >>> run(params, Layout(Path(".")), "ort-int8")["retention"]
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.datasets import load_eval_pairs, unique_sentences
from edgekit.errors import StageInputError
from edgekit.fsutil import read_json, write_json
from edgekit.isolation import run_child, unpack_variant, variant_payload
from edgekit.layout import Layout
from edgekit.manifest import read_manifest, status_record, verify_manifest
from edgekit.params import Params
from edgekit.runtimes import get_runtime
from edgekit.tasks.embedding.encoding import TextEncoder
from edgekit.tasks.embedding.metrics import embed_share, fairness_record, gather, quality


def run(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    """Task metric, retention (with its CI) and fidelity on the test pairs, and the fairness check, of one
    variant; written to metrics/evaluate/<name>.json."""
    variant = params.variant(name)
    folder = layout.variant_dir(name)
    manifest = read_manifest(folder)
    result = status_record(manifest)
    if manifest["status"] == "ok":
        verify_manifest(folder)
        processes = get_runtime(variant.runtime).evaluate_processes(variant.options, params.threads)
        result.update(_score(params, layout, name, processes))
    write_json(layout.evaluate_metrics(name), result)
    return result


def _score(params: Params, layout: Layout, name: str, processes: int) -> dict[str, Any]:
    """Embed in ``processes`` children (each a share of the batches, ``embed_share``), then score here."""
    from edgekit.tasks.embedding.fairness import get_fairness_check, load_fairness_set

    pairs = load_eval_pairs(layout)
    sentences = unique_sentences(pairs)
    check = get_fairness_check(params.fairness.check)
    fairness_pairs = load_fairness_set(layout.fairness_dir)
    fairness_sentences = check.sentences(fairness_pairs)
    reference = _reference(layout.reference_embeddings, layout.reference_sentences, sentences)
    fairness_reference = _reference(layout.fairness_reference_embeddings, layout.fairness_reference_sentences, fairness_sentences)
    with tempfile.TemporaryDirectory(prefix="edgekit-evaluate-") as scratch:
        payloads = [variant_payload(params, layout, name, share=[k, processes], out=str(Path(scratch) / f"share-{k}.npz"))
                    for k in range(processes)]
        with ThreadPoolExecutor(processes) as pool:
            outcomes = list(pool.map(lambda payload: run_child("edgekit.pipeline.evaluate:child", payload,
                                                               params.evaluate_timeout_seconds, "evaluate.timeout_seconds"),
                                     payloads))
        failed = next((outcome for outcome in outcomes if outcome["status"] != "ok"), None)
        if failed:
            return failed
        shares = [_read_share(payload["out"]) for payload in payloads]
    vectors = gather([(share["rows"], share["vectors"]) for share in shares], len(sentences))
    fairness_vectors = gather([(share["fairness_rows"], share["fairness_vectors"]) for share in shares], len(fairness_sentences))
    return {**quality(vectors, reference, sentences, pairs, params.seed),
            "fairness": fairness_record(check, fairness_vectors, fairness_reference, fairness_sentences, fairness_pairs,
                                        params.fairness.tolerance, params.seed),
            "embedding_processes": processes}


def child(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side of ``run``: embed this child's share of the test and fairness sentences' batches to ``out``."""
    from edgekit.tasks.embedding.fairness import get_fairness_check, load_fairness_set

    params, layout, variant = unpack_variant(payload)
    folder = layout.variant_dir(variant.name)
    config = get_runtime(variant.runtime)
    backend = config.backend("embedding")(variant.precision, variant.options, params.threads)
    backend.load(folder)
    encoder = TextEncoder(folder, params.model.max_seq_length)
    pooling = read_json(folder / "embedding.json")
    share = (payload["share"][0], payload["share"][1])
    sentences = unique_sentences(load_eval_pairs(layout))
    fairness_sentences = get_fairness_check(params.fairness.check).sentences(load_fairness_set(layout.fairness_dir))
    rows, vectors = embed_share(backend, encoder, sentences, params.evaluate_batch_size, pooling, share)
    fairness_rows, fairness_vectors = embed_share(backend, encoder, fairness_sentences, params.evaluate_batch_size, pooling, share)
    with open(payload["out"], "wb") as out:
        np.savez(out, rows=rows, vectors=vectors, fairness_rows=fairness_rows, fairness_vectors=fairness_vectors)
    return {}


def _read_share(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as share:
        return {key: share[key] for key in share.files}


def _reference(vectors_path: Path, sentences_path: Path, sentences: list[str]) -> np.ndarray:
    """The baseline's vectors of ``sentences``; a baseline made for other sentences is stale."""
    if read_json(sentences_path) != sentences:
        raise StageInputError(f"{sentences_path} lists other sentences than the data stage wrote (stale baseline)",
                              "run `dvc repro baseline`")
    reference = np.load(vectors_path)
    if reference.shape[0] != len(sentences):
        raise StageInputError(f"{vectors_path} has {reference.shape[0]} rows for {len(sentences)} sentences", "run `dvc repro baseline`")
    return reference
