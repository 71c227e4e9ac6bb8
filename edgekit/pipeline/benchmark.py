"""The ``benchmark`` stage for one variant: every scenario timed in fresh processes (``edgekit.bench.harness``),
raw samples to outputs/benchmark/<name>.json and the figures to metrics/benchmark/<name>.json.

Example:
    >>> run(params, Layout(Path(".")), "ort-int8")["scenarios"]["b1_s32"]["p50_ms"]
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from edgekit.bench.harness import THREAD_ENV, Progress, measure_scenario, scenario_request, variant_metrics
from edgekit.datasets import load_eval_pairs, unique_sentences
from edgekit.fsutil import read_json, write_json
from edgekit.layout import Layout
from edgekit.manifest import read_manifest, status_record, verify_manifest
from edgekit.params import Params


def run(params: Params, layout: Layout, name: str, progress: Progress | None = None) -> dict[str, Any]:
    """Write outputs/benchmark/<name>.json (raw samples) and metrics/benchmark/<name>.json.

    Args:
        progress: called with the scenario key and the run record after every process.
    """
    params.variant(name)
    folder = layout.variant_dir(name)
    manifest = read_manifest(folder)
    record = status_record(manifest)
    environment = read_json(layout.environment)
    record["environment"] = {"cpu": environment["cpu"]["model"], "lock_sha256": environment["lock_sha256"]}
    raw: list[dict[str, Any]] = []
    if manifest["status"] == "ok":
        verify_manifest(folder)
        raw = _measure(params, layout, manifest, folder, progress, name)
        failed = next((r for s in raw for r in s["runs"] if r["status"] != "ok"), None)
        if failed:
            record.update({k: failed[k] for k in ("status", "reason", "install", "error", "hint", "stderr") if k in failed})
    write_json(layout.benchmark_samples(name), {**record, "thread_env": {k: str(params.threads) for k in THREAD_ENV},
                                                "scenarios": raw})
    metrics = {**record, **variant_metrics(raw, manifest, params)} if record["status"] == "ok" else record
    write_json(layout.benchmark_metrics(name), metrics)
    return metrics


def _measure(params: Params, layout: Layout, manifest: dict, folder: Path, progress: Progress | None,
             name: str) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="edgekit-texts-") as scratch:
        texts = Path(scratch) / "texts.json"
        texts.write_text(json.dumps(unique_sentences(load_eval_pairs(layout))))
        for batch_size, seq_length in params.scenarios(name):
            request = scenario_request(params, manifest, folder, texts, batch_size, seq_length)
            runs = measure_scenario(request, params.benchmark, params.threads, progress)
            results.append({"batch_size": batch_size, "seq_length": seq_length, "runs": runs})
            if runs[-1]["status"] != "ok":
                break
    return results
