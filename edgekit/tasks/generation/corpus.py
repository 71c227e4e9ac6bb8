"""The decoder's text: every sentence of the corpus folder, split with the seed into train and held-out.

A sentence is a line of a ``*.txt`` file or a ``sentence*`` column of a ``*.tsv`` file (the shipped
``data/source``: original sentences written for edgekit, CC0-1.0, see its README). Duplicates are
dropped before the split, so no held-out sentence is also a training one.

Example:
    >>> train, heldout = split_corpus(Path("data/source"), share=0.1, seed=0)
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from edgekit.errors import DataError


def read_corpus(folder: Path) -> list[str]:
    """The distinct sentences of ``folder``'s .txt and .tsv files, sorted (independent of file order)."""
    sentences: set[str] = set()
    for path in sorted(folder.glob("*.txt")):
        sentences.update(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    for path in sorted(folder.glob("*.tsv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                sentences.update((value or "").strip() for key, value in row.items() if key and key.startswith("sentence"))
    sentences.discard("")
    if len(sentences) < 20:
        raise DataError(f"{folder} holds {len(sentences)} sentences (lines of *.txt, sentence* columns of *.tsv)",
                        "point decoder.corpus_dir at a folder with at least 20 sentences of text")
    return sorted(sentences)


def split_corpus(folder: Path, share: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) sentences; the held-out part is ``share`` of them, at least one."""
    sentences = read_corpus(folder)
    random.Random(seed).shuffle(sentences)
    held = max(1, round(len(sentences) * share))
    return sentences[held:], sentences[:held]


def token_stream(tokenizer, sentences: list[str]) -> list[int]:
    """The sentences as one stream of token ids, each framed by BOS and EOS (how the model is trained)."""
    ids: list[int] = []
    for sentence in sentences:
        ids += [tokenizer.bos_token_id, *tokenizer.encode(sentence, add_special_tokens=False), tokenizer.eos_token_id]
    return ids


def windows(ids: list[int], length: int) -> list[list[int]]:
    """Consecutive non-overlapping windows of ``length`` tokens (the last, shorter one dropped)."""
    return [ids[start:start + length] for start in range(0, len(ids) - length + 1, length)]
