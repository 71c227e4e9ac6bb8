"""A decoder served by `edgekit serve`: client-side time to first token and tokens/s of streamed completions,
against the same variant run in-process, and no request uncounted.

Each level sends ``--requests`` streamed completions (prompts: the first words of the held-out sentences,
greedy, ``--max-tokens`` each) from ``concurrency`` clients. The client times its first text event (TTFT as a
user sees it, HTTP and tokenizer included) and the whole stream. The in-process figures come from the same
``GenerationEngine`` the server runs, on the same prompts, before the load. The server's count
(``edgekit_requests_total`` for completions) is read before and after each level.

Run:  edgekit serve --model edgekit-tiny-llama --threads 1 &
      python benchmarks/serve_completions.py [--url http://127.0.0.1:8000] [--concurrency 1 4] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--project", type=Path, default=Path("."), help="where the registry and data/decoder/heldout.txt are")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=200, help="completions per level")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="the in-process engine's threads (the server's --threads)")
    args = parser.parse_args()
    prompts = _prompts(args.project)
    status = httpx.get(f"{args.url}/v1/edgekit/status", timeout=30).json()["stable"]
    print(f"served: {status['model']}@{status['version']} ({status['variant']}, {status['runtime']} {status['precision']})")
    _in_process(args.project, status, prompts, args)
    lost_total = 0
    for concurrency in args.concurrency:
        before = _counted(args.url)
        figures = asyncio.run(_level(args.url, status["model"], prompts, args.requests, concurrency, args.max_tokens))
        lost = figures["answered"] - (_counted(args.url) - before)
        lost_total += abs(lost)
        print(f"server, concurrency {concurrency}: {figures['answered']} answered, {figures['errors']} errors; TTFT p50 "
              f"{figures['ttft_p50']:.2f} ms, p99 {figures['ttft_p99']:.2f} ms; {figures['tokens_per_s']:.0f} tokens/s in all, "
              f"{figures['stream_tokens_per_s']:.0f} tokens/s per stream (median); server counted {figures['answered'] - lost} "
              f"(lost telemetry {lost})")
    sys.exit(1 if lost_total else 0)


def _prompts(project: Path) -> list[str]:
    sentences = [s for s in (project / "data" / "decoder" / "heldout.txt").read_text().splitlines() if s.strip()]
    return [" ".join(s.split()[: max(2, len(s.split()) // 2)]) for s in sentences]


def _in_process(project: Path, status: dict, prompts: list[str], args) -> None:
    from edgekit.serve.generate import GenerationEngine, Sampling
    from edgekit.serve.resolve import resolve

    engine = GenerationEngine(resolve(project, status["model"], version=status["version"]), threads=args.threads)
    ttft, per_token = [], []
    for prompt in prompts:
        done = engine.generate(engine.prompt_ids(prompt), Sampling(max_tokens=args.max_tokens, temperature=0))
        ttft.append(done.ttft_s * 1000)
        per_token += [s * 1000 for s in done.token_s]
    print(f"in-process ({len(prompts)} prompts): TTFT p50 {np.median(ttft):.2f} ms; per output token p50 {np.median(per_token):.3f} ms, "
          f"p99 {np.percentile(per_token, 99):.3f} ms ({1000 / np.median(per_token):.0f} tokens/s)")


async def _level(url: str, model: str, prompts: list[str], requests: int, concurrency: int, max_tokens: int) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(prompts[i % len(prompts)])
    ttft, rates, errors, tokens = [], [], 0, 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, tokens
        while not queue.empty():
            prompt = queue.get_nowait()
            started, first, usage = time.perf_counter(), None, None
            body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True}}
            async with http.stream("POST", f"{url}/v1/completions", json=body) as response:
                if response.status_code != 200:
                    errors += 1
                    await response.aread()
                    continue
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        errors += 1
                    elif first is None and event["choices"][0]["text"]:
                        first = time.perf_counter()
                    usage = event.get("usage") or usage
            ended = time.perf_counter()
            if first is not None:
                ttft.append((first - started) * 1000)
            if usage:
                tokens += usage["completion_tokens"]
                if usage["completion_tokens"] > 1 and first is not None:
                    rates.append((usage["completion_tokens"] - 1) / max(ended - first, 1e-9))

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"answered": requests, "errors": errors, "ttft_p50": float(np.median(ttft)), "ttft_p99": float(np.percentile(ttft, 99)),
            "tokens_per_s": tokens / elapsed, "stream_tokens_per_s": float(np.median(rates)) if rates else 0.0}


def _counted(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "edgekit_requests_total" and sample.labels["endpoint"] == "completions"
               and sample.labels["status"][0] in "25")


if __name__ == "__main__":
    main()
