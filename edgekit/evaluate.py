"""Embedding a set of sentences with any backend, and the ``evaluate`` stage's metrics.

Task metric: Spearman correlation (×100) of cosine similarity with the gold 0–5 scores.
Fidelity: cosine between each sentence's variant embedding and the baseline's (mean and min).

Example:
    >>> vectors = embed(backend, TextEncoder(folder, 128), sentences, batch_size=32, pooling=pooling)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.data import Pair
from edgekit.embedding import TextEncoder, cosine_rows, pool, spearman


def embed(backend, encoder: TextEncoder, sentences: list[str], batch_size: int, pooling: dict) -> np.ndarray:
    """Sentence vectors for ``sentences``, in order, batched with padding to the longest."""
    chunks = []
    for start in range(0, len(sentences), batch_size):
        batch = encoder.encode(sentences[start : start + batch_size])
        hidden = backend.run(batch)
        chunks.append(pool(hidden, batch["attention_mask"], pooling["pooling"], pooling["normalize"]))
    return np.concatenate(chunks).astype(np.float32)


def task_metric(vectors: np.ndarray, sentences: list[str], pairs: list[Pair]) -> float:
    """Spearman ×100 between the pairs' cosine similarity and their gold scores."""
    row = {sentence: i for i, sentence in enumerate(sentences)}
    left = vectors[[row[p.sentence1] for p in pairs]]
    right = vectors[[row[p.sentence2] for p in pairs]]
    return 100.0 * spearman(cosine_rows(left, right), np.array([p.score for p in pairs]))


def fidelity(vectors: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """How close each sentence vector stays to the baseline's."""
    cosines = cosine_rows(vectors, reference)
    return {
        "cosine_mean": round(float(cosines.mean()), 6),
        "cosine_min": round(float(cosines.min()), 6),
        "cosine_p05": round(float(np.percentile(cosines, 5)), 6),
        "sentences": int(cosines.size),
    }
