"""The ``data`` stage: the evaluation and calibration sets, from files the project ships.

The labeled set is sentence pairs with graded similarity (0–5, the STS scale) written for edgekit
(see data/source/README.md); the task metric is the Spearman correlation between the model's
cosine similarity and the gold score. Calibration sentences are a separate, unlabeled file.

Example:
    >>> build_data(params, Layout(Path(".")))
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import DataError
from edgekit.fsutil import sha256_file, staged_dir, write_json
from edgekit.layout import Layout
from edgekit.params import Params

PAIRS_FILE = "sts_pairs.tsv"
CALIBRATION_FILE = "calibration_sentences.txt"
PAIR_COLUMNS = ["pair_id", "topic", "score", "sentence1", "sentence2"]
MIN_EVAL_PAIRS = 300


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


def build_data(params: Params, layout: Layout) -> dict:
    """Write data/eval and data/calibration with their provenance; return the eval provenance."""
    pairs_path, calibration_path = check_sources(params, layout.root)
    pairs = read_pairs(pairs_path)
    calibration = read_sentences(calibration_path)
    if len(pairs) < MIN_EVAL_PAIRS and params.data.eval_pairs == 0:
        raise DataError(f"{pairs_path} has {len(pairs)} pairs", f"the evaluation needs at least {MIN_EVAL_PAIRS}")
    rng = random.Random(params.seed)
    if params.data.eval_pairs:
        pairs = sorted(rng.sample(pairs, min(params.data.eval_pairs, len(pairs))), key=lambda p: p.pair_id)
    overlap = {p.sentence1 for p in pairs} | {p.sentence2 for p in pairs}
    calibration = [s for s in calibration if s not in overlap]
    calibration = rng.sample(calibration, min(params.data.calibration_size, len(calibration)))
    common = {"seed": params.seed, "license": "CC0-1.0", "authors": "edgekit contributors (see data/source/README.md)"}
    eval_provenance = {
        **common,
        "source": {"file": f"{params.data.source_dir}/{PAIRS_FILE}", "sha256": sha256_file(pairs_path)},
        "task": "semantic textual similarity: Spearman correlation of cosine similarity with gold 0-5 scores",
        "pairs": len(pairs),
        "sampled": params.data.eval_pairs or "all",
    }
    with staged_dir(layout.eval_dir) as folder:
        lines = [json.dumps(p.__dict__, ensure_ascii=False) for p in pairs]
        (folder / layout.eval_pairs.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        write_json(folder / "provenance.json", eval_provenance)
    with staged_dir(layout.calibration_dir) as folder:
        (folder / layout.calibration.name).write_text("\n".join(calibration) + "\n", encoding="utf-8")
        write_json(folder / "provenance.json", {
            **common,
            "source": {"file": f"{params.data.source_dir}/{CALIBRATION_FILE}", "sha256": sha256_file(calibration_path)},
            "sentences": len(calibration),
            "excludes": "sentences that appear in the evaluation set",
        })
    _build_fairness(params, layout, common)
    return eval_provenance


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


def load_eval_pairs(layout: Layout) -> list[Pair]:
    """The evaluation pairs written by the ``data`` stage."""
    from edgekit.errors import StageInputError

    if not layout.eval_pairs.is_file():
        raise StageInputError(f"{layout.eval_pairs} does not exist", "run `dvc repro data`")
    lines = layout.eval_pairs.read_text(encoding="utf-8").splitlines()
    return [Pair(**json.loads(line)) for line in lines if line.strip()]


def unique_sentences(pairs: list[Pair]) -> list[str]:
    """Every sentence of the pairs once, in first-seen order (the row order of the embeddings)."""
    return list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
