"""What the fresh process that times one decoder variant runs (``edgekit.isolation``).

In one process: load the variant (load time, the model's own memory as for encoders), then for every
prompt length ``prefill_iterations`` prefills, each on an emptied KV cache (time to first token), then
one generation: the longest prompt, ``warmup_tokens`` untimed decode steps, and ``generate_tokens``
timed ones, each a single token on top of the KV cache as the runtime keeps it. Tokens are chosen
greedily, so every runtime decodes the same kind of sequence.

Example:
    >>> run_child("edgekit.tasks.generation.worker:run", request, timeout=600, setting="decoder.benchmark.timeout_seconds")
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bench import system
from edgekit.bench.worker import _model_memory, _peak_rss_bytes, _reset_peak_rss, _rss_bytes


def _prefill_ms(decoder, prompt: list[int], iterations: int) -> list[float]:
    samples = []
    for _ in range(iterations):
        decoder.reset()
        start = time.perf_counter()
        decoder.prefill(prompt)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _decode_ms(decoder, prompt: list[int], warmup: int, tokens: int) -> list[float]:
    decoder.reset()
    logits = decoder.prefill(prompt)
    for _ in range(warmup):
        logits = decoder.decode(int(np.argmax(logits)))
    samples = []
    for _ in range(tokens):
        token = int(np.argmax(logits))
        start = time.perf_counter()
        logits = decoder.decode(token)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def run(request: dict) -> dict[str, Any]:
    """Load one decoder variant and time its prefill and decode."""
    import importlib

    from edgekit.runtimes import get_runtime

    config = get_runtime(request["runtime"])
    decoder_class = config.backend("generation")
    for dependency in config.dependencies:
        importlib.import_module(dependency.import_name)
    decoder = decoder_class(request["precision"], config.options.parse(request["options"], "options"), request["threads"])
    prompts = {int(length): ids for length, ids in request["prompts"].items()}
    rss_before = _rss_bytes()
    peak_restarted = _reset_peak_rss()
    start = time.perf_counter()
    decoder.load(Path(request["variant_dir"]), request["context"])
    load_s = time.perf_counter() - start
    before = system.snapshot()
    prefill = {str(length): _prefill_ms(decoder, ids, request["prefill_iterations"]) for length, ids in prompts.items()}
    decode = _decode_ms(decoder, prompts[max(prompts)], request["warmup_tokens"], request["generate_tokens"])
    after = system.snapshot()
    peak = _peak_rss_bytes()
    return {
        "load_s": load_s, "prefill_ms": prefill, "decode_ms": decode, "peak_rss_bytes": peak,
        **_model_memory(peak, rss_before, peak_restarted, [d.import_name for d in config.dependencies]),
        "noise": system.compare(before, after, request["busy_foreign_load"], request["busy_steal_share"]),
        "runtime_settings": decoder.describe(),
    }
