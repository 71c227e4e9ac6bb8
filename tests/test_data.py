"""The data stage: seeded evaluation and calibration sets from the shipped sources, and clear errors."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import pytest

from conftest import REPO, make_project, small_params
from edgekit.data import build_data, read_pairs
from edgekit.errors import DataError
from edgekit.layout import Layout
from edgekit.params import parse_params

HEADER = "pair_id\ttopic\tscore\tsentence1\tsentence2\n"


def build(folder, **overrides):
    return build_data(parse_params(small_params(**overrides)), Layout(folder))


def read_eval(folder) -> list[dict]:
    lines = (folder / "data" / "eval" / "sts_pairs.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def read_calibration(folder) -> list[str]:
    return (folder / "data" / "calibration" / "sentences.txt").read_text(encoding="utf-8").splitlines()


def source_pair_ids() -> set[str]:
    with open(REPO / "data" / "source" / "sts_pairs.tsv", encoding="utf-8", newline="") as handle:
        return {row["pair_id"] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)}


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project", small_params())


def test_build_data_writes_a_seeded_sample(project, tmp_path):
    provenance = build(project)
    pairs = read_eval(project)
    assert len(pairs) == 40
    assert provenance["pairs"] == 40
    assert set(pairs[0]) == {"pair_id", "topic", "score", "sentence1", "sentence2"}
    ids = [p["pair_id"] for p in pairs]
    assert len(set(ids)) == 40
    assert set(ids) <= source_pair_ids()
    assert all(0.0 <= p["score"] <= 5.0 for p in pairs)

    again = make_project(tmp_path / "again", small_params())
    build(again)
    assert read_eval(again) == pairs
    assert read_calibration(again) == read_calibration(project)

    other = make_project(tmp_path / "other", small_params())
    build(other, seed=small_params()["seed"] + 1)
    assert {p["pair_id"] for p in read_eval(other)} != set(ids)


def test_provenance_records_the_source_digest(project):
    build(project)
    source = project / "data" / "source" / "sts_pairs.tsv"
    provenance = json.loads((project / "data" / "eval" / "provenance.json").read_text())
    assert provenance["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert provenance["source"]["file"] == "data/source/sts_pairs.tsv"
    assert provenance["seed"] == small_params()["seed"]
    assert provenance["pairs"] == 40
    calibration = json.loads((project / "data" / "calibration" / "provenance.json").read_text())
    cal_source = project / "data" / "source" / "calibration_sentences.txt"
    assert calibration["source"]["sha256"] == hashlib.sha256(cal_source.read_bytes()).hexdigest()
    assert calibration["sentences"] == 16


def test_calibration_sentences_are_not_in_the_eval_set(project):
    build(project)
    calibration = read_calibration(project)
    assert len(calibration) == 16
    assert len(set(calibration)) == 16
    assert all(s.strip() for s in calibration)
    eval_sentences = {s for p in read_eval(project) for s in (p["sentence1"], p["sentence2"])}
    assert not set(calibration) & eval_sentences


def test_eval_pairs_zero_keeps_all_pairs(tmp_path):
    params = small_params()
    params["data"]["eval_pairs"] = 0
    folder = make_project(tmp_path, params)
    provenance = build_data(parse_params(params), Layout(folder))
    pairs = read_eval(folder)
    assert len(pairs) == 420
    assert provenance["sampled"] == "all"
    assert {p["pair_id"] for p in pairs} == source_pair_ids()
    eval_sentences = {s for p in pairs for s in (p["sentence1"], p["sentence2"])}
    assert not set(read_calibration(folder)) & eval_sentences


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
    assert not (project / "data" / "calibration").exists()


def test_read_pairs_accepts_a_well_formed_file(project):
    pairs = read_pairs(write_pairs(project, HEADER + GOOD))
    assert [(p.pair_id, p.score, p.sentence2) for p in pairs] == [("p1", 2.5, "A dog sat."), ("p2", 4.0, "He jogs.")]


def test_too_few_pairs_for_a_full_evaluation(project):
    params = small_params()
    params["data"]["eval_pairs"] = 0
    path = write_pairs(project, HEADER + GOOD)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))} has 2 pairs.*at least 300"):
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
    before = read_eval(project)
    write_pairs(project, HEADER + "p1\tx\thigh\tA.\tB.\n")
    with pytest.raises(DataError):
        build(project)
    assert read_eval(project) == before


def test_shipped_pairs_are_enough_and_spread_over_the_scale():
    pairs = read_pairs(REPO / "data" / "source" / "sts_pairs.tsv")
    assert len(pairs) >= 300
    scores = [p.score for p in pairs]
    assert min(scores) <= 0.5
    assert max(scores) >= 4.5
    for low in range(5):  # every unit band of 0-5 holds a fair share of the pairs
        band = [s for s in scores if low <= s < low + 1 or (low == 4 and s == 5.0)]
        assert len(band) >= len(pairs) // 20, f"only {len(band)} pairs score in [{low}, {low + 1})"
