"""Latency statistics and the similarity metrics shared by every runtime."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.bench.stats import median_ci, summarize
from edgekit.embedding import cosine_rows, pool, rankdata, spearman

ONE_TO_HUNDRED = [float(i) for i in range(1, 101)]


def test_percentiles_of_one_to_hundred_use_the_linear_definition():
    # Type 7: position (n - 1) * q, interpolated; for 1..100 the value is 1 + 99 q.
    summary = summarize(ONE_TO_HUNDRED, batch_size=1, seq_length=32)
    assert summary["iterations"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p90_ms"] == pytest.approx(90.1)
    assert summary["p95_ms"] == pytest.approx(95.05)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["mean_ms"] == pytest.approx(50.5)
    assert summary["min_ms"] == 1.0
    assert summary["std_ms"] == pytest.approx(29.0115, abs=1e-4)  # sample std (ddof=1)
    assert summary["cv"] == pytest.approx(29.0115 / 50.5, abs=1e-4)


def test_percentiles_agree_with_numpy_on_an_unsorted_sample():
    rng = np.random.default_rng(7)
    samples = rng.lognormal(0.0, 0.3, size=257)
    summary = summarize(list(samples), batch_size=1, seq_length=32)
    for q in (50, 90, 95, 99):
        assert summary[f"p{q}_ms"] == pytest.approx(np.percentile(samples, q, method="linear"), abs=1e-4)


def test_the_docstring_example():
    assert summarize([1.0, 1.1, 0.9, 1.2], batch_size=1, seq_length=32)["p50_ms"] == 1.05


def test_median_ci_contains_the_median_and_is_seeded():
    rng = np.random.default_rng(3)
    samples = rng.normal(10.0, 1.0, size=200)
    low, high = median_ci(samples, seed=11)
    assert low < np.median(samples) < high
    assert high - low < 1.0  # 200 samples of sd 1: the median is known to well within 1 ms
    assert median_ci(samples, seed=11) == (low, high)
    assert median_ci(samples, seed=12) != (low, high)


def test_summary_ci_brackets_p50_and_repeats():
    first = summarize(ONE_TO_HUNDRED, batch_size=1, seq_length=32, seed=5)
    second = summarize(ONE_TO_HUNDRED, batch_size=1, seq_length=32, seed=5)
    low, high = first["p50_ci95_ms"]
    assert low <= first["p50_ms"] <= high
    assert low < high
    assert first == second


def test_throughput_is_items_over_total_seconds():
    # 100 calls of 2 ms = 0.2 s; 4 items per call -> 400 items / 0.2 s.
    summary = summarize([2.0] * 100, batch_size=4, seq_length=32)
    assert summary["items_per_s"] == pytest.approx(2000.0)
    assert summary["tokens_per_s"] == pytest.approx(2000.0 * 32)
    assert summary["std_ms"] == 0.0
    assert summary["cv"] == 0.0
    assert summary["p50_ci95_ms"] == [2.0, 2.0]


def test_throughput_uses_total_time_not_the_median():
    summary = summarize([1.0] * 9 + [91.0], batch_size=1, seq_length=16)
    assert summary["p50_ms"] == 1.0
    assert summary["items_per_s"] == pytest.approx(10 / 0.1)


def test_spearman_of_monotone_and_reversed_data():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, x[::-1] * 10) == pytest.approx(-1.0)


def test_spearman_with_ties_by_hand():
    # x ranks: 1, 2.5, 2.5, 4; y ranks: 1, 2, 3, 4.
    # centred: x = -1.5, 0, 0, 1.5; y = -1.5, -0.5, 0.5, 1.5
    # sum xy = 4.5; sum xx = 4.5; sum yy = 5  ->  4.5 / sqrt(22.5)
    x = np.array([1.0, 2.0, 2.0, 3.0])
    y = np.array([10.0, 20.0, 30.0, 40.0])
    assert spearman(x, y) == pytest.approx(4.5 / np.sqrt(22.5))
    assert spearman(x, y) == pytest.approx(0.9486833, abs=1e-7)


def test_spearman_does_not_modify_its_inputs_and_is_symmetric():
    x = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 5.0])
    x_copy, y_copy = x.copy(), y.copy()
    assert spearman(x, y) == pytest.approx(spearman(y, x))
    assert spearman(x, y) == pytest.approx(0.5)  # d = 1, 0, -2, 2, -1: 1 - 6 * 10 / (5 * 24)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(y, y_copy)


def test_spearman_of_a_constant_is_zero_not_nan():
    assert spearman(np.ones(5), np.arange(5.0)) == 0.0


def test_rankdata_averages_ties():
    np.testing.assert_array_equal(rankdata(np.array([10.0, 20.0, 20.0, 5.0])), [2.0, 3.5, 3.5, 1.0])
    np.testing.assert_array_equal(rankdata(np.array([7.0, 7.0, 7.0])), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(rankdata(np.array([3.0, 1.0, 2.0])), [3.0, 1.0, 2.0])


def test_rankdata_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = rng.integers(0, 6, size=int(rng.integers(1, 40))).astype(float) / 2
        np.testing.assert_array_equal(rankdata(values), stats.rankdata(values))
        other = rng.normal(size=values.size)
        if values.size > 2 and np.ptp(values) > 0:
            assert spearman(values, other) == pytest.approx(stats.spearmanr(values, other).statistic)


def hidden_and_mask():
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=np.int64)
    return hidden, mask


def test_mean_pooling_averages_only_real_tokens():
    hidden, mask = hidden_and_mask()
    vectors = pool(hidden, mask, "mean", normalize=False)
    np.testing.assert_allclose(vectors[0], hidden[0, :3].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(vectors[1], hidden[1, :2].mean(axis=0), rtol=1e-6)


def test_padded_positions_do_not_change_any_pooling():
    hidden, mask = hidden_and_mask()
    changed = hidden.copy()
    changed[0, 3] = 1000.0
    changed[1, 2:] = -1000.0
    for pooling in ("mean", "cls", "max"):
        for normalize in (False, True):
            np.testing.assert_allclose(
                pool(changed, mask, pooling, normalize), pool(hidden, mask, pooling, normalize), rtol=1e-6, err_msg=pooling
            )


def test_normalize_gives_unit_vectors():
    hidden, mask = hidden_and_mask()
    for pooling in ("mean", "cls", "max"):
        vectors = pool(hidden * 50, mask, pooling, normalize=True)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    raw = pool(hidden, mask, "mean", normalize=False)
    unit = pool(hidden, mask, "mean", normalize=True)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5)


def test_cls_and_max_pooling():
    hidden, mask = hidden_and_mask()
    np.testing.assert_array_equal(pool(hidden, mask, "cls", normalize=False), hidden[:, 0])
    vectors = pool(hidden, mask, "max", normalize=False)
    np.testing.assert_array_equal(vectors[0], hidden[0, :3].max(axis=0))
    np.testing.assert_array_equal(vectors[1], hidden[1, :2].max(axis=0))
    assert vectors.dtype == np.float32


def test_unknown_pooling_is_named():
    hidden, mask = hidden_and_mask()
    with pytest.raises(ValueError, match=r"unknown pooling 'sum'; expected mean, cls or max"):
        pool(hidden, mask, "sum", normalize=False)


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [-3.0, -4.0]])
    np.testing.assert_allclose(cosine_rows(a, b), [0.0, 1.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(cosine_rows(np.array([[1.0, 1.0]]), np.array([[1.0, 0.0]])), [np.sqrt(0.5)])
