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
