"""Embedding a set of sentences with any backend, and the ``evaluate`` stage's metrics and their CIs.

Task metric: Spearman correlation (×100) of cosine similarity with the gold 0–5 scores, on the test pairs.
Retention: the variant's Spearman ÷ the baseline's, both on the test pairs, with a paired bootstrap CI
(each resample of pairs scores both models on the same pairs). Fidelity: cosine between each sentence's
variant embedding and the baseline's (mean and min). The fairness score gets a cluster bootstrap CI
(templates are resampled: the pairs of one template share its probe and sentences, so they are not
independent), and its retention against the baseline a paired one.

Example:
    >>> vectors = embed(backend, TextEncoder(folder, 128), sentences, batch_size=32, pooling=pooling)
    >>> quality(vectors, reference, sentences, pairs, seed=20261124)["retention_ci95"]  # ort-int8, 315 test pairs
    [0.986476, 1.000078]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.datasets import Pair, unique_sentences
from edgekit.tasks.embedding.encoding import TextEncoder, cosine_rows, pool, spearman

if TYPE_CHECKING:  # not at run time: the optimize stage imports this module and must not depend on fairness.py
    from edgekit.tasks.embedding.fairness import CounterfactualPair, FairnessCheck

# Fixed rather than in params: the gates read `*_ci95`, so the level is part of the name. 2000 resamples
# keep the percentile ends stable to about ±0.001 and cost about 0.1 s per variant.
CONFIDENCE = 0.95
RESAMPLES = 2000


def embed(backend, encoder: TextEncoder, sentences: list[str], batch_size: int, pooling: dict) -> np.ndarray:
    """Sentence vectors for ``sentences``, in the order given.

    Batches are formed in order of token length, so each pads only to its own longest sentence: on the
    default data that is about half the tokens of batching in file order, which matters most for the
    slow runtimes (MLX on a Linux CPU). The baseline embeds through this function too, so every model
    sees the same batches.
    """
    if not sentences:
        return np.zeros((0, 0), dtype=np.float32)
    rows, share = embed_share(backend, encoder, sentences, batch_size, pooling, (0, 1))
    return gather([(rows, share)], len(sentences))


def embed_share(backend, encoder: TextEncoder, sentences: list[str], batch_size: int, pooling: dict,
                share: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The vectors of one share of ``embed``'s batches: share ``(k, n)`` takes batches k, k + n, k + 2n, ...

    The batches are the ones ``embed`` forms, so ``n`` processes that each embed one share and ``gather``
    give exactly ``embed``'s vectors, bit for bit.

    Returns:
        the sentences' indices (rows of ``sentences``) and their vectors, row for row.
    """
    index, count = share
    tokens = encoder.encode(sentences)  # once: each batch is its rows, cut to its own longest sentence
    lengths = tokens["attention_mask"].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)][index::count]
    chunks = []
    for rows in batches:
        width = int(lengths[rows].max())
        batch = {name: np.ascontiguousarray(values[rows, :width]) for name, values in tokens.items()}
        hidden = backend.run(batch)
        chunks.append(pool(hidden, batch["attention_mask"], pooling["pooling"], pooling["normalize"]))
    if not chunks:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(batches), np.concatenate(chunks)


def gather(shares: list[tuple[np.ndarray, np.ndarray]], count: int) -> np.ndarray:
    """``embed_share``'s shares put back in sentence order; every one of ``count`` rows must be in exactly one."""
    shares = [(rows, vectors) for rows, vectors in shares if len(rows)]
    seen = np.concatenate([rows for rows, _ in shares]) if shares else np.zeros(0, dtype=np.int64)
    if len(seen) != count or not np.array_equal(np.sort(seen), np.arange(count)):
        raise ValueError(f"the shares hold rows {len(seen)} ({len(np.unique(seen))} distinct) of {count} sentences")
    out = np.empty((count, shares[0][1].shape[1]), dtype=shares[0][1].dtype)
    for rows, vectors in shares:
        out[rows] = vectors
    return out


def pair_cosines(vectors: np.ndarray, sentences: list[str], pairs: list[Pair]) -> np.ndarray:
    """Cosine similarity of each pair's two sentences (``vectors[i]`` embeds ``sentences[i]``)."""
    row = {sentence: i for i, sentence in enumerate(sentences)}
    return cosine_rows(vectors[[row[p.sentence1] for p in pairs]], vectors[[row[p.sentence2] for p in pairs]])


def task_metric(vectors: np.ndarray, sentences: list[str], pairs: list[Pair]) -> float:
    """Spearman ×100 between the pairs' cosine similarity and their gold scores."""
    return 100.0 * spearman(pair_cosines(vectors, sentences, pairs), np.array([p.score for p in pairs]))


class PairValidator:
    """What accuracy-aware optimizers score a candidate with: the task metric on labeled pairs, and a value per pair.

    An optimizer such as NNCF's accuracy control ranks layers by the items that got worst. Spearman does not split
    into per-item values, and one pair alone has none, so each pair's value is how close its cosine stays to the
    gold score scaled to 0–1 (higher is better).

    Example:
        >>> spearman_x100, per_pair = PairValidator(encoder, pooling)(runner, validation_pairs)
    """

    BATCH = 32

    def __init__(self, encoder: TextEncoder, pooling: dict):
        self.encoder = encoder
        self.pooling = pooling

    def __call__(self, runner, pairs: list[Pair]) -> tuple[float, list[float]]:
        """``runner.run(batch)`` gives hidden states as a ``Backend`` does."""
        pairs = list(pairs)
        sentences = unique_sentences(pairs)
        vectors = embed(runner, self.encoder, sentences, self.BATCH, self.pooling)
        per_pair = -np.abs(pair_cosines(vectors, sentences, pairs) - np.array([p.score / 5.0 for p in pairs]))
        return task_metric(vectors, sentences, pairs), per_pair.tolist()


def fidelity(vectors: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """How close each sentence vector stays to the baseline's."""
    cosines = cosine_rows(vectors, reference)
    return {
        "cosine_mean": round(float(cosines.mean()), 6),
        "cosine_min": round(float(cosines.min()), 6),
        "cosine_p05": round(float(np.percentile(cosines, 5)), 6),
        "sentences": int(cosines.size),
    }


def resampled_ranks(values: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Average ranks from 1 (ties share their mean rank) of ``values[picks[r]]``, for each row ``r``.

    Counts per distinct value instead of sorting each resample: a few hundredths of a second for
    2000 resamples of 300 pairs, where a sort per row takes several times that.
    """
    uniques, inverse = np.unique(values, return_inverse=True)
    rows, distinct = picks.shape[0], len(uniques)
    codes = inverse[picks]
    flat = (codes + np.arange(rows)[:, None] * distinct).ravel()
    counts = np.bincount(flat, minlength=rows * distinct).reshape(rows, distinct)
    mean_rank = np.cumsum(counts, axis=1) - counts + (counts + 1) / 2.0
    return np.take_along_axis(mean_rank, codes, axis=1)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, (x * y).sum(axis=1) / safe, 0.0)  # as ``spearman``: constant ranks give 0


def _interval(values: np.ndarray, digits: int = 4) -> list[float] | None:
    """The two-sided percentile interval at ``CONFIDENCE`` of the finite ``values`` (None if there are none)."""
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return [round(float(low), digits), round(float(high), digits)]


def bootstrap_settings(seed: int, unit: str) -> dict[str, Any]:
    """The record of how the CIs next to it were made."""
    return {"method": f"percentile bootstrap resampling {unit}s; the retention's is paired (variant and baseline "
                      "scored on the same resample)",
            "confidence": CONFIDENCE, "resamples": RESAMPLES, "seed": seed, "unit": unit}


def spearman_intervals(own: np.ndarray, base: np.ndarray, gold: np.ndarray, seed: int) -> dict[str, Any]:
    """Paired bootstrap CIs of the variant's Spearman ×100 and of its retention (variant ÷ baseline).

    Args:
        own: the variant's cosine per test pair.
        base: the baseline's cosine per test pair, same order.
        gold: the gold score per pair.
        seed: the pipeline seed (the same resamples for every variant).

    Returns:
        ``{"spearman_ci95": [low, high], "retention_ci95": [low, high] or None}``; resamples where the
        baseline's Spearman is not positive give no ratio.
    """
    picks = np.random.default_rng(seed).integers(0, len(gold), size=(RESAMPLES, len(gold)))
    gold_ranks = resampled_ranks(gold, picks)
    own_rho = _pearson_rows(resampled_ranks(own, picks), gold_ranks)
    base_rho = _pearson_rows(resampled_ranks(base, picks), gold_ranks)
    ratio = np.where(base_rho > 0, own_rho / np.where(base_rho > 0, base_rho, 1.0), np.nan)
    return {"spearman_ci95": _interval(100.0 * own_rho), "retention_ci95": _interval(ratio, 6)}


def quality(vectors: np.ndarray, reference: np.ndarray, sentences: list[str], pairs: list[Pair], seed: int) -> dict[str, Any]:
    """The evaluate record of one variant on the test pairs: Spearman, retention with CIs, and fidelity.

    Args:
        vectors: the variant's vectors of ``sentences``.
        reference: the baseline's vectors of the same sentences (outputs/baseline).
        sentences: the test sentences, in the row order of both.
        pairs: the test pairs.
        seed: the pipeline seed, for the bootstrap.
    """
    gold = np.array([p.score for p in pairs])
    own, base = pair_cosines(vectors, sentences, pairs), pair_cosines(reference, sentences, pairs)
    metric, baseline = 100.0 * spearman(own, gold), 100.0 * spearman(base, gold)
    return {
        "spearman": round(metric, 4),
        "baseline_spearman": round(baseline, 4),
        "retention": round(metric / baseline, 6) if baseline > 0 else None,
        **spearman_intervals(own, base, gold, seed),
        **fidelity(vectors, reference),
        "pairs": len(pairs),
        "bootstrap": bootstrap_settings(seed, "test pair"),
    }


def fairness_intervals(own: np.ndarray, base: np.ndarray, clusters: list[str], seed: int) -> dict[str, Any]:
    """Cluster bootstrap CIs of a fairness score (the mean of per-pair results) and of its retention.

    Args:
        own: the variant's per-pair result (1.0 fair, 0.0 not), whose mean is its score.
        base: the baseline's, same pairs and order.
        clusters: per pair, the unit resampled as a whole (the template: its pairs share sentences).
        seed: the pipeline seed.

    Returns:
        ``{"score_ci95", "retention_ci95"}``; the retention is the variant's score ÷ the baseline's on
        the same resampled pairs (resamples where the baseline scores 0 give no ratio).
    """
    _, index = np.unique(np.asarray(clusters), return_inverse=True)
    count = int(index.max()) + 1
    own_sums, base_sums = np.bincount(index, own, count), np.bincount(index, base, count)
    sizes = np.bincount(index, minlength=count).astype(np.float64)
    draws = np.random.default_rng(seed).multinomial(count, np.full(count, 1.0 / count), size=RESAMPLES).astype(np.float64)
    own_total, base_total = draws @ own_sums, draws @ base_sums
    ratio = np.where(base_total > 0, own_total / np.where(base_total > 0, base_total, 1.0), np.nan)
    return {"score_ci95": _interval(own_total / (draws @ sizes)), "retention_ci95": _interval(ratio)}


def fairness_record(check: FairnessCheck, vectors: np.ndarray, reference: np.ndarray, sentences: list[str],
                    pairs: list[CounterfactualPair], tolerance: float, seed: int) -> dict[str, Any]:
    """The check's result for a variant, with the baseline's score, the retention and their CIs.

    Args:
        check: the fairness check (params ``evaluate.fairness.check``).
        vectors: the variant's vectors of ``sentences``.
        reference: the baseline's vectors of the same sentences (outputs/baseline).
        sentences: ``check.sentences(pairs)``, the row order of both.
        pairs: the counterfactual pairs.
        tolerance: params ``evaluate.fairness.tolerance``.
        seed: the pipeline seed, for the bootstrap.

    Returns:
        ``check.score(...)`` plus ``baseline_score``, ``retention``, ``score_ci95``, ``retention_ci95``
        (None for a check without per-pair results) and ``bootstrap``.
    """
    result = check.score(vectors, sentences, pairs, tolerance)
    baseline_score = check.score(reference, sentences, pairs, tolerance)["score"]
    own, base = check.pair_results(vectors, sentences, pairs, tolerance), check.pair_results(reference, sentences, pairs, tolerance)
    if own is None or base is None:
        intervals = {"score_ci95": None, "retention_ci95": None}
        ratio = result["score"] / baseline_score if baseline_score else None
    else:
        intervals = fairness_intervals(own, base, [p.template_id for p in pairs], seed)
        ratio = float(own.mean() / base.mean()) if base.mean() > 0 else None
    return {**result, "baseline_score": baseline_score, "retention": None if ratio is None else round(ratio, 4), **intervals,
            "bootstrap": bootstrap_settings(seed, "template")}
