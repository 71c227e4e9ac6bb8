"""Latency statistics (percentiles, the hierarchical bootstrap) and the similarity metrics shared by every runtime."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.bench.stats import (
    hierarchical_median_ci,
    median_ci,
    median_of_medians,
    process_samples,
    ratio_ci,
    resample_medians,
    summarize,
    summarize_processes,
)
from edgekit.tasks.embedding.encoding import cosine_rows, pool, rankdata, spearman

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


def test_resample_medians_have_the_exact_distribution_of_a_resample_median():
    # n = 3: the median of 3 draws from {a, b, c} is a when at least two draws are a: 7/27, c likewise, b 13/27.
    rng = np.random.default_rng(0)
    medians = resample_medians(np.array([3.0, 1.0, 2.0]), 200_000, rng)
    shares = [np.mean(medians == v) for v in (1.0, 2.0, 3.0)]
    np.testing.assert_allclose(shares, [7 / 27, 13 / 27, 7 / 27], atol=0.004)
    # n = 2: both draws a (1/4), both b (1/4), one each (1/2, median (a + b) / 2)
    medians = resample_medians(np.array([1.0, 3.0]), 200_000, rng)
    np.testing.assert_allclose([np.mean(medians == v) for v in (1.0, 2.0, 3.0)], [0.25, 0.5, 0.25], atol=0.004)


def test_resample_medians_match_brute_force_resampling():
    rng = np.random.default_rng(5)
    for n in (40, 41):
        samples = rng.lognormal(0.0, 0.4, size=n)
        brute = np.median(samples[rng.integers(0, n, size=(40_000, n))], axis=1)
        fast = resample_medians(samples, 40_000, rng)
        quantiles = [2.5, 10, 25, 50, 75, 90, 97.5]
        np.testing.assert_allclose(np.percentile(fast, quantiles), np.percentile(brute, quantiles), rtol=0.01)


def test_every_process_counts_once_whatever_its_sample_count():
    quiet = [10.0] * 20
    long_noisy = [12.0] * 2000  # ran to max_seconds
    other = [10.5] * 20
    assert median_of_medians([quiet, long_noisy, other]) == 10.5
    assert np.median(quiet + long_noisy + other) == 12.0  # pooling lets the long process decide


def test_a_process_spread_widens_the_interval_and_the_interval_is_seeded():
    rng = np.random.default_rng(1)
    together = [rng.normal(10.0, 0.1, 300) for _ in range(6)]
    apart = [rng.normal(mean, 0.1, 300) for mean in (9.5, 9.8, 10.0, 10.2, 10.4, 10.7)]
    narrow, wide = hierarchical_median_ci(together, seed=3), hierarchical_median_ci(apart, seed=3)
    assert narrow[1] - narrow[0] < 0.1 < wide[1] - wide[0]
    assert wide[0] < median_of_medians(apart) < wide[1]
    assert hierarchical_median_ci(apart, seed=3) == wide and hierarchical_median_ci(apart, seed=4) != wide


def issue_example(rng) -> tuple[list, list]:
    """Issue 10: two baseline processes at 10.0 and 10.9 ms (the slow one shorter), a 5 ms variant."""
    base = [10.0 * np.exp(rng.normal(0, 0.01, 300)), 10.9 * np.exp(rng.normal(0, 0.01, 200))]
    variant = [5.0 * np.exp(rng.normal(0, 0.01, 400)), 5.0 * np.exp(rng.normal(0, 0.01, 400))]
    return base, variant


def test_the_issue_example_pooled_certifies_two_x_the_hierarchical_interval_spans_both_processes():
    base, variant = issue_example(np.random.default_rng(10))
    pooled_low, pooled_high = ratio_ci([np.concatenate(base)], [np.concatenate(variant)], seed=0)
    low, high = ratio_ci(base, variant, seed=0)
    assert pooled_low > 2.005 and pooled_high - pooled_low < 0.02  # the false certainty the issue reports
    # the baseline processes alone allow 10.0 / 5 = 2.0 to 10.9 / 5 = 2.18; the interval keeps both
    assert low < 2.0 * 1.002 and high > 2.18 * 0.998 and high - low > 10 * (pooled_high - pooled_low)


def test_summarize_processes_reads_the_median_of_medians_and_pools_the_tail():
    processes = [[1.0] * 50 + [9.0], [2.0] * 10, [3.0] * 10]
    summary = summarize_processes(processes, batch_size=1, seq_length=32)
    assert summary["p50_ms"] == 2.0 and summary["iterations"] == 71
    pooled = np.concatenate([np.asarray(p) for p in processes])
    assert summary["p99_ms"] == pytest.approx(np.percentile(pooled, 99), abs=1e-4)
    low, high = summary["p50_ci95_ms"]
    assert low <= 2.0 <= high and (low, high) == (1.0, 3.0)  # any of the three processes could be the middle one


def test_process_samples_keeps_processes_apart_and_skips_failed_runs():
    raw = {"scenarios": [{"batch_size": 1, "seq_length": 32, "runs": [
        {"status": "ok", "samples_ms": [1.0, 2.0]}, {"status": "ok", "samples_ms": [3.0]}, {"status": "failed"}]}]}
    found = process_samples(raw)["b1_s32"]
    assert [p.tolist() for p in found] == [[1.0, 2.0], [3.0]]


def test_an_empty_process_is_a_stage_input_error():
    from edgekit.errors import StageInputError

    with pytest.raises(StageInputError, match=r"sample counts \[3, 0\]"):
        median_of_medians([[1.0, 2.0, 3.0], []])


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
