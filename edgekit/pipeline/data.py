"""The ``data`` stage: the validation, test and calibration sets, from files the project ships.

The labeled pairs are split, with the seed, into a validation part (data/validation: accuracy-aware
optimizers and any tuning read it) and a test part (data/eval: every reported metric and gate reads
it, nothing is tuned on it). The parts share no sentence. Calibration sentences are a separate,
unlabeled file; none of them appears in either part.

Example:
    >>> run(params, Layout(Path(".")))["split"]["test"]["pairs"]
    315
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from edgekit.datasets import (
    CALIBRATION_FILE,
    MIN_PART_PAIRS,
    MIN_TEST_PAIRS,
    PAIRS_FILE,
    SPLIT_METHOD,
    Pair,
    check_sources,
    read_pairs,
    read_sentences,
    sentence_groups,
    sentence_key,
    shared_sentences,
    split_pairs,
    unique_sentences,
)
from edgekit.errors import DataError
from edgekit.fsutil import sha256_file, staged_dir, write_json, write_text
from edgekit.layout import Layout
from edgekit.params import Params


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


def run(params: Params, layout: Layout) -> dict:
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
    from edgekit.tasks.embedding.fairness import FAIRNESS_SOURCE_DIR, read_fairness_sources, write_fairness_set

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
