"""The drift tests against simulated truth: calibrated when nothing drifts, and they find a clear drift.

Calibration: reference and live windows drawn from one generative process, several hundred times; the
share of windows with p < alpha must stay within Monte-Carlo error (3 binomial standard errors) of alpha.
The vocabulary data is clustered (each request draws a topic, then its tokens from that topic), so the
tokens of one request are correlated as real requests' are; a token-level chi-square on the same data
is shown to raise false alarms, which is why the test permutes whole requests.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from edgekit.errors import ConfigError
from edgekit.serve.drift import (
    DriftBounds,
    DriftTest,
    drift_report,
    embedding_test,
    entropy_test,
    token_length_test,
    vocabulary_test,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("scipy") is None,
                                reason="the drift tests need scipy (pip install -e '.[pytorch]')")

ALPHA = 0.05
NULL_SIMULATIONS = 400
POWER_SIMULATIONS = 50
POWER_ALPHA = 0.01  # the policy's default bound: a clear drift must be found at it


def false_alarm_bound(simulations: int, alpha: float = ALPHA) -> float:
    """alpha plus 3 binomial standard errors of a false-alarm rate estimated from ``simulations`` windows."""
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / simulations)


def rejection_rate(draw, test, simulations: int, alpha: float, seed: int) -> float:
    """Share of simulated (reference, live) windows whose p-value is below alpha."""
    rng = np.random.default_rng(seed)
    return float(np.mean([test(*draw(rng), i).p_value < alpha for i in range(simulations)]))


# --- the generative processes -------------------------------------------------------------------------


def lengths(rng, n, mean=20.0):
    """Token counts per request: discrete and tied, overdispersed like real prompts."""
    return 1 + rng.negative_binomial(4, 4 / (4 + mean), size=n)


def entropies(rng, n, scale=0.5):
    return rng.gamma(4.0, scale, size=n)


DIM = 16
MEAN_DIRECTION = np.eye(DIM)[0]


def vectors(rng, n, direction=MEAN_DIRECTION):
    """Embeddings: a common direction plus isotropic noise, as sentences of one domain give (cosine to the
    centroid about 0.7)."""
    return 4.0 * direction + rng.normal(size=(n, DIM))


VOCABULARY, TOPICS = 500, 6
TOPIC_TOKENS = np.random.default_rng(7).dirichlet(np.full(VOCABULARY, 0.05), size=TOPICS)
EVEN_MIX = np.full(TOPICS, 1 / TOPICS)


def requests(rng, n, mix=EVEN_MIX):
    """Clustered requests: one topic per request, all its tokens from that topic's distribution."""
    topics = rng.choice(TOPICS, size=n, p=mix)
    sizes = 5 + rng.poisson(15, size=n)
    return [rng.choice(VOCABULARY, size=size, p=TOPIC_TOKENS[topic]) for topic, size in zip(topics, sizes, strict=True)]


# --- calibration --------------------------------------------------------------------------------------

def vocabulary(reference, live, i, **options):
    return vocabulary_test(reference, live, seed=i, **{"permutations": 199, **options})


NULL_CASES = {  # name: (draw one undrifted window, test it)
    "token_length": (lambda rng: (lengths(rng, 200), lengths(rng, 100)), lambda ref, live, i: token_length_test(ref, live)),
    "entropy": (lambda rng: (entropies(rng, 200), entropies(rng, 100)), lambda ref, live, i: entropy_test(ref, live)),
    "embedding": (lambda rng: (vectors(rng, 200), vectors(rng, 100)), lambda ref, live, i: embedding_test(ref, live, seed=i)),
    "vocabulary": (lambda rng: (requests(rng, 80), requests(rng, 60)), vocabulary),
}


@pytest.mark.parametrize("name", list(NULL_CASES))
def test_false_alarm_rate_is_at_most_alpha_without_drift(name):
    draw, test = NULL_CASES[name]
    rate = rejection_rate(draw, test, NULL_SIMULATIONS, ALPHA, seed=11)
    print(f"{name}: false-alarm rate {rate:.4f} at alpha {ALPHA} over {NULL_SIMULATIONS} null windows")
    assert rate <= false_alarm_bound(NULL_SIMULATIONS), f"{name} alarms on {rate:.1%} of undrifted windows"


def test_a_token_level_chi_square_would_raise_false_alarms_on_clustered_requests():
    """The same clustered null data, tested as if tokens were independent: far above alpha."""
    from scipy.stats import chi2_contingency

    def chi_square(reference, live, i):
        table = np.stack([np.bincount(np.concatenate(group), minlength=VOCABULARY) for group in (reference, live)])
        return DriftTest("naive", 0.0, chi2_contingency(table[:, table.sum(axis=0) > 0]).pvalue, 0, 0, 0.0, "")

    rate = rejection_rate(NULL_CASES["vocabulary"][0], chi_square, 100, ALPHA, seed=11)
    print(f"token-level chi-square: false-alarm rate {rate:.4f} at alpha {ALPHA}")
    assert rate > false_alarm_bound(100)


def test_binning_on_the_reference_alone_would_raise_false_alarms():
    """Why vocabulary_test bins on both groups: bins from the observed reference's own top ids, kept fixed while
    requests are permuted, make the observed split look more distant than any permutation (iid tokens here)."""
    top = 20
    flat = np.full(100, 0.01)

    def reference_binned(reference, live, i):
        counts = np.stack([np.bincount(request, minlength=100) for request in reference + live]).astype(float)
        bins = np.argsort(-counts[: len(reference)].sum(axis=0), kind="stable")[:top]
        binned = np.column_stack([counts[:, bins], counts.sum(axis=1) - counts[:, bins].sum(axis=1)])
        def distance(mask):
            p, q = mask @ binned, (1 - mask) @ binned
            p, q = p / p.sum(axis=-1, keepdims=True), q / q.sum(axis=-1, keepdims=True)
            m = (p + q) / 2
            with np.errstate(divide="ignore", invalid="ignore"):
                kl = np.where(p > 0, p * np.log2(p / m), 0).sum(-1) + np.where(q > 0, q * np.log2(q / m), 0).sum(-1)
            return kl
        observed = distance(np.arange(len(binned)) < len(reference))
        masks = np.random.default_rng(i).random((199, len(binned))).argsort(axis=1) < len(reference)
        return DriftTest("naive", 0.0, (1 + np.sum(distance(masks.astype(float)) >= observed)) / 200, 0, 0, 0.0, "")

    def draw(rng):
        return [rng.choice(100, size=20, p=flat) for _ in range(60)], [rng.choice(100, size=20, p=flat) for _ in range(60)]

    naive = rejection_rate(draw, reference_binned, 100, ALPHA, seed=3)
    ours = rejection_rate(draw, lambda reference, live, i: vocabulary(reference, live, i, top_k=top), 100, ALPHA, seed=3)
    print(f"reference-binned permutation test: false-alarm rate {naive:.4f}; both-groups binning {ours:.4f}")
    assert naive > false_alarm_bound(100) >= ours


def test_the_embedding_reference_rows_that_make_the_centroid_are_held_out():
    """Comparing the very rows that made the centroid would alarm on undrifted traffic (wide vectors, few rows)."""
    from scipy.stats import ks_2samp

    def same_rows(reference, live, i):
        centroid = reference.mean(axis=0)
        def cosine(x):
            return x @ centroid / np.linalg.norm(x, axis=1) / np.linalg.norm(centroid)
        return DriftTest("naive", 0.0, ks_2samp(cosine(reference), cosine(live)).pvalue, 0, 0, 0.0, "")

    def draw(rng):
        return rng.normal(size=(40, 64)) + 0.3, rng.normal(size=(40, 64)) + 0.3

    naive = rejection_rate(draw, same_rows, 100, ALPHA, seed=5)
    ours = rejection_rate(draw, lambda reference, live, i: embedding_test(reference, live, seed=i), 100, ALPHA, seed=5)
    print(f"embedding without a held-out half: false-alarm rate {naive:.4f}; held out {ours:.4f}")
    assert naive > false_alarm_bound(100) >= ours


# --- power --------------------------------------------------------------------------------------------

ANGLE = 0.6
ROTATED = np.cos(ANGLE) * MEAN_DIRECTION + np.sin(ANGLE) * np.eye(DIM)[1]  # the mean direction turned by 34 degrees
POWER_CASES = {
    "longer requests": (lambda rng: (lengths(rng, 200), lengths(rng, 100, mean=30)), NULL_CASES["token_length"][1]),
    "higher entropy": (lambda rng: (entropies(rng, 200), entropies(rng, 100, scale=0.7)), NULL_CASES["entropy"][1]),
    "rotated embeddings": (lambda rng: (vectors(rng, 200), vectors(rng, 100, ROTATED)), NULL_CASES["embedding"][1]),
    "shifted embeddings": (lambda rng: (vectors(rng, 200), vectors(rng, 100) + 4.0 * np.eye(DIM)[2]),  # a new component
                           NULL_CASES["embedding"][1]),
    "other topic mix": (lambda rng: (requests(rng, 80), requests(rng, 60, mix=[0.5, 0.3, 0.05, 0.05, 0.05, 0.05])),
                        lambda reference, live, i: vocabulary(reference, live, i, permutations=499)),
}


@pytest.mark.parametrize("name", list(POWER_CASES))
def test_a_clear_drift_is_detected(name):
    draw, test = POWER_CASES[name]
    power = rejection_rate(draw, test, POWER_SIMULATIONS, POWER_ALPHA, seed=13)
    print(f"{name}: detected in {power:.0%} of {POWER_SIMULATIONS} windows at alpha {POWER_ALPHA}")
    assert power >= 0.9


def test_the_effects_point_the_way_of_the_drift():
    rng = np.random.default_rng(1)
    assert token_length_test(lengths(rng, 200), lengths(rng, 200, mean=30)).effect > 0
    assert entropy_test(entropies(rng, 200, scale=0.7), entropies(rng, 200)).effect < 0
    # many rows, so the centroids are sharp: the effect is then the angle between the mean directions
    assert embedding_test(vectors(rng, 4000), vectors(rng, 2000, ROTATED)).effect == pytest.approx(1 - np.cos(ANGLE), abs=0.02)
    assert embedding_test(vectors(rng, 4000), vectors(rng, 2000)).effect < 0.005


# --- the report ---------------------------------------------------------------------------------------


def result(name, p_value, n_live=100):
    return DriftTest(name, 0.1, p_value, 500, n_live, 0.0, "a test")


def test_report_applies_bonferroni_over_the_tests_judged():
    tests = [result("a", 0.004), result("b", 0.002), result("c", 0.5, n_live=10)]
    report = drift_report(tests, DriftBounds(alpha=0.01, min_live=50))
    assert report["correction"] == "bonferroni" and report["alpha"] == 0.01
    assert [t["threshold"] for t in report["tests"]] == [0.005, 0.005, None]  # k = 2: c has too few live requests
    assert [t["alarm"] for t in report["tests"]] == [True, True, False]
    assert report["alarm"] is True and report["insufficient"] == ["c"]


def test_report_does_not_alarm_above_the_corrected_threshold():
    report = drift_report([result(name, 0.006) for name in "abcd"], DriftBounds(alpha=0.01))
    assert all(t["threshold"] == 0.0025 and not t["alarm"] for t in report["tests"])  # each < 0.01, none < 0.01 / 4
    assert report["alarm"] is False and report["insufficient"] == []


def test_too_few_live_requests_is_insufficient_data_not_an_alarm():
    report = drift_report([result("a", 1e-9, n_live=49)], DriftBounds(min_live=50))
    assert report["alarm"] is False and report["insufficient"] == ["a"] and report["tests"][0]["threshold"] is None


def test_an_empty_window_is_insufficient_data_and_writes_json_nulls():
    empty = [token_length_test([3, 4, 5], []), entropy_test([1.0, 2.0], []),
             embedding_test(np.ones((4, 3)) + np.eye(4, 3), np.zeros((0, 3))), vocabulary_test([[1, 2]], [])]
    report = drift_report(empty, DriftBounds(min_live=2))
    assert report["insufficient"] == ["token_length", "entropy", "embedding", "vocabulary"] and report["alarm"] is False
    assert all(t["p_value"] is None and t["n_live"] == 0 for t in report["tests"])


@pytest.mark.parametrize(("kwargs", "field"), [({"alpha": 0}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"alpha": "0.01"}, "alpha"),
                                               ({"min_live": 1}, "min_live"), ({"min_live": 2.5}, "min_live")])
def test_bounds_are_validated_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"serving.drift.{field}") as error:
        DriftBounds(**kwargs)
    assert error.value.field == f"serving.drift.{field}"


# --- bad input ----------------------------------------------------------------------------------------

BAD_INPUTS = [
    (lambda: token_length_test([], [3]), "reference_lengths"),
    (lambda: token_length_test([3, 4], [5, math.nan]), "live_lengths"),
    (lambda: entropy_test([1.0, math.nan], [1.0]), "reference_entropies"),
    (lambda: entropy_test([[1.0, 2.0]], [1.0]), "reference_entropies"),
    (lambda: embedding_test(np.zeros((0, 4)), np.ones((3, 4))), "reference_vectors"),
    (lambda: embedding_test(np.ones((5, 4)), np.ones((3, 5))), "live_vectors"),
    (lambda: embedding_test(np.full((5, 4), math.nan), np.ones((3, 4))), "reference_vectors"),
    (lambda: embedding_test(np.ones((5, 4)), np.zeros((3, 4))), "live_vectors"),
    (lambda: vocabulary_test([], [[1, 2]]), "reference_requests"),
    (lambda: vocabulary_test([[1.5, 2]], [[1, 2]]), "reference_requests"),
    (lambda: vocabulary_test([[1, 2]], [[]]), "live_requests"),
]


@pytest.mark.parametrize(("call", "argument"), BAD_INPUTS)
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
