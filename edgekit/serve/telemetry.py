"""The server's telemetry: Prometheus metrics per model, version and variant that survive a restart, and a
local sample of request features for the drift tests.

Counters and histograms use prometheus-client's multiprocess mode: every value lives in a memory-mapped file
in the telemetry folder, written as it changes. A restarted server (or a second worker) writes its own file
and ``/metrics`` sums them all, so a request counted before a ``kill -9`` stays counted: the kernel keeps the
mapped pages when the process dies. The mode is chosen when prometheus_client is first imported, so
``open_telemetry`` must run before anything imports it (``edgekit serve`` calls it first).

Example:
    >>> telemetry = open_telemetry(Path(".edgekit/telemetry"))
    >>> telemetry.observe({"model": "m", "version": "v1.0.0", "variant": "ort-int8"}, "embeddings", status=200, seconds=0.004)
    >>> telemetry.exposition()[:6]
    b'# HELP'
"""

from __future__ import annotations

import os
import queue
import sqlite3
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import ConfigError

LABELS = ("model", "version", "variant")
# Latency buckets from 0.25 ms to about 32 s, each 25% wider than the one before: a p99 read from them
# (Prometheus' histogram_quantile interpolation) is within one bucket, at most 25% off, anywhere in the range.
LATENCY_BUCKETS = tuple(round(0.00025 * 1.25**i, 7) for i in range(53))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
SAMPLES_FILE = "samples.sqlite"
SAMPLES_KEPT = 50_000   # the newest request samples kept (about 80 MB with 384-wide vectors); drift reads the last 5,000


@dataclass
class Metrics:
    requests: Any
    latency: Any
    tokens: Any
    batch_size: Any
    traffic_share: Any
    completion_tokens: Any = None
    ttft: Any = None
    tpot: Any = None


def open_telemetry(folder: Path) -> Telemetry:
    """The telemetry kept in ``folder`` (made if needed); call before anything imports prometheus_client.

    Raises:
        ConfigError: prometheus_client was imported before without multiprocess mode (counters would not persist).
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():  # telemetry is local data: it must not make the project's git workspace dirty
        ignore.write_text("# written by edgekit serve\n*\n")
    current = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if "prometheus_client" in sys.modules and current != str(folder):
        raise ConfigError("PROMETHEUS_MULTIPROC_DIR", current, f"{folder}, set before prometheus_client is imported "
                          "(start the server with `edgekit serve`, which sets it first)", "the server's environment")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)  # the server process's own setting, read at import
    return Telemetry(folder)


class Telemetry:
    """Metrics in ``folder`` and the request-feature samples (``samples.sqlite``) beside them."""

    def __init__(self, folder: Path):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.folder = folder
        registry = CollectorRegistry()  # the process's metrics; /metrics reads every process's files instead
        self.metrics = Metrics(
            Counter("edgekit_requests", "Requests answered, by endpoint and HTTP status.", [*LABELS, "endpoint", "status"],
                    registry=registry),
            Histogram("edgekit_request_latency_seconds", "Server-side latency of one request, from its arrival to its answer.",
                      [*LABELS, "endpoint"], buckets=LATENCY_BUCKETS, registry=registry),
            Counter("edgekit_tokens", "Input tokens processed.", LABELS, registry=registry),
            Histogram("edgekit_batch_size", "Inputs per batch the runtime was called with (dynamic batching).", LABELS,
                      buckets=BATCH_BUCKETS, registry=registry),
            Gauge("edgekit_traffic_share", "The share of requests routed to this version (the blue-green ramp).", LABELS,
                  multiprocess_mode="mostrecent", registry=registry),
            Counter("edgekit_completion_tokens", "Tokens generated (decoders).", LABELS, registry=registry),
            Histogram("edgekit_time_to_first_token_seconds", "Decoders: from the start of a generation (its prefill) to its first "
                      "token chosen.", LABELS, buckets=LATENCY_BUCKETS, registry=registry),
            Histogram("edgekit_time_per_output_token_seconds", "Decoders: each later token's time (one decode step and the choice).",
                      LABELS, buckets=LATENCY_BUCKETS, registry=registry))
        self.samples = SampleWriter(folder / SAMPLES_FILE)
        self._children: dict[tuple, tuple] = {}

    def observe(self, labels: dict[str, str], endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request; called before the answer is sent, so no answered request goes uncounted."""
        key = (labels["model"], labels["version"], labels["variant"], endpoint, status)
        children = self._children.get(key)
        if children is None:  # labels() costs ~10 us a call: look each label set up once
            children = self._children[key] = (self.metrics.requests.labels(**labels, endpoint=endpoint, status=str(status)),
                                              self.metrics.latency.labels(**labels, endpoint=endpoint))
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(self, labels: dict[str, str], inputs: int, tokens: int) -> None:
        self.metrics.batch_size.labels(**labels).observe(inputs)
        self.metrics.tokens.labels(**labels).inc(tokens)

    def observe_generation(self, labels: dict[str, str], tokens: int, ttft_s: float, token_s: list[float]) -> None:
        self.metrics.completion_tokens.labels(**labels).inc(tokens)
        self.metrics.ttft.labels(**labels).observe(ttft_s)
        per_token = self.metrics.tpot.labels(**labels)
        for seconds in token_s:
            per_token.observe(seconds)

    def share(self, labels: dict[str, str], value: float) -> None:
        self.metrics.traffic_share.labels(**labels).set(value)

    def exposition(self) -> bytes:
        """Every process's metrics in this folder, in Prometheus' text format (what ``/metrics`` answers)."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.folder))
        return generate_latest(registry)

    def close(self) -> None:
        self.samples.close()


class SampleWriter:
    """Request features for the drift tests, written by a background thread (they are a sample: a request
    whose features are lost in a crash is still counted by the metrics)."""

    def __init__(self, path: Path):
        self.path = path
        self._queue: queue.Queue = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._run, name="edgekit-samples", daemon=True)
        self._thread.start()

    def add(self, model: str, version: str, ids: list[int], vector: np.ndarray | None, entropy: float | None = None) -> None:
        try:
            self._queue.put_nowait((model, version, len(ids), np.asarray(ids, dtype=np.int32).tobytes(),
                                    None if vector is None else np.asarray(vector, dtype=np.float32).tobytes(), entropy))
        except queue.Full:  # the writer fell behind: drop samples rather than slow the answers down
            pass

    def _run(self) -> None:
        connection = connect_samples(self.path)
        while True:
            item = self._queue.get()
            if item is None:
                break
            rows = [item, *self._drain()]
            stop = rows[-1] is None
            connection.executemany("INSERT INTO samples(model, version, tokens, ids, vector, entropy) VALUES (?, ?, ?, ?, ?, ?)",
                                   [r for r in rows if r is not None])
            connection.execute("DELETE FROM samples WHERE id <= (SELECT MAX(id) FROM samples) - ?", (SAMPLES_KEPT,))
            connection.commit()
            if stop:
                break
        connection.close()

    def _drain(self) -> list:
        rows = []
        while len(rows) < 500:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return rows

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)


def reference_path(folder: Path, model: str, version: str, variant_digest: str) -> Path:
    """Where the server keeps a version's drift reference (its features of the validation sentences)."""
    return folder / f"reference-{model}-{version}-{variant_digest[:12]}.npz"


def connect_samples(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS samples (id INTEGER PRIMARY KEY, model TEXT, version TEXT, tokens INTEGER,"
                       " ids BLOB, vector BLOB, entropy REAL)")
    return connection


def read_samples(path: Path, model: str, version: str, limit: int = 5000) -> dict[str, Any]:
    """The latest ``limit`` samples of one version: token counts, token ids per request, vectors (encoders) and
    next-token entropies (decoders)."""
    if not path.is_file():
        return {"tokens": np.zeros(0), "ids": [], "vectors": np.zeros((0, 0), dtype=np.float32), "entropies": np.zeros(0)}
    connection = connect_samples(path)
    rows = connection.execute("SELECT tokens, ids, vector, entropy FROM samples WHERE model = ? AND version = ? ORDER BY id DESC LIMIT ?",
                              (model, version, limit)).fetchall()
    connection.close()
    vectors = [np.frombuffer(v, dtype=np.float32) for _, _, v, _ in rows if v is not None]
    return {"tokens": np.array([t for t, _, _, _ in rows]), "ids": [np.frombuffer(i, dtype=np.int32) for _, i, _, _ in rows],
            "vectors": np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32),
            "entropies": np.array([e for _, _, _, e in rows if e is not None])}
