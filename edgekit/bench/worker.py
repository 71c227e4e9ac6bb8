"""What the child process that times one variant in one scenario runs (``edgekit.isolation``).

It imports only the variant's runtime (never torch for an ONNX Runtime variant), so its peak RSS
(``ru_maxrss`` of this process) is the variant's own footprint plus the interpreter.

Stop rule: a first (cold) call, warm-up, then samples until at least ``min_iterations`` and
``min_seconds``; then on until the 95% CI of the median is within ``target_ci_half_width`` of it,
or ``max_seconds`` have passed (the run is then marked not converged).

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

from edgekit.bench import system
from edgekit.bench.roofline import energy_counter_uj
from edgekit.bench.stats import relative_half_width
from edgekit.embedding import TextEncoder

_CHECK_EVERY = 10  # samples between convergence checks (each one sorts the samples)


def _peak_rss_bytes() -> int:
    """This process's own peak RSS.

    Linux keeps ``ru_maxrss`` across ``execve``, so a child started from a big parent (a test
    process with torch loaded) would report the parent's peak; VmHWM belongs to the new address
    space and does not carry it over.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _warm_up(backend, batch: dict, iterations: int, budget_s: float) -> int:
    began, done = time.perf_counter(), 0
    while done < iterations and time.perf_counter() - began < budget_s:
        backend.run(batch)
        done += 1
    return done


def sample(backend, batch: dict, rule: dict) -> dict[str, Any]:
    """Time calls of ``backend.run(batch)`` under the stop rule; return samples (ms) and how it ended."""
    clock = time.perf_counter
    samples: list[float] = []
    began = clock()
    converged = False
    while True:
        start = clock()
        backend.run(batch)
        end = clock()
        samples.append((end - start) * 1000)
        elapsed = end - began
        if len(samples) >= rule["min_iterations"] and elapsed >= rule["min_seconds"] and len(samples) % _CHECK_EVERY == 0:
            converged = relative_half_width(samples) <= rule["target_ci_half_width"]
        if converged or elapsed >= rule["max_seconds"]:
            break
    return {"samples_ms": samples, "converged": converged, "sampling_s": elapsed}


def run(request: dict) -> dict[str, Any]:
    """Load the variant, then time one scenario (``batch_size`` × ``seq_length``)."""
    from edgekit.runtimes import get_runtime

    config = get_runtime(request["runtime"])
    options = config.options.parse(request["options"], "options")
    backend = config.backend()(request["precision"], options, request["threads"])
    folder = Path(request["variant_dir"])
    texts = json.loads(Path(request["texts"]).read_text())
    encoder = TextEncoder(folder, max_length=request["seq_length"])
    batch = encoder.fixed_length_batch(texts, request["batch_size"], request["seq_length"])
    canary_before = system.cpu_canary_ms()  # before load: no runtime threads exist yet
    rss_before = _rss_bytes()
    start = time.perf_counter()
    backend.load(folder)
    load_s = time.perf_counter() - start
    rss_loaded = _rss_bytes()
    start = time.perf_counter()
    backend.run(batch)
    first_ms = (time.perf_counter() - start) * 1000
    warmed = _warm_up(backend, batch, request["warmup_iterations"], request["max_seconds"] / 4)
    before, energy_before = system.snapshot(), energy_counter_uj()
    timing = sample(backend, batch, request)
    after, energy_after = system.snapshot(), energy_counter_uj()
    time.sleep(0.25)  # let the runtime's spinning worker threads go to sleep before the canary
    canary_after = system.cpu_canary_ms()
    noise = system.compare(before, after, request["busy_foreign_load"], request["busy_steal_share"])
    noise["canary_ms"] = {when: {str(cpu): round(ms, 4) for cpu, ms in canary.items()}
                          for when, canary in (("before", canary_before), ("after", canary_after))}
    noise["canary_ms_max"] = round(max(*canary_before.values(), *canary_after.values()), 4)
    energy = None if energy_before is None or energy_after is None else (energy_after - energy_before) / 1e6
    return {
        "load_s": load_s, "first_ms": first_ms, "warmup_iterations": warmed, **timing,
        "rss_before_load_bytes": rss_before, "rss_after_load_bytes": rss_loaded, "peak_rss_bytes": _peak_rss_bytes(),
        "noise": noise,
        "energy_j": energy, "settings": system.settings(), "runtime_settings": backend.describe(),
    }

