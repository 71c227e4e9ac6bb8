"""The data stage: a seeded split of the labeled pairs into validation and test parts that share no
sentence, the calibration set, their provenance, and clear errors."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import pytest

from conftest import REPO, make_project, small_params
from edgekit.datasets import MIN_PART_PAIRS, Pair, read_pairs, sentence_groups, sentence_key, split_pairs
from edgekit.errors import ConfigError, DataError
from edgekit.layout import Layout
from edgekit.params import parse_params
from edgekit.pipeline.data import run as build_data

HEADER = "pair_id\ttopic\tscore\tsentence1\tsentence2\n"


def build(folder, **overrides):
    return build_data(parse_params(small_params(**overrides)), Layout(folder))


def read_eval(folder, part: str = "eval") -> list[dict]:
    """The test pairs (``data/eval``), or with ``part="validation"`` the validation pairs."""
    lines = (folder / "data" / part / "sts_pairs.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def read_validation(folder) -> list[dict]:
    return read_eval(folder, "validation")


def sentences_of(pairs: list[dict]) -> set[str]:
    return {sentence_key(s) for p in pairs for s in (p["sentence1"], p["sentence2"])}


def read_calibration(folder) -> list[str]:
    return (folder / "data" / "calibration" / "sentences.txt").read_text(encoding="utf-8").splitlines()


def source_pair_ids() -> set[str]:
    with open(REPO / "data" / "source" / "sts_pairs.tsv", encoding="utf-8", newline="") as handle:
        return {row["pair_id"] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)}


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project", small_params())


def test_build_data_writes_a_seeded_split(project, tmp_path):
    provenance = build(project)
    test, validation = read_eval(project), read_validation(project)
    assert (len(validation), len(test)) == (13, 40)  # eval_pairs 40 test pairs, and 0.25 of the whole for validation
    assert provenance["pairs"] == 40 and provenance["part"] == "test"
    assert set(test[0]) == {"pair_id", "topic", "score", "sentence1", "sentence2"}
    ids = [p["pair_id"] for p in test + validation]
    assert len(set(ids)) == 53
    assert set(ids) <= source_pair_ids()
    assert all(0.0 <= p["score"] <= 5.0 for p in test + validation)
    assert [p["pair_id"] for p in test] == sorted(p["pair_id"] for p in test)

    again = make_project(tmp_path / "again", small_params())
    build(again)
    assert read_eval(again) == test and read_validation(again) == validation
    assert read_calibration(again) == read_calibration(project)

    other = make_project(tmp_path / "other", small_params())
    build(other, seed=small_params()["seed"] + 1)
    assert {p["pair_id"] for p in read_eval(other)} != {p["pair_id"] for p in test}


def test_provenance_records_the_source_digest_and_the_split(project):
    build(project)
    source = project / "data" / "source" / "sts_pairs.tsv"
    provenance = json.loads((project / "data" / "eval" / "provenance.json").read_text())
    assert provenance["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert provenance["source"]["file"] == "data/source/sts_pairs.tsv"
    assert provenance["seed"] == small_params()["seed"]
    assert provenance["pairs"] == 40
    split = provenance["split"]
    assert split["seed"] == small_params()["seed"] and split["validation_share"] == 0.25
    assert split["labelled_pairs"] == 53 and split["shared_sentences"] == 0 and "validation_share" in split["method"]
    for part, folder in (("test", "eval"), ("validation", "validation")):
        written = project / "data" / folder / "sts_pairs.jsonl"
        assert split[part]["folder"] == f"data/{folder}"
        assert split[part]["sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
        assert split[part]["pairs"] == len(read_eval(project, folder))
    validation = json.loads((project / "data" / "validation" / "provenance.json").read_text())
    assert validation["part"] == "validation" and validation["pairs"] == 13 and validation["split"] == split
    calibration = json.loads((project / "data" / "calibration" / "provenance.json").read_text())
    cal_source = project / "data" / "source" / "calibration_sentences.txt"
    assert calibration["source"]["sha256"] == hashlib.sha256(cal_source.read_bytes()).hexdigest()
    assert calibration["sentences"] == 16


def test_calibration_sentences_are_in_neither_part(project):
    build(project)
    calibration = read_calibration(project)
    assert len(calibration) == 16
    assert len(set(calibration)) == 16
    assert all(s.strip() for s in calibration)
    labelled = sentences_of(read_eval(project)) | sentences_of(read_validation(project))
    assert not {sentence_key(s) for s in calibration} & labelled


def test_eval_pairs_zero_splits_all_pairs_into_disjoint_parts(tmp_path):
    params = small_params()
    params["data"]["eval_pairs"] = 0
    folder = make_project(tmp_path, params)
    provenance = build_data(parse_params(params), Layout(folder))
    test, validation = read_eval(folder), read_validation(folder)
    assert (len(validation), len(test)) == (105, 315)
    assert provenance["sampled"] == "all"
    assert {p["pair_id"] for p in test} | {p["pair_id"] for p in validation} == source_pair_ids()
    assert not sentences_of(test) & sentences_of(validation)
    assert not {sentence_key(s) for s in read_calibration(folder)} & (sentences_of(test) | sentences_of(validation))
    # stratified by score: each part spans the scale in about the same shares
    for low in range(5):
        assert abs(band_share(validation, low) - band_share(test, low)) < 0.03, low


def band_share(pairs: list[dict], low: int) -> float:
    """The share of ``pairs`` scored in [low, low + 1), 5.0 counting in the top band."""
    return sum(low <= p["score"] < low + 1 or (low == 4 and p["score"] == 5.0) for p in pairs) / len(pairs)


def chained_source() -> str:
    """60 pairs in chains of three that share sentences (one spelled with other case and spacing)."""
    lines = []
    for chain in range(20):
        a, b, c = (f"Sentence {chain} number {i} is here." for i in range(3))
        lines += [f"c{chain}a\tx\t{chain % 5 + 0.5}\t{a}\t{b}", f"c{chain}b\tx\t{chain % 5}\t{b}\t{c}",
                  f"c{chain}c\tx\t{chain % 5 + 0.2}\t{'  ' + c.upper()}\tOther {chain}."]
    return HEADER + "\n".join(lines) + "\n"


def test_pairs_that_share_a_sentence_stay_in_one_part(project):
    write_pairs(project, chained_source())
    params = small_params()
    params["data"]["eval_pairs"] = 45  # and 15 for validation: all 60
    build_data(parse_params(params), Layout(project))
    test, validation = read_eval(project), read_validation(project)
    assert len(test) + len(validation) == 60 and len(validation) >= MIN_PART_PAIRS
    assert not sentences_of(test) & sentences_of(validation)
    for part in (test, validation):
        chains = {p["pair_id"][:-1] for p in part}
        assert len(part) == 3 * len(chains)  # whole chains only


def test_sentence_groups_join_transitively_and_ignore_case_and_spacing():
    pairs = [Pair("a", "t", 1.0, "One.", "Two."), Pair("b", "t", 1.0, "two.", "Three."), Pair("c", "t", 1.0, "Four.", "Five."),
             Pair("d", "t", 1.0, "Six  here.", "Seven."), Pair("e", "t", 1.0, "six here.", "Three.")]
    groups = [[p.pair_id for p in group] for group in sentence_groups(pairs)]
    assert sorted(groups) == [["a", "b", "d", "e"], ["c"]]


def test_split_sizes_follow_the_share_and_the_seed():
    import random

    pairs = [Pair(f"p{i:03d}", "t", (i % 51) / 10, f"Left {i}.", f"Right {i}.") for i in range(200)]
    validation, test = split_pairs(pairs, 0.3, random.Random(1))
    assert len(validation) == 60 and len(test) == 140
    assert split_pairs(pairs, 0.3, random.Random(1)) == (validation, test)
    assert split_pairs(pairs, 0.3, random.Random(2))[0] != validation


def test_a_split_that_leaves_a_part_too_small_names_the_settings(project):
    params = small_params()
    params["data"]["eval_pairs"] = 12
    with pytest.raises(DataError, match=r"data\.eval_pairs = 12, data\.validation_share = 0\.25: the split of 16 pairs leaves 4 "
                                        r"for validation and 12 for test.*at least 5 pairs.*raise data\.eval_pairs"):
        build_data(parse_params(params), Layout(project))
    assert not (project / "data" / "eval").exists() and not (project / "data" / "validation").exists()


def test_more_test_pairs_than_the_source_allows_names_the_largest(project):
    params = small_params()
    params["data"]["eval_pairs"] = 400
    with pytest.raises(DataError, match=r"data\.eval_pairs = 400 test pairs plus 133 for validation .* need 533 labeled pairs; "
                                        r".*sts_pairs\.tsv has 420.*at most 315, or to 0"):
        build_data(parse_params(params), Layout(project))


def test_a_full_evaluation_keeps_300_test_pairs(project):
    params = small_params()
    params["data"].update(eval_pairs=0, validation_share=0.5)
    with pytest.raises(DataError, match=r"has 420 pairs; with data\.validation_share = 0\.5 the test part holds 210.*at least 300"):
        build_data(parse_params(params), Layout(project))


@pytest.mark.parametrize(("share", "pattern"), [(0, "greater than 0"), (0.6, "at most 0.5"), (-0.1, "greater than 0"),
                                                ("0.25", "int or float"), (True, "int or float"), (float("nan"), "greater than 0")])
def test_validation_share_is_checked_with_the_params(share, pattern):
    params = small_params()
    params["data"]["validation_share"] = share
    with pytest.raises(ConfigError, match=rf"data\.validation_share = .* is not valid.*{pattern}") as caught:
        parse_params(params)
    assert caught.value.field == "data.validation_share"


def write_pairs(project, text: str):
    path = project / "data" / "source" / "sts_pairs.tsv"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "p1\tcooking\t2.5\tA cat sat.\tA dog sat.\np2\tsport\t4\tHe runs.\tHe jogs.\n"


@pytest.mark.parametrize(
    ("text", "line", "pattern"),
    [
        (HEADER + GOOD + "p3\tsport\thigh\tA.\tB.\n", 4, r"score = 'high'.*a number from 0 to 5"),
        (HEADER + GOOD + "p3\tsport\t5.5\tA.\tB.\n", 4, r"score = '5\.5'"),
        (HEADER.replace("score", "label") + GOOD, 1, r"header is .*'label'.*expected the tab-separated columns"),
        (HEADER + GOOD + "p1\tsport\t1\tC.\tD.\n", 4, r"pair_id 'p1' appears twice"),
        (HEADER + "p1\tcooking\t2.5\tOnly one sentence.\n" + GOOD, 2, r"expected 5 non-empty fields"),
        (HEADER + "p1\tcooking\t2.5\t\tA dog sat.\n", 2, r"expected 5 non-empty fields"),
    ],
    ids=["bad-score", "score-out-of-range", "wrong-header", "duplicate-id", "missing-column", "empty-field"],
)
def test_malformed_pairs_name_file_and_line(project, text, line, pattern):
    path = write_pairs(project, text)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:{line}: {pattern}"):
        build(project)
    assert not (project / "data" / "eval").exists()
    assert not (project / "data" / "validation").exists()
    assert not (project / "data" / "calibration").exists()


def test_read_pairs_accepts_a_well_formed_file(project):
    pairs = read_pairs(write_pairs(project, HEADER + GOOD))
    assert [(p.pair_id, p.score, p.sentence2) for p in pairs] == [("p1", 2.5, "A dog sat."), ("p2", 4.0, "He jogs.")]


def test_too_few_pairs_for_a_full_evaluation(project):
    params = small_params()
    params["data"]["eval_pairs"] = 0
    path = write_pairs(project, HEADER + GOOD)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))} has 2 pairs; .*the test part holds [12]\b.*at least 300"):
        build_data(parse_params(params), Layout(project))


@pytest.mark.parametrize("name", ["sts_pairs.tsv", "calibration_sentences.txt"])
def test_missing_source_file_fails_before_writing_anything(project, name):
    (project / "data" / "source" / name).unlink()
    with pytest.raises(DataError, match=rf"data\.source_dir: .*{re.escape(name)} does not exist.*git checkout -- data/source"):
        build(project)
    assert not (project / "data" / "eval").exists()
    assert not (project / "data" / "calibration").exists()


def test_a_failed_rebuild_keeps_the_previous_sets(project):
    build(project)
    before = read_eval(project), read_validation(project)
    write_pairs(project, HEADER + "p1\tx\thigh\tA.\tB.\n")
    with pytest.raises(DataError):
        build(project)
    assert (read_eval(project), read_validation(project)) == before


def test_shipped_pairs_are_enough_and_spread_over_the_scale():
    pairs = read_pairs(REPO / "data" / "source" / "sts_pairs.tsv")
    assert len(pairs) >= 300
    scores = [p.score for p in pairs]
    assert min(scores) <= 0.5
    assert max(scores) >= 4.5
    for low in range(5):  # every unit band of 0-5 holds a fair share of the pairs
        band = [s for s in scores if low <= s < low + 1 or (low == 4 and s == 5.0)]
        assert len(band) >= len(pairs) // 20, f"only {len(band)} pairs score in [{low}, {low + 1})"
