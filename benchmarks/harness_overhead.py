"""How much edgekit's timed loop adds over a bare loop around the same runtime call.

Both loops run in one process on the same loaded variant, in adjacent blocks whose order alternates
(A B, B A, A B ...) so that drift on a shared machine hits both alike and neither always goes first.
The overhead is the median over block pairs of (edgekit block median / bare block median) − 1, with a
bootstrap 95% CI. Target: overhead ≤ 1% of the median latency.

That ratio reads only the timed calls, and the run-to-run spread of a call (percent) hides the loop's
own work, which sits between calls (microseconds). So both loops also read one recording clock, and
the report gives the untimed gap from the end of one call to the start of the next: the loop's own
cost per call, edgekit's minus the bare loop's.

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


class RecordingClock:
    """``time.perf_counter`` that keeps its readings: start and end of each call, in order."""

    def __init__(self):
        self.readings: list[float] = []

    def __call__(self) -> float:
        now = time.perf_counter()
        self.readings.append(now)
        return now

    def gaps_us(self) -> list[float]:
        """From the end of each call to the start of the next: the loop's own work, untimed."""
        calls = self.readings[len(self.readings) % 2:]  # without the reading sample() takes before its loop
        starts, ends = calls[0::2], calls[1::2]
        return [(start - end) * 1e6 for end, start in zip(ends[:-1], starts[1:], strict=True)]


def bare_loop(backend, batch, iterations: int, clock=time.perf_counter) -> list[float]:
    samples = []
    for _ in range(iterations):
        start = clock()
        backend.run(batch)
        samples.append((clock() - start) * 1000)
    return samples


def harness_loop(backend, batch, iterations: int, clock=time.perf_counter) -> list[float]:
    """edgekit's own sampling loop, made to stop after exactly ``iterations`` samples.

    With a target half-width of 100% the first convergence check after ``min_iterations`` passes,
    so the loop runs its full per-sample bookkeeping and stops where the bare loop does.
    """
    rule = {"min_iterations": iterations, "min_seconds": 0.0, "max_seconds": 1e9, "target_ci_half_width": 1.0}
    return sample(backend, batch, rule, clock=clock)["samples_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--variant", default="ort-int8")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=200, help="samples per block (a multiple of 10)")
    args = parser.parse_args()
    backend, batch, _ = load_variant(args.project, args.variant)
    bare_loop(backend, batch, 50)  # warm-up
    medians = {"bare": [], "harness": []}
    gaps = {"bare": [], "harness": []}
    order = (("bare", bare_loop), ("harness", harness_loop))
    for block in range(args.blocks):
        for name, loop in order if block % 2 == 0 else order[::-1]:
            clock = RecordingClock()
            medians[name].append(statistics.median(loop(backend, batch, args.iterations, clock)))
            gaps[name].append(statistics.median(clock.gaps_us()))
    report(args.variant, medians["bare"], medians["harness"])
    report_gaps(gaps["bare"], gaps["harness"], statistics.median(medians["bare"]))


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


def report_gaps(bare_us: list[float], harness_us: list[float], latency_ms: float) -> None:
    """The loop's own cost per call: the median over blocks of each block's median untimed gap."""
    bare, harness = statistics.median(bare_us), statistics.median(harness_us)
    extra = statistics.median(np.array(harness_us) - np.array(bare_us))
    print(f"  between calls (the loop's own work, untimed), median of block medians: bare {bare:.2f} µs, "
          f"edgekit {harness:.2f} µs")
    print(f"  edgekit's loop adds {extra:+.2f} µs a call (median over block pairs) = {100 * extra / (latency_ms * 1000):+.4f}% of the median latency")


if __name__ == "__main__":
    main()
