"""Drift: has the live traffic moved away from the data the model was evaluated on?

``edgekit monitor`` compares one window of live requests with reference data (the validation set)
on input features (token counts, token ids) and output features (an encoder's embeddings, a
decoder's next-token entropy). Each test returns a p-value that is calibrated: when nothing has
drifted it falls below alpha at most an alpha share of the time (``tests/test_drift.py`` checks
this against simulated truth). ``drift_report`` then judges the tests of one window together.

Example:
    >>> tests = [
    ...     token_length_test(reference_lengths, live_lengths),
    ...     vocabulary_test(reference_token_ids, live_token_ids),
    ...     embedding_test(reference_vectors, live_vectors),
    ... ]
    >>> report = drift_report(tests, DriftBounds(alpha=0.01, min_live=50))
    >>> report["alarm"], [t["name"] for t in report["tests"] if t["alarm"]]
    (True, ['vocabulary'])
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import ConfigError, MissingDependencyError


@dataclass(frozen=True)
class DriftTest:
    """One drift test's result on one window.

    ``effect`` is a size a person can read (a difference of medians, a distance); ``p_value`` is NaN
    (and ``to_dict`` writes null) when the window has no live request to compare.
    """

    name: str
    statistic: float
    p_value: float
    n_reference: int
    n_live: int
    effect: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The fields, NaN written as None so the record is valid JSON."""
        return {key: None if isinstance(value, float) and math.isnan(value) else value
                for key, value in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class DriftBounds:
    """The policy's drift bound (policy.yaml ``serving.drift``).

    Args:
        alpha: family-wise false-alarm rate of one window's tests, in (0, 1).
        min_live: live requests a test needs before it is judged; fewer is "insufficient data", no alarm.

    Raises:
        ConfigError: naming ``serving.drift.alpha`` or ``serving.drift.min_live``.
    """

    alpha: float = 0.01
    min_live: int = 50

    def __post_init__(self):
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real) or not 0 < self.alpha < 1:
            raise ConfigError("serving.drift.alpha", self.alpha, "a number between 0 and 1 (exclusive), e.g. 0.01", "policy.yaml")
        if isinstance(self.min_live, bool) or not isinstance(self.min_live, numbers.Integral) or self.min_live < 2:
            raise ConfigError("serving.drift.min_live", self.min_live, "an integer of at least 2, e.g. 50", "policy.yaml")


def token_length_test(reference_lengths: Sequence[float], live_lengths: Sequence[float]) -> DriftTest:
    """Two-sample KS test on the number of tokens per request.

    Args:
        reference_lengths: token count of each reference request.
        live_lengths: token count of each live request in the window.

    Returns:
        The KS statistic; ``effect`` is the live median minus the reference median, in tokens.

    Raises:
        ValueError: an empty reference, or a NaN or infinite length.
    """
    reference = _sample(reference_lengths, "reference_lengths")
    live = _sample(live_lengths, "live_lengths", allow_empty=True)
    # Counts are discrete, so the two samples share values; KS p-values assume no ties and are then
    # conservative (too large), which keeps the false-alarm rate at or below alpha.
    detail = "two-sample KS test on the number of tokens per request"
    return _ks_test("token_length", reference, live, detail)


def entropy_test(reference_entropies: Sequence[float], live_entropies: Sequence[float]) -> DriftTest:
    """Two-sample KS test on a decoder's next-token entropy per request.

    Args:
        reference_entropies: entropy of each reference request (any one log base, the same for both).
        live_entropies: entropy of each live request in the window.

    Returns:
        The KS statistic; ``effect`` is the live median minus the reference median.

    Raises:
        ValueError: an empty reference, or a NaN or infinite entropy.
    """
    reference = _sample(reference_entropies, "reference_entropies")
    live = _sample(live_entropies, "live_entropies", allow_empty=True)
    return _ks_test("entropy", reference, live, "two-sample KS test on the next-token entropy per request")


def embedding_test(reference_vectors: Any, live_vectors: Any, *, seed: int = 0) -> DriftTest:
    """Output drift of an encoder: KS test on the cosine similarity of each request's vector to the reference centroid.

    A random half of the reference rows (seeded) defines the centroid and the other half is compared:
    a row is more similar to a centroid it helped make, so comparing those rows would make live traffic
    look drifted when it is not.

    Args:
        reference_vectors: reference embeddings, one row per request (at least 2 rows).
        live_vectors: live embeddings, the same width.
        seed: seeds the split of the reference rows.

    Returns:
        The KS statistic; ``effect`` is 1 - cosine(reference centroid, live centroid).

    Raises:
        ValueError: fewer than 2 reference rows, mismatched widths, a NaN or an all-zero row.
    """
    reference = _unit_rows(reference_vectors, "reference_vectors")
    if len(reference) < 2:
        raise ValueError(f"reference_vectors has {len(reference)} row(s); pass at least 2 (half define the centroid)")
    order = np.random.default_rng(seed).permutation(len(reference))
    centroid = _unit(reference[order[: len(reference) // 2]].mean(axis=0), "reference_vectors")
    detail = (f"two-sample KS test on cosine similarity to the centroid of {len(reference) // 2} reference rows, "
              f"the other {len(reference) - len(reference) // 2} reference rows against the live rows")
    live = _unit_rows(live_vectors, "live_vectors", allow_empty=True, width=reference.shape[1])
    if len(live) == 0:
        return _no_live("embedding", len(reference), detail)
    result = _ks_test("embedding", reference[order[len(reference) // 2:]] @ centroid, live @ centroid, detail)
    effect = 1.0 - float(centroid @ _unit(live.mean(axis=0), "live_vectors"))
    return dataclasses.replace(result, n_reference=len(reference), effect=effect)


def vocabulary_test(reference_requests: Sequence[Sequence[int]], live_requests: Sequence[Sequence[int]], *,
                    top_k: int = 200, permutations: int = 499, seed: int = 0) -> DriftTest:
    """Input drift of the vocabulary: Jensen-Shannon distance between the pooled token distributions.

    The tokens of one request are not independent (a request is about one thing), so a token-level
    chi-square test counts each request many times over and raises false alarms; the p-value here
    comes from permuting whole requests between the two groups instead.

    Args:
        reference_requests: the token ids of each reference request.
        live_requests: the token ids of each live request in the window.
        top_k: the bins are the top_k most frequent ids of both groups together, plus one "other" bin.
        permutations: random reassignments of requests; the smallest p-value is 1 / (1 + permutations),
            so keep it at least (number of tests) / alpha - 1 for the test to be able to alarm.
        seed: seeds the permutations.

    Returns:
        The JS distance (base 2, in [0, 1]), also the ``effect``, and the permutation p-value.

    Raises:
        ValueError: an empty reference, a request that is not a sequence of integers, or top_k or permutations < 1.
    """
    if top_k < 1 or permutations < 1:
        raise ValueError(f"top_k = {top_k} and permutations = {permutations}; pass both as integers of at least 1")
    reference, reference_rows = _flat_tokens(reference_requests, "reference_requests")
    live, live_rows = _flat_tokens(live_requests, "live_requests", allow_empty=True)
    detail = (f"Jensen-Shannon distance between pooled token distributions over the top {top_k} ids of both groups "
              f"and an 'other' bin, p-value from {permutations} permutations of whole requests")
    if live_rows == 0:
        return _no_live("vocabulary", reference_rows, detail)
    # The bins come from both groups together, a choice no permutation changes: binned on the reference's
    # own top ids, the observed split alone is binned where the reference is heavy by chance, and 99% of
    # undrifted windows alarmed at alpha 0.05 (simulated: 2000-id Zipf vocabulary, top 200, 60 + 60 requests).
    bins = _top_ids(np.hstack([reference, live]), top_k)
    counts = np.vstack([_request_bin_counts(reference, reference_rows, bins), _request_bin_counts(live, live_rows, bins)])
    observed = _js_distance(counts[:reference_rows].sum(axis=0), counts[reference_rows:].sum(axis=0))
    groups = _random_groups(np.random.default_rng(seed), len(counts), reference_rows, permutations)
    first = groups @ counts  # pooled counts of each permutation's "reference" group, one row each
    null = _js_distance(first, counts.sum(axis=0) - first)
    # the tolerance keeps a permutation that equals the observed split counted despite float rounding
    p_value = (1 + int(np.sum(null >= observed - 1e-12))) / (1 + permutations)
    return DriftTest("vocabulary", float(observed), p_value, reference_rows, live_rows, float(observed), detail)


def drift_report(tests: list[DriftTest], bounds: DriftBounds) -> dict[str, Any]:
    """Judge one window's tests together against the policy's bound.

    Several tests look at the same window, so with each judged at alpha the chance that one of them
    alarms on undrifted traffic would grow with their number; Bonferroni (alarm when p < alpha / k,
    k = the tests judged) keeps that family-wise false-alarm rate at or below alpha whatever the
    dependence between the tests. A test with fewer than ``min_live`` live requests is not judged.

    Args:
        tests: the window's test results.
        bounds: alpha and min_live.

    Returns:
        ``{"alpha", "correction": "bonferroni", "tests": [... "alarm", "threshold"], "alarm", "insufficient"}``;
        an insufficient test has ``alarm`` False and ``threshold`` None.
    """
    judged = [test for test in tests if test.n_live >= bounds.min_live]
    threshold = bounds.alpha / len(judged) if judged else None
    entries = []
    for test in tests:
        enough = test.n_live >= bounds.min_live
        alarm = bool(enough and test.p_value < threshold)
        entries.append({**test.to_dict(), "alarm": alarm, "threshold": threshold if enough else None})
    return {"alpha": bounds.alpha, "correction": "bonferroni", "tests": entries,
            "alarm": any(entry["alarm"] for entry in entries),
            "insufficient": [test.name for test in tests if test.n_live < bounds.min_live]}


def _ks_test(name: str, reference: np.ndarray, live: np.ndarray, detail: str) -> DriftTest:
    if len(live) == 0:
        return _no_live(name, len(reference), detail)
    try:
        from scipy import stats  # scipy comes with the pytorch extra, not the light core
    except ImportError as exc:
        raise MissingDependencyError("scipy", "pytorch", "the drift tests use its KS test") from exc
    result = stats.ks_2samp(reference, live)
    effect = float(np.median(live) - np.median(reference))
    return DriftTest(name, float(result.statistic), float(result.pvalue), len(reference), len(live), effect, detail)


def _no_live(name: str, n_reference: int, detail: str) -> DriftTest:
    """An empty window: nothing to compare, so ``drift_report`` calls it insufficient data."""
    return DriftTest(name, math.nan, math.nan, n_reference, 0, math.nan, detail)


def _sample(values: Sequence[float], name: str, *, allow_empty: bool = False) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a flat sequence of numbers, one per request ({exc})") from exc
    if array.ndim != 1:
        raise ValueError(f"{name} has shape {array.shape}; pass a flat sequence, one number per request")
    if array.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty; pass the values of at least one request")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has {int((~np.isfinite(array)).sum())} NaN or infinite value(s); drop those requests")
    return array


def _unit_rows(vectors: Any, name: str, *, allow_empty: bool = False, width: int | None = None) -> np.ndarray:
    """The rows scaled to length 1: cosine similarity only sees directions, so the centroid should too."""
    array = np.asarray(vectors, dtype=float)
    if array.size == 0 and allow_empty:
        return array.reshape(0, width or 0)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name} has shape {array.shape}; pass a non-empty 2-D array, one row per request")
    if width is not None and array.shape[1] != width:
        raise ValueError(f"{name} has width {array.shape[1]}, the reference {width}; embed both with the same model")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has NaN or infinite values; drop those rows")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name} has {int((norms == 0).sum())} all-zero row(s), which have no direction; drop them")
    return array / norms


def _unit(vector: np.ndarray, name: str) -> np.ndarray:
    norm = np.linalg.norm(vector)
    if norm == 0:
        raise ValueError(f"the rows of {name} average to zero, so they have no centroid direction; pass more rows")
    return vector / norm


def _flat_tokens(requests: Sequence[Sequence[int]], name: str, *, allow_empty: bool = False) -> tuple[np.ndarray, int]:
    """All the token ids, each with its request's row number: shape (2, tokens), and the number of requests."""
    arrays = [np.asarray(request) for request in requests]
    if not arrays and not allow_empty:
        raise ValueError(f"{name} is empty; pass the token ids of at least one request")
    bad = [i for i, a in enumerate(arrays) if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer))]
    if bad:
        raise ValueError(f"{name}[{bad[0]}] is not a flat sequence of integer token ids; pass one list of ids per request")
    ids = np.concatenate([a.astype(np.int64) for a in arrays]) if arrays else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(arrays)), [a.size for a in arrays])
    if arrays and ids.size == 0:
        raise ValueError(f"{name} has no tokens at all; pass requests with their token ids")
    return np.vstack([ids, rows]), len(arrays)


def _top_ids(tokens: np.ndarray, top_k: int) -> np.ndarray:
    """The top_k most frequent ids, sorted by id (ties in frequency go to the smaller id)."""
    ids, counts = np.unique(tokens[0], return_counts=True)
    return np.sort(ids[np.argsort(-counts, kind="stable")[:top_k]])


def _request_bin_counts(tokens: np.ndarray, n_rows: int, bins: np.ndarray) -> np.ndarray:
    """Counts per request (rows) and bin (columns: ``bins``, then "other"), by one bincount."""
    position = np.searchsorted(bins, tokens[0]).clip(max=len(bins) - 1)
    column = np.where(bins[position] == tokens[0], position, len(bins))
    flat = np.bincount(tokens[1] * (len(bins) + 1) + column, minlength=n_rows * (len(bins) + 1))
    return flat.reshape(n_rows, len(bins) + 1).astype(float)


def _random_groups(rng: np.random.Generator, n_total: int, n_first: int, permutations: int) -> np.ndarray:
    """One 0/1 row per permutation, marking the n_first requests it puts in the first group."""
    chosen = rng.random((permutations, n_total)).argsort(axis=1)[:, :n_first]
    groups = np.zeros((permutations, n_total))
    np.put_along_axis(groups, chosen, 1.0, axis=1)
    return groups


def _js_distance(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2) between count vectors, row by row: H(mixture) - mean of the two H."""
    p = first / first.sum(axis=-1, keepdims=True)
    q = second / second.sum(axis=-1, keepdims=True)
    return np.sqrt(np.clip(_entropy((p + q) / 2) - (_entropy(p) + _entropy(q)) / 2, 0.0, 1.0))


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log2(p, out=np.zeros_like(p), where=p > 0)).sum(axis=-1)
