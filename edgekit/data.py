"""The ``data`` stage: the validation, test and calibration sets, from files the project ships.

The labeled set is sentence pairs with graded similarity (0–5, the STS scale) written for edgekit
(see data/source/README.md); the task metric is the Spearman correlation between the model's
cosine similarity and the gold score. The pairs are split, with the seed, into a validation part
(data/validation: accuracy-aware optimizers and any tuning read it) and a test part (data/eval:
every reported metric and gate reads it, nothing is tuned on it). The parts share no sentence.
Calibration sentences are a separate, unlabeled file; none of them appears in either part.

Example:
    >>> build_data(params, Layout(Path(".")))["split"]["test"]["pairs"]
    315
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import DataError
from edgekit.fsutil import sha256_file, staged_dir, write_json, write_text
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


def _sample(params: Params, pairs_path: Path, pairs: list[Pair], rng: random.Random) -> tuple[list[Pair], float]:
    """The pairs to split and the share of them that goes to validation.

    ``data.eval_pairs`` counts test pairs (what is evaluated on); the validation part is sampled on
    top of them, at ``data.validation_share`` of the whole, so a smaller run keeps its test size.
    """
    wanted, share = params.data.eval_pairs, params.data.validation_share
    if not wanted:
        return pairs, share
    validation = round(wanted * share / (1 - share))
    if wanted + validation > len(pairs):
        largest = int(len(pairs) * (1 - share))
        raise DataError(f"data.eval_pairs = {wanted} test pairs plus {validation} for validation (data.validation_share = "
                        f"{share}) need {wanted + validation} labeled pairs; {pairs_path} has {len(pairs)}",
                        f"set data.eval_pairs to at most {largest}, or to 0 for all of them")
    sample = sorted(rng.sample(pairs, wanted + validation), key=lambda p: p.pair_id)
    return sample, validation / len(sample)


def _check_split(params: Params, pairs_path: Path, labelled: int, validation: list[Pair], test: list[Pair]) -> None:
    """Both parts must be usable, and a full evaluation must keep its size; errors say which setting to change."""
    share = params.data.validation_share
    if params.data.eval_pairs == 0 and len(test) < MIN_TEST_PAIRS:
        raise DataError(f"{pairs_path} has {labelled} pairs; with data.validation_share = {share} the test part holds {len(test)}",
                        f"a full evaluation (data.eval_pairs: 0) needs at least {MIN_TEST_PAIRS} test pairs: "
                        "add labeled pairs or lower data.validation_share")
    if min(len(validation), len(test)) < MIN_PART_PAIRS:
        raise DataError(f"data.eval_pairs = {params.data.eval_pairs}, data.validation_share = {share}: the split of {labelled} "
                        f"pairs leaves {len(validation)} for validation and {len(test)} for test",
                        f"each part needs at least {MIN_PART_PAIRS} pairs (pairs sharing a sentence stay in one part): "
                        "raise data.eval_pairs (0 = all) or move data.validation_share toward 0.5")
    if shared_sentences(validation, test):  # cannot happen by construction; never ship a leaky split
        raise DataError(f"the validation and test parts share {len(shared_sentences(validation, test))} sentences",
                        "report this as an edgekit bug")


def _pairs_text(pairs: list[Pair]) -> str:
    return "".join(json.dumps(p.__dict__, ensure_ascii=False) + "\n" for p in pairs)


def _part_record(layout: Layout, folder: Path, pairs: list[Pair]) -> dict:
    return {"folder": folder.relative_to(layout.root).as_posix(), "pairs": len(pairs),
            "sentences": len(unique_sentences(pairs)),
            "sha256": hashlib.sha256(_pairs_text(pairs).encode("utf-8")).hexdigest()}


def _split_record(params: Params, layout: Layout, labelled: list[Pair], validation: list[Pair], test: list[Pair]) -> dict:
    """What an auditor needs to redo and check the split: method, seed, sizes, digests, overlap."""
    return {"method": SPLIT_METHOD, "seed": params.seed, "validation_share": params.data.validation_share,
            "labelled_pairs": len(labelled), "sentence_groups": len(sentence_groups(labelled)),
            "validation": _part_record(layout, layout.validation_dir, validation),
            "test": _part_record(layout, layout.eval_dir, test),
            "shared_sentences": len(shared_sentences(validation, test))}


def _write_part(folder: Path, layout_file: Path, pairs: list[Pair], provenance: dict) -> None:
    with staged_dir(folder) as staged:
        write_text(staged / layout_file.name, _pairs_text(pairs))
        write_json(staged / "provenance.json", provenance)


def build_data(params: Params, layout: Layout) -> dict:
    """Write data/eval (test), data/validation and data/calibration with their provenance.

    Args:
        params: the validated params (``seed`` and ``data``).
        layout: the project's paths.

    Returns:
        The test part's provenance, whose ``split`` records both parts.

    Raises:
        DataError: a source file is missing or malformed, or the split leaves a part too small.
    """
    pairs_path, calibration_path = check_sources(params, layout.root)
    pairs = read_pairs(pairs_path)
    calibration = read_sentences(calibration_path)
    rng = random.Random(params.seed)
    pairs, share = _sample(params, pairs_path, pairs, rng)
    validation, test = split_pairs(pairs, share, rng)
    _check_split(params, pairs_path, len(pairs), validation, test)
    labelled = {sentence_key(s) for p in pairs for s in (p.sentence1, p.sentence2)}
    calibration = [s for s in calibration if sentence_key(s) not in labelled]
    calibration = rng.sample(calibration, min(params.data.calibration_size, len(calibration)))
    common = {"seed": params.seed, "license": "CC0-1.0", "authors": "edgekit contributors (see data/source/README.md)"}
    labelled_record = {
        **common,
        "source": {"file": f"{params.data.source_dir}/{PAIRS_FILE}", "sha256": sha256_file(pairs_path)},
        "task": "semantic textual similarity: Spearman correlation of cosine similarity with gold 0-5 scores",
        "sampled": len(pairs) if params.data.eval_pairs else "all",
        "split": _split_record(params, layout, pairs, validation, test),
    }
    test_provenance = {**labelled_record, "part": "test", "pairs": len(test),
                       "use": "every reported metric and gate; no optimizer or tuning step reads it"}
    _write_part(layout.validation_dir, layout.validation_pairs, validation, {
        **labelled_record, "part": "validation", "pairs": len(validation),
        "use": "accuracy-aware optimizers, calibration checks and tuning; never reported as a result"})
    _write_part(layout.eval_dir, layout.eval_pairs, test, test_provenance)
    _write_calibration(layout, calibration, {
        **common, "source": {"file": f"{params.data.source_dir}/{CALIBRATION_FILE}", "sha256": sha256_file(calibration_path)},
        "sentences": len(calibration), "excludes": "sentences that appear in the validation or test pairs"})
    _build_fairness(params, layout, common)
    return test_provenance


def _write_calibration(layout: Layout, sentences: list[str], provenance: dict) -> None:
    with staged_dir(layout.calibration_dir) as folder:
        write_text(folder / layout.calibration.name, "\n".join(sentences) + "\n")
        write_json(folder / "provenance.json", provenance)


def _build_fairness(params: Params, layout: Layout, common: dict) -> None:
    """The counterfactual pairs of the fairness check, expanded from the shipped templates and term sets."""
    from edgekit.fairness import FAIRNESS_SOURCE_DIR, read_fairness_sources, write_fairness_set

    source_dir = layout.root / params.data.source_dir
    pairs = read_fairness_sources(source_dir)
    with staged_dir(layout.fairness_dir) as folder:
        record = write_fairness_set(pairs, folder)
        write_json(folder / "provenance.json", {
            **common, "source": {"folder": f"{params.data.source_dir}/{FAIRNESS_SOURCE_DIR}",
                                 "sha256": {f.name: sha256_file(f) for f in sorted((source_dir / FAIRNESS_SOURCE_DIR).iterdir())
                                            if f.is_file()}},
            "check": "counterfactual pairs: one template, two demographic terms, and a neutral probe sentence", **record,
        })


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
