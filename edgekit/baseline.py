"""The ``baseline`` stage: load the source model, normalize it into models/source, and record the
PyTorch fp32 reference embeddings of the evaluation sentences.

Example:
    >>> make_baseline(params, Layout(Path(".")))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data import load_eval_pairs, unique_sentences
from edgekit.embedding import TextEncoder
from edgekit.errors import ModelSourceError
from edgekit.evaluate import embed, task_metric
from edgekit.fsutil import file_digests, staged_dir, tree_digest, write_json
from edgekit.layout import Layout
from edgekit.modelsource import ModelSource, embedding_config, resolve_source
from edgekit.params import Params


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


def make_baseline(params: Params, layout: Layout) -> dict[str, Any]:
    """Write models/source, the reference embeddings and metrics/baseline.json."""
    from edgekit.runtimes.pytorch.backend import PyTorchBackend

    source = resolve_source(params.model.source)
    pairs = load_eval_pairs(layout)
    with staged_dir(layout.source_model) as folder:
        record = save_source_model(source, folder)
    variant = params.baseline_variant
    backend = PyTorchBackend(variant.precision, variant.options, params.threads)
    backend.load(layout.source_model)
    sentences = unique_sentences(pairs)
    encoder = TextEncoder(layout.source_model, params.model.max_seq_length)
    vectors = embed(backend, encoder, sentences, params.evaluate_batch_size, record)
    with staged_dir(layout.baseline_dir) as folder:
        np.save(folder / layout.reference_embeddings.name, vectors)
        write_json(folder / "sentences.json", sentences)
    metrics = {
        "source": record["spec"], "kind": record["kind"], "model_type": record["model_type"],
        "parameters": record["parameters"],
        "model_sha256": tree_digest(file_digests(layout.source_model)),
        "spearman": round(task_metric(vectors, sentences, pairs), 4),
        "pairs": len(pairs), "sentences": len(sentences),
        "settings": backend.describe(),
    }
    write_json(layout.baseline_metrics, metrics)
    return metrics
