"""A served decoder version: its tokenizer, its runtime's decoder backend, and one generation at a time.

The engine runs the variant through the same ``DecoderBackend`` the pipeline measured it with, on token ids
from the variant's own copy of the baseline's tokenizer (a prompt is BOS and the text's ids, as the pipeline
tokenized the held-out text), so a served continuation is the benchmarked variant's. A generation holds the
KV cache from its prefill to its last token, so requests take turns on one inference thread; the batcher's
role for encoders is the ``Sequencer``'s here.

Example:
    >>> engine = GenerationEngine(served, threads=2)
    >>> done = engine.generate(engine.prompt_ids("The lake was"), Sampling(max_tokens=8, temperature=0))
    >>> done.text, done.finish_reason
    (' covered in ice.', 'stop')
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.serve.engine import Fault, InjectedFault
from edgekit.serve.resolve import ServedVersion

DEFAULT_CONTEXT = 2048   # when config.json names no max_position_embeddings


@dataclass(frozen=True)
class Sampling:
    """How the next tokens are chosen: greedy at temperature 0, else sampled (nucleus ``top_p``) with ``seed``."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class Completion:
    text: str = ""
    ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    prompt_tokens: int = 0
    entropy: float = 0.0                 # nats: the next-token distribution's entropy after the prompt
    ttft_s: float = 0.0                  # prefill and the first token chosen
    token_s: list[float] = field(default_factory=list)   # each later token's time (decode and choice)


def entropy(logits: np.ndarray) -> float:
    """Shannon entropy (nats) of softmax(logits)."""
    shifted = logits.astype(np.float64) - float(np.max(logits))
    p = np.exp(shifted)
    p /= p.sum()
    nonzero = p[p > 0]
    return float(-(nonzero * np.log(nonzero)).sum())


class GenerationEngine:
    """A decoder variant loaded with its runtime's decoder backend and its tokenizer."""

    kind = "generation"

    def __init__(self, served: ServedVersion, threads: int, fault: Fault | None = None):
        from transformers import AutoTokenizer

        from edgekit.runtimes import get_runtime

        if not (served.folder / "tokenizer_config.json").is_file():
            raise EdgekitError(f"{served.ref} ({served.variant}) has no tokenizer in {served.folder}: a server needs the baseline's "
                               "tokenizer files beside the model", f"re-run `dvc repro decoder_optimize@{served.variant}` with this "
                               "edgekit (every runtime's decoder variant carries them) and register the variant again")
        config = get_runtime(served.runtime)
        options = config.options.parse(served.options, f"the manifest of {served.ref}")
        self.backend = config.backend("generation")(served.precision, options, threads)
        model_config = json.loads((served.folder / "config.json").read_text())
        self.context = int(model_config.get("max_position_embeddings") or DEFAULT_CONTEXT)
        self.backend.load(served.folder, self.context)
        self.tokenizer = AutoTokenizer.from_pretrained(served.folder)
        self.eos = self.tokenizer.eos_token_id
        self.fault = fault or Fault()
        self._random = random.Random(0)
        # The first call of a runtime is slow (llama.cpp repacks weights, thread pools start: 0.5 s measured), so it
        # happens here, before /readyz says ready, not in a client's request.
        self.generate(self.prompt_ids("warm up"), Sampling(max_tokens=2, temperature=0), inject=False)

    def prompt_ids(self, text: str) -> list[int]:
        """BOS and the text's token ids: how the pipeline tokenized the held-out sentences it measured."""
        return [self.tokenizer.bos_token_id, *self.tokenizer.encode(text, add_special_tokens=False)]

    def prompt_entropy(self, ids: list[int]) -> float:
        """The next-token entropy after ``ids`` (the drift reference's feature; no fault injected)."""
        self.backend.reset()
        return entropy(self.backend.prefill(ids))

    def generate(self, ids: list[int], sampling: Sampling, emit: Callable[[str], None] | None = None,
                 cancelled: threading.Event | None = None, inject: bool = True) -> Completion:
        """Continue ``ids``; ``emit`` gets each new piece of text as soon as it is final (streaming); ``inject``:
        apply the fault, if any."""
        if inject:
            self._inject()
        started = time.perf_counter()
        rng = np.random.default_rng(sampling.seed)
        done = Completion(prompt_tokens=len(ids))
        self.backend.reset()
        logits = self.backend.prefill(ids)
        done.entropy = entropy(logits)
        sent, last = 0, started
        head = self.tokenizer.decode([ids[-1]], skip_special_tokens=True)
        while len(done.ids) < sampling.max_tokens:
            token = _choose(logits, sampling, rng)
            now = time.perf_counter()
            if done.ids:
                done.token_s.append(now - last)
            else:
                done.ttft_s = now - started
            last = now
            if token == self.eos:
                done.finish_reason = "stop"
                break
            done.ids.append(token)
            text = self._text(ids[-1], head, done.ids)
            cut = _stop_at(text, sampling.stop)
            if cut is not None:
                done.text, done.finish_reason = text[:cut], "stop"
                break
            done.text = text
            final = len(text) - _held_back(text, sampling.stop)
            if emit and final > sent:
                emit(text[sent:final])
                sent = final
            if cancelled is not None and cancelled.is_set():
                done.finish_reason = "cancelled"
                break
            if len(done.ids) < sampling.max_tokens:
                logits = self.backend.decode(token)
        if emit and len(done.text) > sent:
            emit(done.text[sent:])
        return done

    def _text(self, anchor: int, head: str, ids: list[int]) -> str:
        """The text of ``ids`` as it continues the prompt: decoded after the prompt's last token (``anchor``, whose
        own text is ``head``) and cut after it, since SentencePiece drops the leading space of the first token it
        decodes."""
        return self.tokenizer.decode([anchor, *ids], skip_special_tokens=True)[len(head):]

    def _inject(self) -> None:
        if self.fault.delay_ms:
            time.sleep(self.fault.delay_ms / 1000)
        if self.fault.error_rate and self._random.random() < self.fault.error_rate:
            raise InjectedFault(f"injected fault (error_rate={self.fault.error_rate})")


def _choose(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    if sampling.temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / sampling.temperature
    p = np.exp(scaled - scaled.max())
    p /= p.sum()
    if sampling.top_p < 1:
        order = np.argsort(-p, kind="stable")
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), sampling.top_p)) + 1]
        kept = np.zeros_like(p)
        kept[keep] = p[keep]
        p = kept / kept.sum()
    return int(rng.choice(len(p), p=p))


def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [text.find(stop) for stop in stops if stop and stop in text]
    return min(hits) if hits else None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of ``text`` not yet final: an unfinished UTF-8 sequence (the tokenizer shows it as
    U+FFFD until its last byte comes) or the beginning of a stop sequence."""
    held = len(text) - len(text.rstrip("\ufffd"))
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                held = max(held, k)
                break
    return held


class Sequencer:
    """Generations in, one at a time, on one inference thread: the decoder's counterpart of ``Batcher``."""

    max_batch_size = 1
    max_wait = 0.0

    def __init__(self, engine: GenerationEngine):
        self.engine = engine
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgekit-generate")
        self.on_batch = lambda inputs, tokens: None

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.executor.shutdown(wait=True)

    async def generate(self, ids: list[int], sampling: Sampling, emit: Callable[[str], None] | None = None,
                       cancelled: threading.Event | None = None) -> Completion:
        done = await asyncio.get_running_loop().run_in_executor(self.executor, self.engine.generate, ids, sampling, emit, cancelled)
        self.on_batch(1, len(ids))
        return done


def check_sampling(sampling: Sampling) -> str | None:
    """What is wrong with ``sampling``, in words, or None."""
    if not 0 <= sampling.temperature <= 2 or math.isnan(sampling.temperature):
        return f"temperature {sampling.temperature} is outside 0..2"
    if not 0 < sampling.top_p <= 1:
        return f"top_p {sampling.top_p} is outside (0, 1]"
    return None
