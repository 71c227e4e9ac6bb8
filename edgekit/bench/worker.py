"""What the child process that times one variant runs (through ``edgekit.isolation.run_child``).

It imports only the variant's runtime (never torch for an ONNX Runtime variant), so its peak RSS
(``ru_maxrss`` of this process) is the variant's own footprint plus the interpreter.

Example:
    >>> run_child("edgekit.bench.worker:run", request, timeout=900, setting="benchmark.timeout_seconds")
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from edgekit.embedding import TextEncoder


def _rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def time_scenario(backend, batch: dict, request: dict) -> dict[str, Any]:
    """First call, warm-up, then samples until both minimums are met or the time cap is hit."""
    clock = time.perf_counter
    start = clock()
    backend.run(batch)
    first_ms = (clock() - start) * 1000
    for _ in range(request["warmup_iterations"]):
        backend.run(batch)
    samples: list[float] = []
    began = clock()
    while True:
        start = clock()
        backend.run(batch)
        end = clock()
        samples.append((end - start) * 1000)
        elapsed = end - began
        enough = len(samples) >= request["min_iterations"] and elapsed >= request["min_seconds"]
        if enough or elapsed >= request["max_seconds"]:
            break
    return {"first_ms": first_ms, "samples_ms": samples, "capped": not enough}


def run(request: dict) -> dict[str, Any]:
    from edgekit.runtimes import get_runtime

    config = get_runtime(request["runtime"])
    options = config.options.parse(request["options"], "options")
    backend = config.backend()(request["precision"], options, request["threads"])
    folder = Path(request["variant_dir"])
    texts = json.loads(Path(request["texts"]).read_text())
    encoder = TextEncoder(folder, max_length=max(request["seq_lengths"]))
    rss_before = _rss_bytes()
    start = time.perf_counter()
    backend.load(folder)
    load_s = time.perf_counter() - start
    rss_loaded = _rss_bytes()
    scenarios = []
    for batch_size in request["batch_sizes"]:
        for seq_length in request["seq_lengths"]:
            batch = encoder.fixed_length_batch(texts, batch_size, seq_length)
            timing = time_scenario(backend, batch, request)
            scenarios.append({"batch_size": batch_size, "seq_length": seq_length, **timing})
    return {
        "load_s": load_s,
        "rss_before_load_bytes": rss_before,
        "rss_after_load_bytes": rss_loaded,
        "peak_rss_bytes": _peak_rss_bytes(),
        "runtime_settings": backend.describe(),
        "scenarios": scenarios,
    }
