"""The ``benchmark`` stage: time one variant in a fresh child process and summarize.

Example:
    >>> benchmark_variant(params, Layout(Path(".")), "ort-int8")["scenarios"]["b1_s32"]["p50_ms"]
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgekit.bench.stats import PERCENTILE_METHOD, summarize
from edgekit.data import load_eval_pairs, unique_sentences
from edgekit.fsutil import read_json, write_json
from edgekit.isolation import run_child
from edgekit.layout import Layout
from edgekit.manifest import read_manifest, verify_manifest
from edgekit.params import Params
from edgekit.variants import status_record

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def scenario_key(batch_size: int, seq_length: int) -> str:
    return f"b{batch_size}_s{seq_length}"


def _request(params: Params, manifest: dict, folder: Path, texts: Path) -> dict[str, Any]:
    b = params.benchmark
    return {
        "runtime": manifest["runtime"], "precision": manifest["precision"], "options": manifest["options"],
        "variant_dir": str(folder.resolve()), "threads": params.threads, "texts": str(texts),
        "batch_sizes": list(b.batch_sizes), "seq_lengths": list(b.seq_lengths),
        "warmup_iterations": b.warmup_iterations, "min_iterations": b.min_iterations,
        "min_seconds": b.min_seconds, "max_seconds": b.max_seconds,
    }


def run_worker(request: dict[str, Any], threads: int, timeout: float) -> dict[str, Any]:
    """Run the timing worker in a fresh interpreter; return its result or a ``failed`` record."""
    env = dict(os.environ, **{name: str(threads) for name in THREAD_ENV})
    return run_child("edgekit.bench.worker:run", request, timeout, "benchmark.timeout_seconds", env)


def benchmark_variant(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    """Write outputs/benchmark/<name>.json (raw samples) and metrics/benchmark/<name>.json."""
    params.variant(name)
    folder = layout.variant_dir(name)
    manifest = read_manifest(folder)
    if manifest["status"] == "ok":
        verify_manifest(folder)
        with tempfile.TemporaryDirectory(prefix="edgekit-texts-") as scratch:
            texts = Path(scratch) / "texts.json"
            texts.write_text(json.dumps(unique_sentences(load_eval_pairs(layout))))
            raw = run_worker(_request(params, manifest, folder, texts), params.threads, params.benchmark.timeout_seconds)
    else:
        raw = {}
    record = {**status_record(manifest), **{k: raw[k] for k in ("status", "error", "stderr") if k in raw}}
    environment = read_json(layout.environment)
    record["environment"] = {"cpu": environment["cpu"]["model"], "lock_sha256": environment["lock_sha256"]}
    write_json(layout.benchmark_samples(name), {**record, **raw, "thread_env": {k: str(params.threads) for k in THREAD_ENV}})
    metrics = {**record, **_metrics(raw, manifest, params.seed)} if record["status"] == "ok" else record
    write_json(layout.benchmark_metrics(name), metrics)
    return metrics


def _metrics(raw: dict[str, Any], manifest: dict[str, Any], seed: int) -> dict[str, Any]:
    scenarios = {}
    for s in raw["scenarios"]:
        summary = summarize(s["samples_ms"], s["batch_size"], s["seq_length"], seed=seed)
        scenarios[scenario_key(s["batch_size"], s["seq_length"])] = {
            **summary, "first_ms": round(s["first_ms"], 4), "capped": s["capped"],
        }
    return {
        "load_s": round(raw["load_s"], 4),
        "peak_rss_mb": round(raw["peak_rss_bytes"] / 2**20, 2),
        "loaded_rss_delta_mb": round((raw["rss_after_load_bytes"] - raw["rss_before_load_bytes"]) / 2**20, 2),
        "size_mb": round(manifest["size_bytes"] / 2**20, 3),
        "runtime_settings": raw["runtime_settings"],
        "percentile_method": PERCENTILE_METHOD,
        "scenarios": scenarios,
    }
