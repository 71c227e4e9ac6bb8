"""Tokenization, pooling and the similarity metrics every runtime shares.

The same tokenizer file and the same numpy pooling are used for all variants, so differences in
speed or fidelity come from the runtime, not from pre- or post-processing.

Example:
    >>> encoder = TextEncoder(folder, max_length=128)
    >>> batch = encoder.encode(["a sentence", "another one"])
    >>> vectors = pool(backend.run(batch), batch["attention_mask"], "mean", normalize=True)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TextEncoder:
    """The fast tokenizer saved in a model folder (tokenizer.json), as int64 model inputs.

    Args:
        folder: a model or variant folder holding tokenizer.json.
        max_length: tokens kept per text.
    """

    def __init__(self, folder: Path, max_length: int):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.max_length = max_length
        self.pad_id = self._pad_id(folder)

    def _pad_id(self, folder: Path) -> int:
        config = folder / "tokenizer_config.json"
        pad_token = json.loads(config.read_text()).get("pad_token", "[PAD]") if config.is_file() else "[PAD]"
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content", "[PAD]")
        token_id = self.tokenizer.token_to_id(pad_token)
        return 0 if token_id is None else token_id

    def encode(self, texts: list[str], max_length: int | None = None) -> dict[str, np.ndarray]:
        """Tokenize ``texts``, truncate, and pad to the longest."""
        self.tokenizer.enable_truncation(max_length=max_length or self.max_length)
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        batch = {name: np.zeros((len(texts), width), dtype=np.int64) for name in MODEL_INPUTS}
        batch["input_ids"].fill(self.pad_id)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            batch["input_ids"][row, :n] = enc.ids
            batch["attention_mask"][row, :n] = enc.attention_mask
            batch["token_type_ids"][row, :n] = enc.type_ids
        return batch

    def fixed_length_batch(self, texts: list[str], batch_size: int, seq_length: int, offset: int = 0) -> dict[str, np.ndarray]:
        """A batch of real text, every row exactly ``seq_length`` tokens, with no padding.

        Each row joins consecutive sentences, starting ``offset`` sentences in, and is cut by
        truncation at ``seq_length``.
        """
        rows = []
        for row in range(batch_size):
            start = (offset + row * 7) % len(texts)
            rows.append(" ".join(texts[(start + i) % len(texts)] for i in range(max(4, seq_length // 4))))
        batch = self.encode(rows, max_length=seq_length)
        if batch["input_ids"].shape[1] != seq_length or not batch["attention_mask"].all():
            raise ValueError(f"could not build {seq_length}-token rows from the texts given")
        return batch


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """Sentence vectors from token states (``mean``, ``cls`` or ``max``), optionally L2-normalized."""
    hidden = np.asarray(hidden, dtype=np.float32)
    mask = attention_mask[..., None].astype(np.float32)
    if pooling == "mean":
        vectors = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    elif pooling == "cls":
        vectors = hidden[:, 0]
    elif pooling == "max":
        vectors = np.where(mask > 0, hidden, -np.inf).max(axis=1)
    else:
        raise ValueError(f"unknown pooling {pooling!r}; expected mean, cls or max")
    if normalize:
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return vectors


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    a = a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)
    b = b / np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
    return (a * b).sum(axis=1)


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank (as scipy's ``rankdata`` does by default)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks)."""
    rx, ry = rankdata(x), rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denominator) if denominator else 0.0
