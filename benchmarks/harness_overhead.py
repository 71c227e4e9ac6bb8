"""How much edgekit's timed loop adds over a bare loop around the same runtime call.

Both loops run in one process on the same loaded variant, in adjacent blocks whose order alternates
(A B, B A, A B ...) so that drift on a shared machine hits both alike and neither always goes first.
The overhead is the median over block pairs of (edgekit block median / bare block median) − 1, with a
bootstrap 95% CI. Target: overhead ≤ 1% of the median latency.

Run after `dvc repro`:  python benchmarks/harness_overhead.py [--variant ort-int8] [--blocks 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _common import load_variant

from edgekit.bench.stats import median_ci
from edgekit.bench.worker import sample


def bare_loop(backend, batch, iterations: int) -> list[float]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        backend.run(batch)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def harness_loop(backend, batch, iterations: int) -> list[float]:
    """edgekit's own sampling loop, made to stop after exactly ``iterations`` samples.

    With a target half-width of 100% the first convergence check after ``min_iterations`` passes,
    so the loop runs its full per-sample bookkeeping and stops where the bare loop does.
    """
    rule = {"min_iterations": iterations, "min_seconds": 0.0, "max_seconds": 1e9, "target_ci_half_width": 1.0}
    return sample(backend, batch, rule)["samples_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--variant", default="ort-int8")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=200, help="samples per block (a multiple of 10)")
    args = parser.parse_args()
    backend, batch, _ = load_variant(args.project, args.variant)
    bare_loop(backend, batch, 50)  # warm-up
    bare, harness = [], []
    for block in range(args.blocks):
        if block % 2:
            harness.append(statistics.median(harness_loop(backend, batch, args.iterations)))
            bare.append(statistics.median(bare_loop(backend, batch, args.iterations)))
        else:
            bare.append(statistics.median(bare_loop(backend, batch, args.iterations)))
            harness.append(statistics.median(harness_loop(backend, batch, args.iterations)))
    report(args.variant, bare, harness)


def report(variant: str, bare: list[float], harness: list[float]) -> None:
    paired = np.array(harness) / np.array(bare)
    overhead = (float(np.median(paired)) - 1) * 100
    low, high = ((x - 1) * 100 for x in median_ci(paired, confidence=0.95, seed=0))
    print(f"variant {variant}: {len(bare)} block pairs, order alternating")
    print(f"  bare loop      median of block medians {statistics.median(bare):.4f} ms")
    print(f"  edgekit sample median of block medians {statistics.median(harness):.4f} ms")
    print(f"  overhead {overhead:+.2f}% of the median (95% CI {low:+.2f}..{high:+.2f}%, target ≤ 1%): "
          f"{'PASS' if overhead <= 1 else 'FAIL'}")
    print(f"  per pair, edgekit / bare: {[round(float(x), 3) for x in paired]}")

if __name__ == "__main__":
    main()
