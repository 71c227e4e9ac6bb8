"""What the child process that times one variant in one scenario runs (``edgekit.isolation``).

It imports only the variant's runtime (never torch for an ONNX Runtime variant), so its peak RSS
(``peak_rss_bytes``) is the variant's own footprint plus the interpreter. The model's own cost,
``model_memory_bytes``, is the peak while loading and running it minus the RSS just before loading,
taken after the runtime's packages are imported: ort-fp32 (the same fp32 weights as the PyTorch
baseline) showed a 58.7% peak-RSS "reduction" only because torch was not imported. The model class a
library imports lazily is imported first too (``Backend.prepare``): PyTorch's model memory was 202 MB on
MiniLM-L6, about 150 MB of it transformers' generation code and scikit-learn, imported by ``AutoModel``.

Stop rule (``sample``): a first (cold) call, warm-up, then samples until at least ``min_iterations``
and ``min_seconds``; then on until the 95% CI of the median is within ``target_ci_half_width`` of
it (the run is converged), or ``max_seconds`` have passed (not converged) -- but ``max_seconds`` never
stops a process short of ``min_samples_per_process`` samples. Only ``hard_stop_seconds`` (half of the
benchmark timeout, set by the harness) does, so a call too slow for the timeout still brings back
what it measured, and the harness flags it short.

Example:
    >>> run_child("edgekit.bench.worker:run", request, timeout=900, setting="benchmark.timeout_seconds")
"""

from __future__ import annotations

import importlib
import json
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.bench import system
from edgekit.bench.roofline import energy_counter_uj
from edgekit.bench.stats import relative_half_width
from edgekit.tasks.embedding.encoding import TextEncoder

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


def _reset_peak_rss() -> bool:
    """Restart this process's VmHWM at its current RSS (Linux ≥ 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def import_runtime(config) -> tuple[type, list[str]]:
    """Import the runtime's backend and packages, so the "before load" RSS already holds them.

    ``config.backend("embedding")`` imports the backend module, which imports the runtime at its top today;
    the dependencies are imported by name as well, so a backend that imports its runtime lazily
    inside ``load()`` cannot move the runtime's own memory into the model's.

    Returns:
        the backend class, and the import names of the runtime's packages (for the record).
    """
    backend_class = config.backend("embedding")
    for dependency in config.dependencies:
        importlib.import_module(dependency.import_name)
    return backend_class, [dependency.import_name for dependency in config.dependencies]


def _warm_up(backend, batch: dict, iterations: int, budget_s: float) -> int:
    began, done = time.perf_counter(), 0
    while done < iterations and time.perf_counter() - began < budget_s:
        backend.run(batch)
        done += 1
    return done


@dataclass(frozen=True)
class StopRule:
    """The stop rule's values, read from the request once before the timed loop, so the loop's own time between
    calls stays small (``benchmarks/harness_overhead.py`` measures it); see the module docstring."""

    min_iterations: int
    min_seconds: float
    max_seconds: float
    target_ci_half_width: float
    min_samples_per_process: int = 1
    hard_stop_seconds: float = math.inf

    @classmethod
    def from_request(cls, request: dict) -> StopRule:
        """The rule's keys of ``request`` (a worker request holds many other keys); a missing required one raises KeyError."""
        return cls(request["min_iterations"], request["min_seconds"], request["max_seconds"], request["target_ci_half_width"],
                   request.get("min_samples_per_process", 1), request.get("hard_stop_seconds", math.inf))

    def stopped_by(self, count: int, elapsed: float, converged: bool) -> str | None:
        """Why sampling stops after ``count`` samples and ``elapsed`` seconds, or None to go on."""
        if converged:
            return "converged"
        if elapsed >= self.max_seconds and count >= self.min_samples_per_process:
            return "max_seconds"
        if elapsed >= self.hard_stop_seconds:
            return "hard_stop_seconds"
        return None


def sample(backend, batch: dict, rule: dict, clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Time calls of ``backend.run(batch)`` under the stop rule.

    Args:
        rule: ``min_iterations``, ``min_seconds``, ``max_seconds`` and ``target_ci_half_width``;
            optionally ``min_samples_per_process`` (default 1) and ``hard_stop_seconds`` (default none).
        clock: seconds, monotonic (tests pass a fake one).

    Returns:
        ``samples_ms``, ``converged``, ``sampling_s`` and ``stopped_by`` (``converged``, ``max_seconds``
        or ``hard_stop_seconds``).
    """
    stop = StopRule.from_request(rule)
    floor, min_seconds = max(stop.min_iterations, stop.min_samples_per_process), stop.min_seconds
    samples: list[float] = []
    began = clock()
    converged, stopped_by = False, None
    while stopped_by is None:
        start = clock()
        backend.run(batch)
        end = clock()
        samples.append((end - start) * 1000)
        elapsed = end - began
        if len(samples) >= floor and elapsed >= min_seconds and len(samples) % _CHECK_EVERY == 0:
            converged = relative_half_width(samples) <= stop.target_ci_half_width
        stopped_by = stop.stopped_by(len(samples), elapsed, converged)
    return {"samples_ms": samples, "converged": converged, "sampling_s": elapsed, "stopped_by": stopped_by}


def _noise(before: dict, after: dict, canary_before: dict, canary_after: dict, request: dict) -> dict[str, Any]:
    noise = system.compare(before, after, request["busy_foreign_load"], request["busy_steal_share"])
    noise["canary_ms"] = {when: {str(cpu): round(ms, 4) for cpu, ms in canary.items()}
                          for when, canary in (("before", canary_before), ("after", canary_after))}
    noise["canary_ms_max"] = round(max(*canary_before.values(), *canary_after.values()), 4)
    return noise


def run(request: dict) -> dict[str, Any]:
    """Load the variant, then time one scenario (``batch_size`` × ``seq_length``)."""
    from edgekit.runtimes import get_runtime

    config = get_runtime(request["runtime"])
    options = config.options.parse(request["options"], "options")
    backend_class, runtime_modules = import_runtime(config)
    backend = backend_class(request["precision"], options, request["threads"])
    folder = Path(request["variant_dir"])
    backend.prepare(folder)  # the model class's own imports are the runtime's, not the load's or the model's
    texts = json.loads(Path(request["texts"]).read_text())
    encoder = TextEncoder(folder, max_length=request["seq_length"])
    batch = encoder.fixed_length_batch(texts, request["batch_size"], request["seq_length"])
    canary_before = system.cpu_canary_ms()  # before load: no runtime threads exist yet
    peak_before_load = _peak_rss_bytes()
    rss_before = _rss_bytes()
    # VmHWM restarts here, so the peak read at the end is the peak of load and run alone.
    peak_restarted = _reset_peak_rss()
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
    peak_since_load = _peak_rss_bytes()
    time.sleep(0.25)  # let the runtime's spinning worker threads go to sleep before the canary
    canary_after = system.cpu_canary_ms()
    energy = None if energy_before is None or energy_after is None else (energy_after - energy_before) / 1e6
    return {
        "load_s": load_s, "first_ms": first_ms, "warmup_iterations": warmed, **timing,
        "rss_before_load_bytes": rss_before, "rss_after_load_bytes": rss_loaded,
        "peak_rss_bytes": max(peak_before_load, peak_since_load),
        **_model_memory(peak_since_load, rss_before, peak_restarted, runtime_modules),
        "noise": _noise(before, after, canary_before, canary_after, request),
        "energy_j": energy, "settings": system.settings(), "runtime_settings": backend.describe(),
    }


def _model_memory(peak_since_load: int, rss_before: int, peak_restarted: bool, runtime_modules: list[str]) -> dict[str, Any]:
    """The model's own memory: the peak of load and run over the RSS with the runtime imported."""
    method = ("VmHWM restarted after the runtime import, minus the RSS then" if peak_restarted
              else "whole-process peak minus the RSS after the runtime import (an upper bound: no VmHWM reset here)")
    return {"model_memory_bytes": max(0, peak_since_load - rss_before), "model_memory_method": method,
            "runtime_modules_imported": runtime_modules}
