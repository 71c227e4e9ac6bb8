"""``edgekit monitor``: the served versions' live figures next to what their benchmark promised, the drift of
their traffic, and a ``telemetry`` event per version in the registry.

Live figures come from Prometheus' text format: a server's own ``/metrics``, or a Prometheus server's
``/federate?match[]=...`` for a fleet (the same format, summed over instances). Quantiles are read from the
latency histogram the way Prometheus' ``histogram_quantile`` reads them (linear within a bucket; the buckets are
25% apart, so a quantile is within 25% of the exact one).

Example:
    >>> summary = monitor(".", "http://127.0.0.1:8000")
    >>> summary["versions"]["all-minilm-l6-v2@v1.1.0"]["live"]["p99_ms"]
    3.9
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import EdgekitError

SERVED_ENDPOINTS = ("embeddings", "completions")
GENERATION_HISTOGRAMS = {"edgekit_time_to_first_token_seconds_bucket": "ttft", "edgekit_time_per_output_token_seconds_bucket": "tpot"}


class MonitorError(EdgekitError):
    """The metrics could not be read."""


def monitor(project: str | Path = ".", url: str = "http://127.0.0.1:8000", telemetry: str | Path | None = None,
            write: bool = True, key: str | Path | None = None) -> dict[str, Any]:
    """Summarize every version the metrics name, and (``write``) record each summary in the registry.

    Args:
        url: a server (its ``/metrics`` is read) or any Prometheus text endpoint (``.../metrics``, ``.../federate?...``).
        telemetry: the server's telemetry folder, for the drift tests (default: the one the server reports).

    Raises:
        MonitorError: the endpoint does not answer or does not speak Prometheus' text format.
    """
    from edgekit.serve.policy import serving_policy

    project = Path(project)
    metrics_url = url if ("/metrics" in url or "/federate" in url) else url.rstrip("/") + "/metrics"
    versions = live_figures(_get(metrics_url).decode())
    status = _server_status(url)
    folder = Path(telemetry) if telemetry else (Path(status["telemetry"]) if status else None)
    serving = serving_policy(project)
    summaries = {}
    for (model, version, variant), live in sorted(versions.items()):
        summaries[f"{model}@{version}"] = _summary(project, model, version, variant, live, folder, serving)
    written = [_write(project, ref, summary, key) for ref, summary in summaries.items()] if write else []
    return {"source": metrics_url, "telemetry": str(folder) if folder else None, "versions": summaries,
            "ramp": status.get("ramp") if status else None, "written": written}


def _get(url: str, timeout: float = 10.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a URL the user gives)
            return response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise MonitorError(f"cannot read {url}: {exc}", "start the server (`edgekit serve`) or pass the Prometheus endpoint "
                                                        "with --url") from exc


def _server_status(url: str) -> dict[str, Any] | None:
    if "/metrics" in url or "/federate" in url:
        return None
    try:
        return json.loads(_get(url.rstrip("/") + "/v1/edgekit/status"))
    except (MonitorError, ValueError):
        return None


# -- reading Prometheus' text format ------------------------------------------------------------------
def live_figures(text: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (model, version, variant): requests, errors, error rate, p50/p99 (ms) over the served endpoints."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[tuple[str, str, str], dict[str, float]] = {}
    buckets: dict[tuple[str, str, str], dict[float, float]] = {}
    generation: dict[str, dict[tuple[str, str, str], dict[float, float]]] = {name: {} for name in GENERATION_HISTOGRAMS.values()}
    completion_tokens: dict[tuple[str, str, str], float] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise MonitorError(f"the endpoint's answer is not Prometheus' text format ({exc})", "point --url at /metrics") from exc
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if sample.name in GENERATION_HISTOGRAMS:   # a decoder's, per version (no endpoint label)
                key = (labels["model"], labels["version"], labels["variant"])
                le = math.inf if labels["le"] in ("+Inf", "inf") else float(labels["le"])
                table = generation[GENERATION_HISTOGRAMS[sample.name]].setdefault(key, {})
                table[le] = table.get(le, 0.0) + sample.value
                continue
            if sample.name == "edgekit_completion_tokens_total":
                key = (labels["model"], labels["version"], labels["variant"])
                completion_tokens[key] = completion_tokens.get(key, 0.0) + sample.value
                continue
            if labels.get("endpoint") not in SERVED_ENDPOINTS:
                continue
            key = (labels["model"], labels["version"], labels["variant"])
            if sample.name == "edgekit_requests_total":
                status = "errors" if labels["status"].startswith("5") else ("rejected" if labels["status"].startswith("4") else "ok")
                counts.setdefault(key, {"ok": 0.0, "errors": 0.0, "rejected": 0.0})[status] += sample.value
            elif sample.name == "edgekit_request_latency_seconds_bucket":
                le = math.inf if labels["le"] in ("+Inf", "inf") else float(labels["le"])
                table = buckets.setdefault(key, {})
                table[le] = table.get(le, 0.0) + sample.value
    figures = {key: _figures(counts.get(key, {}), buckets.get(key, {})) for key in set(counts) | set(buckets)}
    for key, live in figures.items():
        if key in completion_tokens:
            live["completion_tokens"] = int(completion_tokens[key])
            for name, tables in generation.items():
                live[f"{name}_p50_ms"] = _quantile_ms(0.5, tables.get(key, {}))
                live[f"{name}_p99_ms"] = _quantile_ms(0.99, tables.get(key, {}))
    return figures


def _figures(counts: dict[str, float], table: dict[float, float]) -> dict[str, Any]:
    answered = counts.get("ok", 0) + counts.get("errors", 0)
    return {"requests": int(answered + counts.get("rejected", 0)), "answered": int(answered), "errors": int(counts.get("errors", 0)),
            "rejected": int(counts.get("rejected", 0)), "error_rate": round(counts.get("errors", 0) / answered, 6) if answered else None,
            "p50_ms": _quantile_ms(0.5, table), "p99_ms": _quantile_ms(0.99, table)}


def histogram_quantile(q: float, table: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: ``table`` maps each bucket's upper bound to its cumulative count."""
    bounds = sorted(table)
    if not bounds or table[bounds[-1]] == 0:
        return None
    rank, lower, below = q * table[bounds[-1]], 0.0, 0.0
    for bound in bounds:
        if table[bound] >= rank:
            if math.isinf(bound):  # in the open top bucket: the highest finite bound, as Prometheus answers
                return lower
            return lower + (bound - lower) * (rank - below) / max(table[bound] - below, 1e-12)
        lower, below = bound, table[bound]
    return lower


def _quantile_ms(q: float, table: dict[float, float]) -> float | None:
    value = histogram_quantile(q, table)
    return None if value is None else round(value * 1000, 4)


# -- one version -----------------------------------------------------------------------------------------
def _summary(project: Path, model: str, version: str, variant: str, live: dict[str, Any], folder: Path | None,
             serving) -> dict[str, Any]:
    from edgekit.registry.api import describe
    from edgekit.serve.resolve import benchmark_figures

    described = describe(project, f"{model}@{version}")
    benchmark = benchmark_figures(described["record"])
    if described["record"].get("kind") == "generation":  # per token: a request's latency depends on its max_tokens
        pairs = {"ttft_p50": ("ttft_p50_ms", "ttft_ms"), "tpot_p50": ("tpot_p50_ms", "tpot_p50_ms"), "tpot_p99": ("tpot_p99_ms", "tpot_p99_ms")}
    else:
        pairs = {q: (f"{q}_ms", f"{q}_ms") for q in ("p50", "p99")}
    ratios = {f"{name}_live_over_benchmark": round(live[mine] / benchmark[theirs], 3)
              for name, (mine, theirs) in pairs.items() if live.get(mine) and benchmark.get(theirs)}
    return {"model": model, "version": version, "variant": variant, "stage": described["stage"], "live": live,
            "benchmark": benchmark, **ratios, "drift": _drift(folder, model, version, described["record"], serving)}


def _drift(folder: Path | None, model: str, version: str, record: dict[str, Any], serving) -> dict[str, Any]:
    from edgekit.fsutil import tree_digest
    from edgekit.serve.drift import DriftBounds, drift_report, embedding_test, entropy_test, token_length_test, vocabulary_test
    from edgekit.serve.telemetry import SAMPLES_FILE, read_samples, reference_path

    if folder is None:
        return {"status": "no telemetry folder", "alarm": False}
    reference_file = reference_path(folder, model, version, tree_digest(record["files"]))
    if not reference_file.is_file():
        return {"status": "no reference (start the server with --reference)", "alarm": False}
    live = read_samples(folder / SAMPLES_FILE, model, version)
    with np.load(reference_file) as reference:
        lengths, ids = reference["lengths"], reference["ids"]
        output = reference["entropies"] if "entropies" in reference else reference["vectors"]
    reference_requests = np.split(ids, np.cumsum(lengths)[:-1])
    bounds = DriftBounds(alpha=serving.drift_alpha, min_live=serving.drift_min_live)
    if len(live["tokens"]) < bounds.min_live:
        return {"status": f"{len(live['tokens'])} live requests sampled, fewer than min_live {bounds.min_live}",
                "alarm": False, "live_samples": len(live["tokens"])}
    generation = record.get("kind") == "generation"   # output drift: next-token entropy after the prompt, or the embedding
    tests = [token_length_test(lengths, live["tokens"]), vocabulary_test(reference_requests, live["ids"], permutations=999),
             entropy_test(output, live["entropies"]) if generation else embedding_test(output, live["vectors"])]
    return {"status": "judged", "live_samples": len(live["tokens"]), "reference_samples": int(len(lengths)),
            **drift_report(tests, bounds)}


def _write(project: Path, ref: str, summary: dict[str, Any], key: str | Path | None) -> dict[str, Any]:
    from edgekit.registry.api import record_telemetry

    return record_telemetry(project, ref, summary, key)["event"]
