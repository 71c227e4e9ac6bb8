"""What `edgekit serve` costs over calling the model in-process, and what dynamic batching buys.

1. Overhead at concurrency 1: the p50 of one embeddings request through the server (HTTP on loopback, JSON,
   routing, metrics, a keep-alive connection) against the p50 of the same variant embedding the same text in this
   process (``EmbeddingEngine.embed``: the tokenizer, the runtime and the pooling the server runs). The two are
   measured in alternating blocks, so machine noise falls on both. Target: overhead ≤ max(1 ms, 10%).
2. Throughput at concurrency 16: requests per second with dynamic batching (``--max-batch-size 32``) against
   the same server answering one request per runtime call (``--max-batch-size 1``), in alternating rounds.

The version served is the registry's production version of the project (README: "Serve and watch"); the inputs
are the validation sentences, which the benchmark never judges anything on.

Run:  python benchmarks/serve_overhead.py --project . [--model NAME] [--requests 400] [--blocks 5] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    args = _arguments()
    from edgekit.bench.system import cpuinfo, isa_flags
    from edgekit.serve.engine import EmbeddingEngine
    from edgekit.serve.resolve import resolve

    served = resolve(args.project, args.model)
    texts = _texts(args.project)
    threads = args.threads or _physical_cores()
    engine = EmbeddingEngine(served, threads, 128)
    isa = " ".join(sorted(f for f in isa_flags() if f.startswith(("avx", "amx"))))
    print(f"{served.ref} ({served.variant}, {served.runtime}) · {threads} threads · CPU {cpuinfo().get('model name', '?')} ({isa})")
    with tempfile.TemporaryDirectory() as telemetry:
        with _Server(args.project, served.model, threads, 32, Path(telemetry) / "a") as server:
            overhead = _overhead(engine, server, texts, args.requests, args.blocks)
        throughput = _throughput(args, served.model, threads, texts, Path(telemetry))
    _report(overhead, throughput, args)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--model")
    parser.add_argument("--requests", type=int, default=400, help="requests per block (overhead) and per round (throughput)")
    parser.add_argument("--blocks", type=int, default=5, help="alternating blocks / rounds of each side")
    parser.add_argument("--threads", type=int, default=0, help="runtime threads (default: physical cores)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args()


def _texts(project: Path) -> list[str]:
    from edgekit.datasets import load_validation_pairs, unique_sentences
    from edgekit.layout import Layout

    return unique_sentences(load_validation_pairs(Layout(project)))


def _physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class _Server:
    """`edgekit serve` in a child process on a free loopback port, with its own telemetry folder."""

    def __init__(self, project: Path, model: str, threads: int, max_batch_size: int, telemetry: Path):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "edgekit", "serve", "--project", str(project), "--model", model, "--port", str(self.port),
                        "--threads", str(threads), "--max-batch-size", str(max_batch_size), "--telemetry", str(telemetry)]

    def __enter__(self) -> _Server:
        import httpx

        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS")}
        self.process = subprocess.Popen(self.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
            if self.process.poll() is not None:
                raise SystemExit(f"the server did not start: {self.process.stderr.read().decode()[-2000:]}")
        raise SystemExit("the server was not ready in 60 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _overhead(engine, server: _Server, texts: list[str], requests: int, blocks: int) -> dict:
    import httpx

    local, remote = [], []
    with httpx.Client(timeout=30) as client:
        for i in range(20):  # warm both sides up: first calls, connection, allocator
            engine.embed([texts[i % len(texts)]])
            client.post(f"{server.url}/v1/embeddings", json={"input": texts[i % len(texts)]})
        for _ in range(blocks):
            for i in range(requests):
                started = time.perf_counter()
                engine.embed([texts[i % len(texts)]])
                local.append((time.perf_counter() - started) * 1000)
            for i in range(requests):
                started = time.perf_counter()
                answer = client.post(f"{server.url}/v1/embeddings", json={"input": texts[i % len(texts)]})
                remote.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
    p50_local, p50_remote = statistics.median(local), statistics.median(remote)
    return {"requests": len(local), "in_process_p50_ms": round(p50_local, 4), "server_p50_ms": round(p50_remote, 4),
            "overhead_ms": round(p50_remote - p50_local, 4), "overhead_ratio": round(p50_remote / p50_local - 1, 4),
            "target_ms": round(max(1.0, 0.1 * p50_local), 4)}


def _throughput(args: argparse.Namespace, model: str, threads: int, texts: list[str], telemetry: Path) -> dict:
    rates: dict[int, list[float]] = {32: [], 1: []}
    for round_ in range(args.blocks):
        for batch in (32, 1):
            with _Server(args.project, model, threads, batch, telemetry / f"t{batch}-{round_}") as server:
                rates[batch].append(asyncio.run(_rate(server.url, texts, args.requests, 16)))
    batched, single = statistics.median(rates[32]), statistics.median(rates[1])
    return {"concurrency": 16, "batched_rps": round(batched, 1), "batch1_rps": round(single, 1), "ratio": round(batched / single, 3),
            "rounds": {str(k): [round(r, 1) for r in v] for k, v in rates.items()}}


async def _rate(url: str, texts: list[str], requests: int, concurrency: int) -> float:
    import httpx

    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(i: int) -> None:
            async with limit:
                (await client.post(f"{url}/v1/embeddings", json={"input": texts[i % len(texts)]})).raise_for_status()
        await asyncio.gather(*(one(i) for i in range(32)))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        return requests / (time.perf_counter() - started)


def _report(overhead: dict, throughput: dict, args: argparse.Namespace) -> None:
    verdict = "within" if overhead["overhead_ms"] <= overhead["target_ms"] else "ABOVE"
    print(f"concurrency 1, {overhead['requests']} requests a side: in-process p50 {overhead['in_process_p50_ms']:.3f} ms, "
          f"server p50 {overhead['server_p50_ms']:.3f} ms: overhead {overhead['overhead_ms']:.3f} ms "
          f"({overhead['overhead_ratio']:+.1%}), {verdict} the target of {overhead['target_ms']:.3f} ms")
    print(f"concurrency 16: dynamic batching {throughput['batched_rps']:.1f} req/s, one request per call "
          f"{throughput['batch1_rps']:.1f} req/s: x{throughput['ratio']:.2f} (medians of {args.blocks} alternating rounds)")
    if args.json:
        args.json.write_text(json.dumps({"overhead": overhead, "throughput": throughput}, indent=1))


if __name__ == "__main__":
    main()
