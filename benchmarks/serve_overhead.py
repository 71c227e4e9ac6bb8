"""What `edgekit serve` costs over calling the model in-process, and what dynamic batching buys.

1. Overhead at concurrency 1: the p50 of one embeddings request through the server (HTTP on loopback, JSON,
   routing, metrics, a keep-alive connection) against the p50 of the same variant embedding the same text in this
   process (``EmbeddingEngine.embed``: the tokenizer, the runtime and the pooling the server runs). The client is
   a keep-alive socket sending a prepared request, so the figure is the server's and not a Python HTTP client's;
   httpx's round trip is measured too, for what a Python caller sees. The three are measured in alternating
   blocks, so machine noise falls on all of them. Target: overhead ≤ max(1 ms, 10%).
2. Throughput at concurrency 16: requests per second with dynamic batching (``--max-batch-size 32``) against
   the same server answering one request per runtime call (``--max-batch-size 1``), in alternating rounds, from
   16 keep-alive sockets driven by one asyncio loop (the load generator shares the machine's cores).

The version served is the registry's production version of the project (README: "Serve and watch"); the inputs
are the validation sentences, which the benchmark never judges anything on.

Run:  python benchmarks/serve_overhead.py --project . [--model NAME] [--version vX.Y.Z] [--requests 400] [--blocks 5]
      [--threads N]
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
    from edgekit.params import physical_cores
    from edgekit.serve.engine import EmbeddingEngine
    from edgekit.serve.resolve import resolve

    served = resolve(args.project, args.model, args.version)
    texts = _texts(args.project)
    threads = args.threads or physical_cores()
    engine = EmbeddingEngine(served, threads, 128)
    isa = " ".join(sorted(f for f in isa_flags() if f.startswith(("avx", "amx"))))
    print(f"{served.ref} ({served.variant}, {served.runtime}) · {threads} threads · CPU {cpuinfo().get('model name', '?')} ({isa})")
    with tempfile.TemporaryDirectory() as telemetry:
        with _Server(args.project, served, threads, 32, Path(telemetry) / "a") as server:
            overhead = _overhead(engine, server, texts, args.requests, args.blocks)
        throughput = _throughput(args, served, threads, texts, Path(telemetry))
    _report(overhead, throughput, args)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--model")
    parser.add_argument("--version", help="a registered version (default: production)")
    parser.add_argument("--requests", type=int, default=400, help="requests per block (overhead) and per round (throughput)")
    parser.add_argument("--blocks", type=int, default=5, help="alternating blocks / rounds of each side")
    parser.add_argument("--threads", type=int, default=0, help="runtime threads (default: physical cores)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args()


def _texts(project: Path) -> list[str]:
    from edgekit.datasets import load_validation_pairs, unique_sentences
    from edgekit.layout import Layout

    return unique_sentences(load_validation_pairs(Layout(project)))


class _Server:
    """`edgekit serve` in a child process on a free loopback port, with its own telemetry folder."""

    def __init__(self, project: Path, served, threads: int, max_batch_size: int, telemetry: Path):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "edgekit", "serve", "--project", str(project), "--model", served.model,
                        "--version", served.version, "--port", str(self.port), "--threads", str(threads),
                        "--max-batch-size", str(max_batch_size), "--telemetry", str(telemetry)]

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


def _request(text: str) -> bytes:
    body = json.dumps({"input": text}).encode()
    return (b"POST /v1/embeddings HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body)) + body


class _Socket:
    """A keep-alive HTTP/1.1 client that sends prepared requests and reads each answer by its content-length."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, request: bytes) -> int:
        self.sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = _content_length(head)
        while len(body) < length:
            body += self.sock.recv(65536)
        return int(head.split(b" ", 2)[1])


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    raise ValueError("an answer without content-length")


def _overhead(engine, server: _Server, texts: list[str], requests: int, blocks: int) -> dict:
    import httpx

    requests_bytes = [_request(t) for t in texts]
    timings: dict[str, list[float]] = {"in_process": [], "server": [], "server_httpx": []}
    raw, client = _Socket(server.port), httpx.Client(timeout=30)
    calls = {"in_process": lambda i: engine.embed([texts[i]]), "server": lambda i: raw.post(requests_bytes[i]),
             "server_httpx": lambda i: client.post(f"{server.url}/v1/embeddings", json={"input": texts[i]})}
    for call in calls.values():  # warm each side up: first calls, connections, allocator
        for i in range(20):
            call(i % len(texts))
    for _ in range(blocks):
        for name, call in calls.items():
            for i in range(requests):
                started = time.perf_counter()
                call(i % len(texts))
                timings[name].append((time.perf_counter() - started) * 1000)
    client.close()
    p50 = {name: statistics.median(values) for name, values in timings.items()}
    return {"requests": requests * blocks, **{f"{name}_p50_ms": round(value, 4) for name, value in p50.items()},
            "overhead_ms": round(p50["server"] - p50["in_process"], 4), "overhead_ratio": round(p50["server"] / p50["in_process"] - 1, 4),
            "httpx_overhead_ms": round(p50["server_httpx"] - p50["in_process"], 4),
            "target_ms": round(max(1.0, 0.1 * p50["in_process"]), 4)}


def _throughput(args: argparse.Namespace, served, threads: int, texts: list[str], telemetry: Path) -> dict:
    rates: dict[int, list[float]] = {32: [], 1: []}
    for round_ in range(args.blocks):
        for batch in (32, 1):
            with _Server(args.project, served, threads, batch, telemetry / f"t{batch}-{round_}") as server:
                rates[batch].append(asyncio.run(_rate(server.port, texts, args.requests, 16)))
    batched, single = statistics.median(rates[32]), statistics.median(rates[1])
    return {"concurrency": 16, "batched_rps": round(batched, 1), "batch1_rps": round(single, 1), "ratio": round(batched / single, 3),
            "rounds": {str(k): [round(r, 1) for r in v] for k, v in rates.items()}}


async def _rate(port: int, texts: list[str], requests: int, concurrency: int) -> float:
    prepared = [_request(t) for t in texts]
    queue: asyncio.Queue = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (i := await queue.get()) is not None:
            writer.write(prepared[i % len(prepared)])
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(head))
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status:
                raise SystemExit(f"the server answered {status!r}")
        writer.close()

    for count in (64, requests):  # a warm-up, then the timed run
        for i in range(count):
            queue.put_nowait(i)
        for _ in range(concurrency):
            queue.put_nowait(None)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return requests / elapsed


def _report(overhead: dict, throughput: dict, args: argparse.Namespace) -> None:
    verdict = "within" if overhead["overhead_ms"] <= overhead["target_ms"] else "ABOVE"
    print(f"concurrency 1, {overhead['requests']} requests a side: in-process p50 {overhead['in_process_p50_ms']:.3f} ms, "
          f"server p50 {overhead['server_p50_ms']:.3f} ms: overhead {overhead['overhead_ms']:.3f} ms "
          f"({overhead['overhead_ratio']:+.1%}), {verdict} the target of {overhead['target_ms']:.3f} ms; "
          f"through httpx {overhead['server_httpx_p50_ms']:.3f} ms (+{overhead['httpx_overhead_ms']:.3f} ms)")
    print(f"concurrency 16: dynamic batching {throughput['batched_rps']:.1f} req/s, one request per call "
          f"{throughput['batch1_rps']:.1f} req/s: x{throughput['ratio']:.2f} (medians of {args.blocks} alternating rounds)")
    if args.json:
        args.json.write_text(json.dumps({"overhead": overhead, "throughput": throughput}, indent=1))


if __name__ == "__main__":
    main()
