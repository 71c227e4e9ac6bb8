"""Latency statistics.

Percentiles use numpy's default ``linear`` method (Hyndman & Fan type 7); the confidence interval
of the median is a seeded percentile bootstrap, so a rerun on the same samples gives the same CI.

Example:
    >>> summarize([1.0, 1.1, 0.9, 1.2], batch_size=1, seq_length=32)["p50_ms"]
    1.05
"""

from __future__ import annotations

from typing import Any

import numpy as np

PERCENTILE_METHOD = "linear (Hyndman-Fan type 7, numpy default)"
BOOTSTRAP_RESAMPLES = 2000


def pooled_samples(raw: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each scenario's latency samples (ms) in a benchmark output, all repeats pooled, by key ``b1_s32``."""
    return {f"b{s['batch_size']}_s{s['seq_length']}": np.array([x for run in s["runs"] for x in run["samples_ms"]])
            for s in raw.get("scenarios", [])}


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


def ratio_ci(numerator: np.ndarray, denominator: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI of median(numerator) / median(denominator), the two resampled independently.

    Used for speed-up (baseline latency / variant latency), so a gate like "≥ 2× at 95%" is decidable.
    """
    rng = np.random.default_rng(seed)
    num = np.median(rng.choice(numerator, size=(BOOTSTRAP_RESAMPLES, len(numerator))), axis=1)
    den = np.median(rng.choice(denominator, size=(BOOTSTRAP_RESAMPLES, len(denominator))), axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(num / den, [tail, 100 - tail])
    return float(low), float(high)


def median_ci(samples: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median."""
    rng = np.random.default_rng(seed)
    resamples = rng.choice(samples, size=(BOOTSTRAP_RESAMPLES, len(samples)), replace=True)
    medians = np.median(resamples, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def summarize(samples_ms: list[float], batch_size: int, seq_length: int, seed: int = 0) -> dict[str, Any]:
    """p50/p90/p95/p99, mean, std, CV, median CI and throughput of one scenario's samples."""
    samples = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p95, p99 = np.percentile(samples, [50, 90, 95, 99])
    low, high = median_ci(samples, seed=seed)
    mean = float(samples.mean())
    seconds = samples.sum() / 1000.0
    return {
        "iterations": int(samples.size),
        "p50_ms": round(float(p50), 4),
        "p90_ms": round(float(p90), 4),
        "p95_ms": round(float(p95), 4),
        "p99_ms": round(float(p99), 4),
        "mean_ms": round(mean, 4),
        "std_ms": round(float(samples.std(ddof=1)) if samples.size > 1 else 0.0, 4),
        "cv": round(float(samples.std(ddof=1) / mean) if samples.size > 1 and mean else 0.0, 4),
        "min_ms": round(float(samples.min()), 4),
        "p50_ci95_ms": [round(low, 4), round(high, 4)],
        "items_per_s": round(batch_size * samples.size / seconds, 2),
        "tokens_per_s": round(batch_size * seq_length * samples.size / seconds, 1),
    }
