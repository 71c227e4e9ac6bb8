"""Latency statistics, and the hierarchical bootstrap behind every interval that compares runs.

Every scenario is timed in several fresh processes. Calls within one process share its memory
layout, thread placement and the machine's mood while it ran, so they are not independent of each
other: a process-to-process spread of 5% is common here while the calls of one process agree to
1%. An interval that pooled every call and resampled the calls as independent would see only the
within-process noise (issue 10: two baseline processes at 10.0 and 10.9 ms against a 5 ms variant
gave a pooled speed-up CI of [2.05, 2.11], while reruns with 5% process noise landed anywhere in
[1.81, 2.21]) and would weigh a process that ran to ``max_seconds`` more than a quiet one.

The statistic is the **median of the per-process medians** (``median_of_medians``), for the point
estimate and the interval alike:

- each process counts once, whatever its sample count;
- it is robust at both levels: a process's outlier calls move its median little, and one process
  measured at a bad moment moves the median of the processes little;
- with the percentile interval of the hierarchical bootstrap it covers the true speed-up in about
  96% of simulated runs (5% process-level and 3% within-process noise, 20–400 calls a process) from
  5, 6 or 7 processes per side (tests/test_coverage.py). The alternatives we simulated do worse: the
  geometric mean of the process medians covers 88–90% at 5–6 processes, because a bootstrap of a
  mean over K values underestimates its variance by (K − 1)/K; pooling every call covers 12–14%.

The bootstrap resamples processes with replacement, then the calls within each resampled process
(each draw of a process gets its own resample), and takes the statistic of that replicate. With
few processes per side the percentile interval undercovers (92% at 4, 89% at 3, 68% at 2: it cannot
reach past the extreme process medians), which is why the headline scenario gets
``benchmark.headline_repeats`` processes.

Percentiles of calls (p90, p99) use numpy's default ``linear`` method (Hyndman & Fan type 7) over
all calls of all processes: a tail is a property of calls, not of processes. Every bootstrap is
seeded (the pipeline seed), so a rerun on the same samples gives the same interval.

Example:
    >>> median_of_medians([[10.0, 10.2, 9.9], [10.9, 11.0, 10.8], [10.4, 10.5]])
    10.45
    >>> low, high = ratio_ci(baseline_processes, variant_processes, seed=20261124)   # speed-up CI
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit.errors import StageInputError

PERCENTILE_METHOD = "linear (Hyndman-Fan type 7, numpy default)"
BOOTSTRAP_RESAMPLES = 2000
STATISTIC = "median of per-process medians"
BOOTSTRAP_METHOD = ("hierarchical percentile bootstrap: processes resampled with replacement, then the calls within "
                    f"each resampled process; statistic: {STATISTIC}; {BOOTSTRAP_RESAMPLES} resamples")

Processes = Sequence[Sequence[float] | np.ndarray]


def scenario_key(batch_size: int, seq_length: int) -> str:
    """``(1, 32)`` → ``"b1_s32"``."""
    return f"b{batch_size}_s{seq_length}"


def process_samples(raw: dict[str, Any]) -> dict[str, list[np.ndarray]]:
    """Each scenario's latency samples (ms) in a benchmark output, one array per process, by key ``b1_s32``.

    Runs that did not finish (status other than ``ok``) have no samples and are left out.
    """
    return {scenario_key(s["batch_size"], s["seq_length"]): [np.asarray(run["samples_ms"], dtype=np.float64)
                                                              for run in s["runs"] if run.get("status", "ok") == "ok"]
            for s in raw.get("scenarios", [])}


def pooled_samples(raw: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each scenario's samples with all processes pooled: for plots and call percentiles, never for an interval."""
    return {key: np.concatenate(runs) if runs else np.array([]) for key, runs in process_samples(raw).items()}


def order_statistic_ci(samples: list[float] | np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (normal approximation to the binomial).

    Cheap enough to check inside the timing loop; the reported CI is the bootstrap one.
    """
    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    n = ordered.size
    low = max(0, int(np.floor(n / 2 - z * np.sqrt(n) / 2)))
    high = min(n - 1, int(np.ceil(n / 2 + z * np.sqrt(n) / 2)))
    return float(ordered[low]), float(ordered[high])


def relative_half_width(samples: list[float] | np.ndarray) -> float:
    """Half the CI width of the median, as a fraction of the median."""
    low, high = order_statistic_ci(samples)
    median = float(np.median(samples))
    return (high - low) / 2 / median if median else float("inf")


def _checked(processes: Processes) -> list[np.ndarray]:
    arrays = [np.asarray(p, dtype=np.float64) for p in processes]
    if not arrays or any(a.ndim != 1 or a.size == 0 for a in arrays):
        sizes = [int(a.size) for a in arrays]
        raise StageInputError(f"a hierarchical bootstrap needs at least one process, each with samples; got sample counts {sizes}",
                              "re-run the benchmark of that variant (`dvc repro benchmark@<variant>`)")
    return arrays


def median_of_medians(processes: Processes) -> float:
    """The point estimate every interval here is about: the median over processes of each process's median."""
    return float(np.median([np.median(p) for p in _checked(processes)]))


def resample_medians(samples: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``count`` bootstrap resamples of ``samples``, without building the resamples.

    A resample of n calls is n uniform draws of an index; the sorted values make its median the
    value at the middle order statistic of the drawn indices. The k-th smallest of n uniform(0, 1)
    variables is Beta(k, n − k + 1), and the next one above it is that plus (1 − it) × Beta(1, n − k);
    ``floor(n · u)`` turns them into indices without changing their order. So each median costs O(1)
    instead of O(n), which matters for a fast variant with 5000 calls a process. Exact, not an
    approximation: tests/test_stats.py checks it against brute-force resampling.
    """
    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    n = ordered.size
    k = (n + 1) // 2  # 1-based rank of the (lower) middle order statistic
    lower = rng.beta(k, n - k + 1, size=count)
    at = np.minimum((lower * n).astype(np.int64), n - 1)
    if n % 2:
        return ordered[at]
    upper = lower + (1 - lower) * rng.beta(1, n - k, size=count)
    return (ordered[at] + ordered[np.minimum((upper * n).astype(np.int64), n - 1)]) / 2


def hierarchical_medians(processes: Processes, rng: np.random.Generator, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Bootstrap replicates of ``median_of_medians``: processes drawn with replacement, then calls within each draw."""
    arrays = _checked(processes)
    picks = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
    medians = np.empty(picks.shape)
    for index, samples in enumerate(arrays):
        drawn = picks == index
        medians[drawn] = resample_medians(samples, int(drawn.sum()), rng)
    # the median of each row, as np.median computes it, from a sort: 5x faster on a few columns
    ordered, middle = np.sort(medians, axis=1), len(arrays) // 2
    return ordered[:, middle] if len(arrays) % 2 else (ordered[:, middle - 1] + ordered[:, middle]) / 2


def _percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def hierarchical_median_ci(processes: Processes, confidence: float = 0.95, seed: int = 0,
                           resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile CI of ``median_of_medians`` from the hierarchical bootstrap."""
    return _percentile_interval(hierarchical_medians(processes, np.random.default_rng(seed), resamples), confidence)


def ratio_ci(numerator: Processes, denominator: Processes, confidence: float = 0.95, seed: int = 0,
             resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile CI of ``median_of_medians(numerator) / median_of_medians(denominator)``.

    Used for speed-up (baseline processes over variant processes), so a gate like "≥ 2× at 95%"
    is decidable and the baseline's own process-to-process spread widens the interval. The two
    sides are resampled independently (they ran in different processes).

    Args:
        numerator, denominator: one sequence of latency samples (ms) per process.
    """
    rng = np.random.default_rng(seed)
    top = hierarchical_medians(numerator, rng, resamples)
    bottom = hierarchical_medians(denominator, rng, resamples)
    return _percentile_interval(top / bottom, confidence)


def median_ci(samples: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of the median of one set of independent values (e.g. paired ratios).

    Not for latency samples from several processes: use ``hierarchical_median_ci``.
    """
    rng = np.random.default_rng(seed)
    resamples = rng.choice(samples, size=(BOOTSTRAP_RESAMPLES, len(samples)), replace=True)
    return _percentile_interval(np.median(resamples, axis=1), confidence)


def summarize(samples_ms: list[float], batch_size: int, seq_length: int, seed: int = 0) -> dict[str, Any]:
    """``summarize_processes`` of the samples of a single process."""
    return summarize_processes([samples_ms], batch_size, seq_length, seed)


def summarize_processes(processes: Processes, batch_size: int, seq_length: int, seed: int = 0) -> dict[str, Any]:
    """One scenario's statistics over its processes.

    ``p50_ms`` and ``p50_ci95_ms`` are the median of per-process medians and its hierarchical
    bootstrap CI (the numbers speed-up is computed from); p90–p99, mean, std, CV and min describe
    all calls pooled; throughput is calls × batch over the total time of all calls.
    """
    arrays = _checked(processes)
    pooled = np.concatenate(arrays)
    p90, p95, p99 = np.percentile(pooled, [90, 95, 99])
    low, high = hierarchical_median_ci(arrays, seed=seed)
    mean = float(pooled.mean())
    seconds = pooled.sum() / 1000.0
    spread = pooled.size > 1 and mean
    return {
        "iterations": int(pooled.size),
        "p50_ms": round(median_of_medians(arrays), 4),
        "p90_ms": round(float(p90), 4),
        "p95_ms": round(float(p95), 4),
        "p99_ms": round(float(p99), 4),
        "mean_ms": round(mean, 4),
        "std_ms": round(float(pooled.std(ddof=1)) if pooled.size > 1 else 0.0, 4),
        "cv": round(float(pooled.std(ddof=1) / mean) if spread else 0.0, 4),
        "min_ms": round(float(pooled.min()), 4),
        "p50_ci95_ms": [round(low, 4), round(high, 4)],
        "items_per_s": round(batch_size * pooled.size / seconds, 2),
        "tokens_per_s": round(batch_size * seq_length * pooled.size / seconds, 1),
    }


def bootstrap_record(seed: int) -> dict[str, Any]:
    """What a reader needs to reproduce every interval: the method, the statistic, the resamples and the seed."""
    return {"method": BOOTSTRAP_METHOD, "statistic": STATISTIC, "resamples": BOOTSTRAP_RESAMPLES, "seed": seed,
            "percentile_method": PERCENTILE_METHOD}
