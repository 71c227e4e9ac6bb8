"""The labelled pairs and sentences: reading the shipped files, the seeded sentence-grouped split, and
loading the parts the ``data`` stage wrote (``edgekit.pipeline.data``).

The labeled set is sentence pairs with graded similarity (0–5, the STS scale) written for edgekit
(see data/source/README.md); the task metric is the Spearman correlation between the model's
cosine similarity and the gold score.

Example:
    >>> unique_sentences(load_eval_pairs(Layout(Path("."))))[:1]
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import DataError
from edgekit.layout import Layout
from edgekit.params import Params

PAIRS_FILE = "sts_pairs.tsv"
CALIBRATION_FILE = "calibration_sentences.txt"
PAIR_COLUMNS = ["pair_id", "topic", "score", "sentence1", "sentence2"]
MIN_TEST_PAIRS = 300  # a full evaluation (data.eval_pairs: 0) reports on at least this many pairs
MIN_PART_PAIRS = 5  # a Spearman correlation over fewer pairs says nothing
SPLIT_METHOD = (
    "pairs that share a sentence (ignoring case and spacing) form one group and go to the same part; groups are "
    "ordered by half-point band of their mean score, randomly within a band, and walked in that order: a group goes "
    "to validation when that keeps the validation count nearest validation_share x pairs seen (plus a seeded offset "
    "of at most half a pair), so both parts span the score scale in the same shares"
)

@dataclass(frozen=True)
class Pair:
    pair_id: str
    topic: str
    score: float
    sentence1: str
    sentence2: str


def read_pairs(path: Path) -> list[Pair]:
    """Read and check the labeled pairs; errors name the file, line and field."""
    try:
        handle = open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}", "restore it with `git checkout -- data/source`") from exc
    pairs, seen = [], set()
    with handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != PAIR_COLUMNS:
            raise DataError(f"{path}:1: header is {header!r}", f"expected the tab-separated columns {PAIR_COLUMNS}")
        for line, row in enumerate(reader, start=2):
            if len(row) != len(PAIR_COLUMNS) or not all(cell.strip() for cell in row):
                raise DataError(f"{path}:{line}: expected {len(PAIR_COLUMNS)} non-empty fields, got {row!r}", "fix or remove the line")
            try:
                score = float(row[2])
            except ValueError:
                score = float("nan")
            if not 0.0 <= score <= 5.0:
                raise DataError(f"{path}:{line}: score = {row[2]!r}", "a number from 0 to 5")
            if row[0] in seen:
                raise DataError(f"{path}:{line}: pair_id {row[0]!r} appears twice", "give each pair a unique id")
            seen.add(row[0])
            pairs.append(Pair(row[0], row[1], score, row[3], row[4]))
    return pairs


def read_sentences(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}", "restore it with `git checkout -- data/source`") from exc
    sentences = [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise DataError(f"{path} holds no sentences", "one sentence per line")
    return sentences


def check_sources(params: Params, root: Path) -> tuple[Path, Path]:
    """Find the source files, before any work; raise ``DataError`` naming what is missing."""
    source = root / params.data.source_dir
    pairs, calibration = source / PAIRS_FILE, source / CALIBRATION_FILE
    for path in (pairs, calibration):
        if not path.is_file():
            raise DataError(f"data.source_dir: {path} does not exist", f"restore it with `git checkout -- {params.data.source_dir}`")
    return pairs, calibration


def sentence_key(sentence: str) -> str:
    """A sentence's identity for disjointness: case and runs of spaces do not make a new sentence."""
    return " ".join(sentence.split()).casefold()


def sentence_groups(pairs: list[Pair]) -> list[list[Pair]]:
    """The pairs joined (transitively) when they share a sentence, each group in file order."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for pair in pairs:
        left, right = root(sentence_key(pair.sentence1)), root(sentence_key(pair.sentence2))
        parent[left] = right
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(root(sentence_key(pair.sentence1)), []).append(pair)
    return list(groups.values())


def split_pairs(pairs: list[Pair], share: float, rng: random.Random) -> tuple[list[Pair], list[Pair]]:
    """Split ``pairs`` into (validation, test), whole sentence groups at a time (see ``SPLIT_METHOD``).

    Args:
        pairs: the labeled pairs.
        share: the fraction of pairs that goes to validation, in (0, 1).
        rng: the seeded generator; the same seed gives the same split.

    Returns:
        Both parts in ``pair_id`` order. With groups of one pair each and ``share`` at most 0.5,
        validation holds ``share * len(pairs)`` pairs, rounded up or down.
    """
    groups = sentence_groups(pairs)
    shuffle = [rng.random() for _ in groups]
    order = sorted(range(len(groups)), key=lambda i: (_score_band(groups[i]), shuffle[i]))
    offset, seen = rng.random() - 0.5, 0
    validation: list[Pair] = []
    test: list[Pair] = []
    for i in order:
        size = len(groups[i])
        # Error diffusion, not a coin per group: any run of the order (a score band) then holds the
        # validation share to within a pair or a group, and a big group counts by its size.
        target = share * (seen + size) + offset
        (validation if len(validation) + size / 2 < target else test).extend(groups[i])
        seen += size
    return sorted(validation, key=lambda p: p.pair_id), sorted(test, key=lambda p: p.pair_id)


def _score_band(group: list[Pair]) -> int:
    mean = sum(p.score for p in group) / len(group)
    return min(int(mean * 2), 9)  # half-point bands, 5.0 joining [4.5, 5)


def shared_sentences(first: list[Pair], second: list[Pair]) -> set[str]:
    """Sentences (as ``sentence_key``) that occur in both lists of pairs."""

    def keys(pairs: list[Pair]) -> set[str]:
        return {sentence_key(s) for p in pairs for s in (p.sentence1, p.sentence2)}

    return keys(first) & keys(second)


def _load_pairs(path: Path) -> list[Pair]:
    from edgekit.errors import StageInputError

    if not path.is_file():
        raise StageInputError(f"{path} does not exist", "run `dvc repro data`")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Pair(**json.loads(line)) for line in lines if line.strip()]


def load_eval_pairs(layout: Layout) -> list[Pair]:
    """The test pairs written by the ``data`` stage: what every reported metric is computed on."""
    return _load_pairs(layout.eval_pairs)


def load_validation_pairs(layout: Layout) -> list[Pair]:
    """The validation pairs written by the ``data`` stage: for optimizers and tuning, never for reporting."""
    return _load_pairs(layout.validation_pairs)


def unique_sentences(pairs: list[Pair]) -> list[str]:
    """Every sentence of the pairs once, in first-seen order (the row order of the embeddings)."""
    return list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
