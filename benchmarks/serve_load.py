"""Load a running `edgekit serve` at several concurrency levels and check that no request goes uncounted.

Each level sends ``--requests`` embeddings requests (the validation sentences, in turn) with an async client
holding ``concurrency`` keep-alive connections, and reports the client's own count of answers and errors,
throughput, client-side p50/p99, and the server's count of the same requests (``edgekit_requests_total`` on
``/metrics``, read before and after the level). "Lost telemetry" is the difference between the two counts.

Run:  python benchmarks/serve_load.py [--url http://127.0.0.1:8000] [--concurrency 1 4 16] [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--project", type=Path, default=Path("."), help="where data/validation is (the request texts)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=1000, help="requests per level")
    args = parser.parse_args()
    texts = _texts(args.project)
    model = httpx.get(f"{args.url}/v1/models").json()["data"][0]["id"]
    lost_total = 0
    for concurrency in args.concurrency:
        before = counted(args.url)
        figures = asyncio.run(_level(args.url, model, texts, args.requests, concurrency))
        lost = figures["answered"] - (counted(args.url) - before)
        lost_total += abs(lost)
        print(f"concurrency {concurrency:>3}: {figures['answered']} answered, {figures['errors']} errors, {figures['rps']:.1f} req/s, "
              f"client p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms; server counted {figures['answered'] - lost} "
              f"(lost telemetry {lost}); versions {figures['versions']}")
    sys.exit(1 if lost_total else 0)


def _texts(project: Path) -> list[str]:
    from edgekit.datasets import load_validation_pairs, unique_sentences
    from edgekit.layout import Layout

    return unique_sentences(load_validation_pairs(Layout(project)))


def counted(url: str) -> float:
    """The server's count of answered embeddings requests (2xx and 5xx: every answer a client receives)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "edgekit_requests_total" and sample.labels["endpoint"] == "embeddings"
               and sample.labels["status"][0] in "25")


async def _level(url: str, model: str, texts: list[str], requests: int, concurrency: int) -> dict:
    latencies, versions, outcome = [], {}, {"answered": 0, "errors": 0}
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(i: int) -> None:
            async with limit:
                started = time.perf_counter()
                try:
                    answer = await client.post(f"{url}/v1/embeddings", json={"model": model, "input": texts[i % len(texts)]})
                except httpx.HTTPError:
                    outcome["errors"] += 1
                    return
                latencies.append((time.perf_counter() - started) * 1000)
                outcome["answered"] += 1
                outcome["errors"] += answer.status_code != 200
                version = answer.headers.get("x-edgekit-version")
                versions[version] = versions.get(version, 0) + 1
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        elapsed = time.perf_counter() - started
    return {**outcome, "rps": requests / elapsed, "p50_ms": statistics.median(latencies),
            "p99_ms": float(np.percentile(latencies, 99)), "versions": versions}


if __name__ == "__main__":
    main()
