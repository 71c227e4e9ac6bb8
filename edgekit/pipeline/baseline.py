"""The ``baseline`` stage: load the source model, normalize it into models/source, and record the
PyTorch fp32 reference embeddings of the test sentences and of the fairness check's sentences
(the evaluate stage compares each variant with them, pair by pair, for its confidence intervals),
with the baseline's Spearman on the test pairs and on the validation pairs (what accuracy-aware
optimizers are told to keep).

Example:
    >>> run(params, Layout(Path(".")))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.datasets import Pair, load_eval_pairs, load_validation_pairs, unique_sentences
from edgekit.errors import ModelSourceError
from edgekit.fsutil import file_digests, staged_dir, tree_digest, write_json
from edgekit.layout import Layout
from edgekit.modelsource import ModelSource, embedding_config, resolve_source
from edgekit.params import Params
from edgekit.tasks.embedding.encoding import TextEncoder
from edgekit.tasks.embedding.fairness import CounterfactualPair, FairnessCheck, get_fairness_check, load_fairness_set
from edgekit.tasks.embedding.metrics import embed, task_metric


def save_source_model(source: ModelSource, out: Path) -> dict[str, Any]:
    """Load the source with transformers and save it (safetensors, fast tokenizer) into ``out``."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.folder, use_fast=True)
        model = AutoModel.from_pretrained(source.folder)
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"model.source = {source.spec!r}: transformers cannot load {source.folder} ({exc})",
                               "check that the folder holds a complete Hugging Face model") from exc
    if not tokenizer.is_fast:
        raise ModelSourceError(f"model.source = {source.spec!r} has no fast tokenizer (tokenizer.json)",
                               "edgekit tokenizes with the `tokenizers` library; convert the tokenizer first")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    pooling = embedding_config(source.folder)
    write_json(out / "embedding.json", pooling)
    origin = file_digests(source.folder)
    record = {
        "spec": source.spec, "kind": source.kind, "version": source.version,
        "origin_sha256": tree_digest(origin), "model_type": model.config.model_type,
        "parameters": int(sum(p.numel() for p in model.parameters())), **pooling,
    }
    write_json(out / "source.json", record)
    return record


def run(params: Params, layout: Layout) -> dict[str, Any]:
    """Write models/source, outputs/baseline (reference embeddings) and metrics/baseline.json.

    Raises:
        StageInputError: the data stage has not run.
        ModelSourceError: the source model cannot be loaded.
    """
    from edgekit.runtimes.pytorch.backend import PyTorchBackend

    source = resolve_source(params.model.source)
    test, validation = load_eval_pairs(layout), load_validation_pairs(layout)
    check, fairness_pairs = _fairness_inputs(params, layout)
    with staged_dir(layout.source_model) as folder:
        record = save_source_model(source, folder)
    variant = params.baseline_variant
    backend = PyTorchBackend(variant.precision, variant.options, params.threads)
    backend.load(layout.source_model)
    encoder = TextEncoder(layout.source_model, params.model.max_seq_length)

    def vectors_of(sentences: list[str]) -> np.ndarray:
        return embed(backend, encoder, sentences, params.evaluate_batch_size, record)

    sentences, fairness_sentences = unique_sentences(test), check.sentences(fairness_pairs)
    vectors, fairness_vectors = vectors_of(sentences), vectors_of(fairness_sentences)
    with staged_dir(layout.baseline_dir) as folder:
        np.save(folder / layout.reference_embeddings.name, vectors)
        write_json(folder / layout.reference_sentences.name, sentences)
        np.save(folder / layout.fairness_reference_embeddings.name, fairness_vectors)
        write_json(folder / layout.fairness_reference_sentences.name, fairness_sentences)
    metrics = {
        "source": record["spec"], "kind": record["kind"], "model_type": record["model_type"],
        "parameters": record["parameters"],
        "model_sha256": tree_digest(file_digests(layout.source_model)),
        "spearman": round(task_metric(vectors, sentences, test), 4),
        "pairs": len(test), "sentences": len(sentences),
        **_validation_metric(vectors_of, validation),
        "fairness_score": check.score(fairness_vectors, fairness_sentences, fairness_pairs, params.fairness.tolerance)["score"],
        "settings": backend.describe(),
    }
    write_json(layout.baseline_metrics, metrics)
    return metrics


def _fairness_inputs(params: Params, layout: Layout) -> tuple[FairnessCheck, list[CounterfactualPair]]:
    """The fairness check and its counterfactual pairs, read before any model work."""
    return get_fairness_check(params.fairness.check), load_fairness_set(layout.fairness_dir)


def _validation_metric(vectors_of, pairs: list[Pair]) -> dict[str, Any]:
    """The baseline's Spearman on the validation pairs: the reference accuracy-aware optimizers keep to."""
    sentences = unique_sentences(pairs)
    return {"spearman_validation": round(task_metric(vectors_of(sentences), sentences, pairs), 4), "validation_pairs": len(pairs)}
