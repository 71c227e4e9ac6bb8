"""A served version's model in memory, and the dynamic batcher in front of it.

The engine runs the variant with the same tokenizer, runtime backend and pooling the pipeline measured it
with (``edgekit.tasks.embedding.encoding``), so a served embedding is the benchmarked variant's embedding. The batcher
gathers the requests that arrive while the runtime is busy into one call: no request waits for a batch to
fill unless ``max_wait_ms`` asks it to.

Example:
    >>> engine = EmbeddingEngine(served, threads=2, max_tokens=128)
    >>> batcher = Batcher(engine, max_batch_size=32, max_wait_ms=0)
    >>> vectors = (await batcher.submit(["a sentence"])).vectors
"""

from __future__ import annotations

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import ConfigError
from edgekit.fsutil import read_json
from edgekit.serve.resolve import ServedVersion


@dataclass
class Embedded:
    vectors: np.ndarray          # (inputs, hidden) float32
    ids: list[list[int]]         # each input's token ids (after truncation)


@dataclass(frozen=True)
class Fault:
    """Fault injection for rehearsing a rollback: every batch of this version is delayed, or fails at a rate."""

    delay_ms: float = 0.0
    error_rate: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``delay_ms=40`` or ``error_rate=0.2`` or both, comma-separated."""
        fields: dict[str, float] = {}
        for part in filter(None, text.split(",")):
            key, _, value = part.partition("=")
            if key not in ("delay_ms", "error_rate"):
                raise ConfigError("--fault", text, "delay_ms=<ms> and/or error_rate=<0..1>, e.g. delay_ms=40", "the command line")
            try:
                fields[key] = float(value)
            except ValueError as exc:
                raise ConfigError(f"--fault {key}", value, "a number", "the command line") from exc
        fault = cls(**fields)
        if fault.delay_ms < 0 or not 0 <= fault.error_rate <= 1:
            raise ConfigError("--fault", text, "delay_ms >= 0 and error_rate between 0 and 1", "the command line")
        return fault


class InjectedFault(RuntimeError):
    """The error a ``Fault`` raises on purpose."""


class EmbeddingEngine:
    """An encoder variant loaded with its runtime backend, its tokenizer and its pooling."""

    kind = "embedding"

    def __init__(self, served: ServedVersion, threads: int, max_tokens: int, fault: Fault | None = None):
        from edgekit.runtimes import get_runtime
        from edgekit.tasks.embedding.encoding import TextEncoder

        config = get_runtime(served.runtime)
        options = config.options.parse(served.options, f"the manifest of {served.ref}")
        self.backend = config.backend("embedding")(served.precision, options, threads)
        self.backend.load(served.folder)
        self.encoder = TextEncoder(served.folder, max_tokens)
        self.pooling = read_json(served.folder / "embedding.json")
        self.fault = fault or Fault()
        self._random = random.Random(0)

    def embed(self, texts: list[str], inject: bool = True) -> Embedded:
        """Embed ``texts`` as one batch; ``inject``: apply the fault, if any (not to the drift reference)."""
        from edgekit.tasks.embedding.encoding import pool

        if inject:
            self._inject()
        batch = self.encoder.encode(texts)
        hidden = self.backend.run(batch)
        vectors = pool(hidden, batch["attention_mask"], self.pooling["pooling"], self.pooling["normalize"])
        lengths = batch["attention_mask"].sum(axis=1)
        return Embedded(np.asarray(vectors, dtype=np.float32), [batch["input_ids"][i, :n].tolist() for i, n in enumerate(lengths)])

    def _inject(self) -> None:
        if self.fault.delay_ms:
            time.sleep(self.fault.delay_ms / 1000)
        if self.fault.error_rate and self._random.random() < self.fault.error_rate:
            raise InjectedFault(f"injected fault (error_rate={self.fault.error_rate})")


class Batcher:
    """Requests in, one runtime call per batch out, on one inference thread (the runtime uses the cores).

    Args:
        max_batch_size: inputs per runtime call at most.
        max_wait_ms: how long the first request of a batch may wait for others (0: only those already queued).
    """

    def __init__(self, engine: EmbeddingEngine, max_batch_size: int = 32, max_wait_ms: float = 0.0, on_batch=None):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch or (lambda inputs, tokens: None)
        self._queue: asyncio.Queue | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgekit-infer")
        self._task: asyncio.Task | None = None
        self._pending: tuple[list[str], Any] | None = None  # the request that did not fit the last batch: first in the next

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self.executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> Embedded:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            texts = [text for item, _ in batch for text in item]
            try:
                result = await loop.run_in_executor(self.executor, self.engine.embed, texts)
            except Exception as exc:  # the requests of this batch get the error; the server goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.on_batch(len(texts), sum(len(ids) for ids in result.ids))
            start = 0
            for item, future in batch:
                if not future.done():
                    future.set_result(Embedded(result.vectors[start:start + len(item)], result.ids[start:start + len(item)]))
                start += len(item)

    async def _gather(self) -> list[tuple[list[str], Any]]:
        batch = [self._pending or await self._queue.get()]
        self._pending = None
        size = len(batch[0][0])
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if size + len(item[0]) > self.max_batch_size:  # would overflow: it starts the next batch
                self._pending = item
                break
            batch.append(item)
            size += len(item[0])
        return batch
