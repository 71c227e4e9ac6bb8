"""The decoder side of a runtime: make a variant of a causal language model, then prefill, decode and score.

Every call takes and returns token ids from the baseline's tokenizer, so no runtime re-tokenizes and
tokenization cannot differ between variants; logits come back as float32 numpy arrays.

Example:
    >>> decoder = get_runtime("llamacpp").backend("generation")("q4_k_m", options, threads=2)
    >>> decoder.load(folder, context=512)
    >>> logits = decoder.prefill(prompt_ids)           # (vocab,) after the last prompt token
    >>> logits = decoder.decode(int(logits.argmax()))  # one token on top of the KV cache
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.runtimes.base import Options


class DecoderBackend(ABC):
    def __init__(self, precision: str, options: Options, threads: int):
        self.precision = precision
        self.options = options
        self.threads = threads

    @abstractmethod
    def optimize(self, source: Path, out: Path, scratch: Path) -> dict[str, Any]:
        """Write the variant's files into ``out`` from the Hugging Face folder ``source``; return what was done."""

    @abstractmethod
    def load(self, folder: Path, context: int) -> None:
        """Load a variant folder with a KV cache for ``context`` tokens."""

    @abstractmethod
    def reset(self) -> None:
        """Empty the KV cache: the next ``prefill`` starts a new sequence."""

    @abstractmethod
    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        """Append ``ids`` to the cache in one pass; the next-token logits after the last one, ``(vocab,)``."""

    @abstractmethod
    def decode(self, token: int) -> np.ndarray:
        """Append one token; the next-token logits, ``(vocab,)``."""

    @abstractmethod
    def score(self, ids: Sequence[int]) -> np.ndarray:
        """The next-token logits after every position of ``ids`` as a new sequence, ``(len(ids), vocab)``."""

    def tokenize(self, text: str) -> list[int] | None:
        """The variant's own tokenizer on ``text`` (with BOS), for runtimes whose files carry one (a GGUF does);
        None when the runtime only ever takes token ids. A deployment that tokenizes with it must agree with
        the baseline's tokenizer: the conformance suite checks it."""
        return None

    def describe(self) -> dict[str, Any]:
        """Settings the runtime actually used, for the record."""
        return {"threads": self.threads}


def greedy(decoder: DecoderBackend, prompt: Sequence[int], tokens: int) -> list[int]:
    """``tokens`` greedy next tokens after ``prompt`` (a new sequence), through the KV cache."""
    decoder.reset()
    logits = decoder.prefill(prompt)
    out: list[int] = []
    for _ in range(tokens):
        out.append(int(np.argmax(logits)))
        if len(out) < tokens:
            logits = decoder.decode(out[-1])
    return out
