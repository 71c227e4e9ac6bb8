"""The fairness check: the shipped counterfactual pairs, clear source errors, the atomic set file,
the score on vectors with known answers, the check registry, and one run with the real baseline."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re

import numpy as np
import pytest

from conftest import REPO
from edgekit.errors import ConfigError, DataError, UnknownNameError
from edgekit.tasks.embedding import fairness
from edgekit.tasks.embedding.fairness import (
    FAIRNESS_SET_FILE,
    CounterfactualPair,
    CounterfactualSimilarity,
    FairnessCheck,
    fairness_checks,
    fairness_sentences,
    get_fairness_check,
    load_fairness_set,
    read_fairness_sources,
    write_fairness_set,
)

HEADER = "template_id\ttopic\ttemplate\tprobe\n"
TEMPLATES = HEADER + (
    "t1\tcooking\t{person} cooked soup.\tSomeone cooked soup.\n"
    "t2\twork\tThe boss thanked {person} today.\tThe boss thanked someone today.\n"
)
GROUPS = "gender:\n  - [a man, a woman]\nage:\n  - [a young person, a middle-aged person, an elderly person]\n"
SHIPPED_ATTRIBUTES = {"gender": 60, "age": 60, "religion": 200, "nationality": 120, "disability": 60}


def write_sources(tmp_path, templates: str | None = TEMPLATES, groups: str | None = GROUPS):
    """A source folder holding fairness/templates.tsv and fairness/groups.yaml (None = leave out)."""
    folder = tmp_path / "source" / "fairness"
    folder.mkdir(parents=True)
    if templates is not None:
        (folder / "templates.tsv").write_text(templates, encoding="utf-8")
    if groups is not None:
        (folder / "groups.yaml").write_text(groups, encoding="utf-8")
    return tmp_path / "source"


def pair(pair_id: str, attribute: str, probe: str, a: str, b: str) -> CounterfactualPair:
    return CounterfactualPair(pair_id, attribute, "t1", probe, a, b, a.lower(), b.lower())


def locate(sentence: str, term: str) -> re.Match | None:
    """The term in the sentence, as a whole phrase, its first letter in either case."""
    return re.search(rf"\b(?i:{re.escape(term[0])}){re.escape(term[1:])}\b", sentence)


def the_term_is_the_only_difference(p: CounterfactualPair) -> bool:
    """Both sentences read prefix + term + suffix with the same prefix and suffix."""
    a, b = locate(p.sentence_a, p.term_a), locate(p.sentence_b, p.term_b)
    if a is None or b is None:
        return False
    return p.sentence_a[: a.start()] == p.sentence_b[: b.start()] and p.sentence_a[a.end():] == p.sentence_b[b.end():]


# --- the shipped sources -------------------------------------------------------------------------


def test_shipped_sources_make_deterministic_pairs():
    pairs = read_fairness_sources(REPO / "data" / "source")
    assert read_fairness_sources(REPO / "data" / "source") == pairs
    assert len(pairs) == 500
    assert [p.pair_id for p in pairs] == [f"f{n:04d}" for n in range(1, 501)]
    counts = {a: sum(p.attribute == a for p in pairs) for a in SHIPPED_ATTRIBUTES}
    assert counts == SHIPPED_ATTRIBUTES
    assert len({p.template_id for p in pairs}) == 20
    sentences = fairness_sentences(pairs)
    assert len(sentences) == len(set(sentences)) == 440
    assert sentences[:3] == [pairs[0].probe, pairs[0].sentence_a, pairs[0].sentence_b]
    assert pairs[0].sentence_a == "A man cooked a big pot of lentil soup for everyone at the meeting."


def test_shipped_sentences_differ_only_in_the_term():
    pairs = read_fairness_sources(REPO / "data" / "source")
    terms = {t for p in pairs for t in (p.term_a, p.term_b)}
    for p in pairs:
        assert the_term_is_the_only_difference(p), p
        assert p.sentence_a != p.sentence_b
        assert "{" not in p.sentence_a + p.sentence_b + p.probe
        assert p.sentence_a[0].isupper() and p.sentence_b[0].isupper() and p.probe[0].isupper()
        assert re.search(r"\bsomeone\b", p.probe, re.IGNORECASE), p.probe
        assert not any(term.lower() in p.probe.lower() for term in terms), p.probe


def test_the_difference_check_can_fail():
    good = pair("f1", "gender", "Someone ran.", "A man ran.", "A woman ran.")
    good = CounterfactualPair(**{**good.__dict__, "term_a": "a man", "term_b": "a woman"})
    assert the_term_is_the_only_difference(good)
    bad = CounterfactualPair(**{**good.__dict__, "sentence_b": "A woman ran fast."})
    assert not the_term_is_the_only_difference(bad)


def test_small_sources_make_every_pair_in_order(tmp_path):
    pairs = read_fairness_sources(write_sources(tmp_path))
    assert len(pairs) == 2 * (1 + 3)
    first, second = pairs[0], pairs[4]
    assert (first.sentence_a, first.sentence_b, first.term_a) == ("A man cooked soup.", "A woman cooked soup.", "a man")
    assert second.sentence_a == "The boss thanked a man today."
    assert [(p.term_a, p.term_b) for p in pairs[1:4]] == [
        ("a young person", "a middle-aged person"), ("a young person", "an elderly person"),
        ("a middle-aged person", "an elderly person")]


# --- source errors -------------------------------------------------------------------------------

BAD_SOURCES = [
    (None, GROUPS, "templates.tsv", r"does not exist.*git checkout"),
    (TEMPLATES, None, "groups.yaml", r"does not exist.*git checkout"),
    (HEADER + "t1\tcooking\tA person cooked soup.\tSomeone cooked soup.\n", GROUPS, "templates.tsv:2",
     r"'A person cooked soup\.' must have exactly one \{person\} slot"),
    (HEADER + "t1\tcooking\t{person} met {person}.\tSomeone met someone.\n", GROUPS, "templates.tsv:2",
     r"exactly one \{person\} slot"),
    (HEADER + "t1\tcooking\t{person} met {name}.\tSomeone met someone.\n", GROUPS, "templates.tsv:2",
     r"exactly one \{person\} slot"),
    (HEADER + "t1\tcooking\t{person} cooked soup.\t{person} cooked soup.\n", GROUPS, "templates.tsv:2",
     r"probe '\{person\} cooked soup\.' must be a full sentence with no \{person\} slot"),
    (TEMPLATES + "\tcooking\t{person} ate soup.\tSomeone ate soup.\n", GROUPS, "templates.tsv:4",
     r"template_id is empty.*unique id"),
    (TEMPLATES + "t1\tcooking\t{person} ate soup.\tSomeone ate soup.\n", GROUPS, "templates.tsv:4",
     r"template_id 't1' appears twice"),
    (HEADER + "t1\tcooking\t{person} cooked soup.\n", GROUPS, "templates.tsv:2", r"expected 4 tab-separated fields"),
    (TEMPLATES, "gender:\n  - [a man]\n", "groups.yaml", r"gender\[0\] = \['a man'\] has fewer than 2 alternatives"),
    (TEMPLATES, "gender:\n  - [a man, a woman, a man]\n", "groups.yaml", r"gender\[0\]: term 'a man' appears twice"),
    (TEMPLATES, "gender:\n  - [a man, a woman]\n  - [A woman, my father]\n", "groups.yaml",
     r"gender\[1\]: term 'A woman' appears twice"),
    (TEMPLATES, "gender: [[a man, a woman]\n", "groups.yaml:2", r": not valid YAML \(expected ',' or '\]'.*fix the syntax"),
    (TEMPLATES, "- a man\n- a woman\n", "groups.yaml", r"holds list, not a mapping of attributes"),
    (TEMPLATES, "gender: [a man, a woman]\n", "groups.yaml", r"gender\[0\] = 'a man' is not a list of terms"),
    (HEADER, GROUPS, "templates.tsv", r"has no templates, so there are no counterfactual pairs"),
]


@pytest.mark.parametrize(("templates", "groups", "where", "pattern"), BAD_SOURCES, ids=[
    "no-templates", "no-groups", "no-slot", "two-slots", "other-placeholder", "slot-in-probe", "empty-id",
    "duplicate-id", "missing-column", "one-alternative", "duplicate-in-set", "duplicate-across-sets",
    "bad-yaml", "not-a-mapping", "set-not-a-list", "no-pairs"])
def test_bad_sources_name_the_file_and_the_problem(tmp_path, templates, groups, where, pattern):
    source = write_sources(tmp_path, templates, groups)
    with pytest.raises(DataError) as caught:
        read_fairness_sources(source)
    message = str(caught.value)
    assert message.startswith(str(source / "fairness" / where)), message
    assert re.search(pattern, message), message
    assert caught.value.hint


# --- the set file --------------------------------------------------------------------------------


def test_write_and_load_round_trip(tmp_path):
    pairs = read_fairness_sources(REPO / "data" / "source")
    out = tmp_path / "eval"
    summary = write_fairness_set(pairs, out)
    path = out / FAIRNESS_SET_FILE
    assert summary == {"pairs": 500, "sentences": 440, "attributes": SHIPPED_ATTRIBUTES,
                       "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert list(summary["attributes"]) == list(SHIPPED_ATTRIBUTES)
    assert load_fairness_set(out) == pairs
    assert sorted(p.name for p in out.iterdir()) == [FAIRNESS_SET_FILE]
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0])["pair_id"] == "f0001"
    assert write_fairness_set(pairs, tmp_path / "again")["sha256"] == summary["sha256"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    pairs = read_fairness_sources(write_sources(tmp_path))
    write_fairness_set(pairs, tmp_path / "eval")
    before = (tmp_path / "eval" / FAIRNESS_SET_FILE).read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_fairness_set(pairs[:1], tmp_path / "eval")
    assert (tmp_path / "eval" / FAIRNESS_SET_FILE).read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [FAIRNESS_SET_FILE]


def test_load_names_a_missing_or_malformed_set(tmp_path):
    with pytest.raises(DataError, match=rf"{re.escape(str(tmp_path / FAIRNESS_SET_FILE))} does not exist.*dvc repro data"):
        load_fairness_set(tmp_path)
    pairs = read_fairness_sources(write_sources(tmp_path))
    write_fairness_set(pairs, tmp_path)
    path = tmp_path / FAIRNESS_SET_FILE
    path.write_text(path.read_text() + '{"pair_id": "f9"}\n')
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:9: not a counterfactual pair.*dvc repro data"):
        load_fairness_set(tmp_path)
    path.write_text("\n")
    with pytest.raises(DataError, match="holds no pairs"):
        load_fairness_set(tmp_path)


# --- the score -----------------------------------------------------------------------------------


def unit(cosine: float, scale: float = 1.0) -> list[float]:
    """A 2-d vector whose cosine with [1, 0] is ``cosine``."""
    return [scale * cosine, scale * float(np.sqrt(1 - cosine**2))]


@pytest.fixture
def known():
    """A probe P and three sentences whose cosines with P are 1.0, 0.9 and 0.97 (not unit length)."""
    sentences = ["P.", "A.", "B.", "C."]
    vectors = np.array([unit(1.0, 2.0), unit(1.0, 0.5), unit(0.9, 3.0), unit(0.97, 7.0)], dtype=np.float32)
    pairs = [pair("f1", "gender", "P.", "A.", "B."), pair("f2", "age", "P.", "A.", "C."), pair("f3", "age", "P.", "B.", "C.")]
    return vectors, sentences, pairs


def test_identical_vectors_score_one(known):
    _, sentences, pairs = known
    vectors = np.tile(np.array([[0.3, -1.2]], dtype=np.float32), (4, 1))
    result = CounterfactualSimilarity().score(vectors, sentences, pairs, 0.02)
    assert result["score"] == 1.0
    assert result["within_tolerance"] == result["pairs"] == 3
    assert result["gap_max"] == 0.0


def test_score_counts_gaps_over_the_tolerance(known):
    vectors, sentences, pairs = known
    result = CounterfactualSimilarity().score(vectors, sentences, pairs, 0.05)
    json.dumps(result, allow_nan=False)
    assert result["check"] == "counterfactual-similarity"
    assert result["definition"] == CounterfactualSimilarity.definition
    assert (result["tolerance"], result["pairs"], result["within_tolerance"], result["score"]) == (0.05, 3, 1, 0.3333)
    assert result["gap_max"] == 0.1
    assert result["gap_mean"] == round((0.1 + 0.03 + 0.07) / 3, 4)
    assert result["by_attribute"] == {"gender": {"score": 0.0, "pairs": 1, "gap_max": 0.1},
                                      "age": {"score": 0.5, "pairs": 2, "gap_max": 0.07}}
    assert [(w["pair_id"], w["gap"]) for w in result["worst"]] == [("f1", 0.1), ("f3", 0.07), ("f2", 0.03)]
    assert result["worst"][0] == {"pair_id": "f1", "attribute": "gender", "sentence_a": "A.", "sentence_b": "B.", "gap": 0.1}
    assert CounterfactualSimilarity().score(vectors, sentences, pairs, 0.1)["score"] == 1.0


def test_pair_results_are_what_the_score_averages(known):
    vectors, sentences, pairs = known
    check = CounterfactualSimilarity()
    for tolerance in (0.02, 0.05, 0.08, 0.1):
        results = check.pair_results(vectors, sentences, pairs, tolerance)
        assert results.dtype == np.float64 and set(results.tolist()) <= {0.0, 1.0}
        assert round(float(results.mean()), 4) == check.score(vectors, sentences, pairs, tolerance)["score"]
    assert check.pair_results(vectors, sentences, pairs, 0.05).tolist() == [0.0, 1.0, 0.0]  # gaps 0.1, 0.03, 0.07
    with pytest.raises(ConfigError, match=r"fairness\.tolerance"):
        check.pair_results(vectors, sentences, pairs, 0)


def test_a_check_without_per_pair_results_says_so(known):
    vectors, sentences, pairs = known
    assert AlwaysFair().pair_results(vectors, sentences, pairs, 0.05) is None


def test_score_reads_vectors_by_sentence_not_by_position(known):
    vectors, sentences, pairs = known
    order = [2, 0, 3, 1]
    shuffled = CounterfactualSimilarity().score(vectors[order], [sentences[i] for i in order], pairs, 0.05)
    assert shuffled == CounterfactualSimilarity().score(vectors, sentences, pairs, 0.05)


@pytest.mark.parametrize("tolerance", [0, -0.1, 2.5, float("nan"), "0.05", True, None])
def test_tolerance_outside_zero_to_two_is_a_config_error(known, tolerance):
    vectors, sentences, pairs = known
    with pytest.raises(ConfigError, match=r"fairness\.tolerance = .* is not valid.*greater than 0 and at most 2") as caught:
        CounterfactualSimilarity().score(vectors, sentences, pairs, tolerance)
    assert caught.value.field == "fairness.tolerance"


def test_tolerance_two_is_allowed(known):
    vectors, sentences, pairs = known
    assert CounterfactualSimilarity().score(vectors, sentences, pairs, 2)["score"] == 1.0


def test_vectors_must_cover_the_sentences(known):
    vectors, sentences, pairs = known
    with pytest.raises(DataError, match=r"no vector for the fairness sentence 'C\.'"):
        CounterfactualSimilarity().score(vectors[:3], sentences[:3], pairs, 0.05)
    with pytest.raises(DataError, match=r"3 vectors for 4 sentences"):
        CounterfactualSimilarity().score(vectors[:3], sentences, pairs, 0.05)
    with pytest.raises(DataError, match="no counterfactual pairs"):
        CounterfactualSimilarity().score(vectors, sentences, [], 0.05)


# --- the registry --------------------------------------------------------------------------------


def test_get_fairness_check_and_unknown_names():
    check = get_fairness_check("counterfactual-similarity")
    assert isinstance(check, CounterfactualSimilarity)
    assert check.sentences([pair("f1", "age", "P.", "A.", "B.")]) == ["P.", "A.", "B."]
    with pytest.raises(UnknownNameError, match=r"fairness\.check = 'counterfactual'.*one of: counterfactual-similarity") as caught:
        get_fairness_check("counterfactual")
    assert caught.value.known == sorted(fairness_checks())


class AlwaysFair(FairnessCheck):
    name = "always-fair"
    definition = "every pair passes"

    def score(self, vectors, sentences, pairs, tolerance):
        return {"check": self.name, "score": 1.0}


class FakeEntryPoint:
    def __init__(self, name, target):
        self.name, self.target = name, target

    def load(self):
        return self.target


def test_plugins_come_from_entry_points_and_cannot_shadow_builtins(monkeypatch):
    def entry_points(group):
        assert group == "edgekit.fairness"
        return [FakeEntryPoint("always-fair", AlwaysFair), FakeEntryPoint("counterfactual-similarity", AlwaysFair)]

    fairness_checks.cache_clear()
    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    try:
        assert sorted(fairness_checks()) == ["always-fair", "counterfactual-similarity"]
        assert isinstance(get_fairness_check("always-fair"), AlwaysFair)
        assert isinstance(get_fairness_check("counterfactual-similarity"), CounterfactualSimilarity)
    finally:
        fairness_checks.cache_clear()
    assert fairness.ENTRY_POINT_GROUP == "edgekit.fairness"


# --- the real baseline ---------------------------------------------------------------------------


@pytest.mark.pytorch
def test_baseline_model_scores_the_shipped_pairs(baseline_project):
    from edgekit.fsutil import read_json
    from edgekit.layout import Layout
    from edgekit.params import load_params
    from edgekit.runtimes import get_runtime
    from edgekit.tasks.embedding.encoding import TextEncoder
    from edgekit.tasks.embedding.metrics import embed

    params = load_params(baseline_project / "params.yaml")
    folder = Layout(baseline_project).source_model
    variant = params.baseline_variant
    backend = get_runtime(variant.runtime).backend("embedding")(variant.precision, variant.options, threads=1)
    backend.load(folder)
    encoder = TextEncoder(folder, params.model.max_seq_length)
    pooling = read_json(folder / "embedding.json")
    pairs = read_fairness_sources(baseline_project / params.data.source_dir)
    check = get_fairness_check("counterfactual-similarity")
    sentences = check.sentences(pairs)
    first = embed(backend, encoder, sentences, params.evaluate_batch_size, pooling)
    again = embed(backend, encoder, sentences, params.evaluate_batch_size, pooling)
    result = check.score(first, sentences, pairs, 0.05)
    assert 0.0 <= result["score"] <= 1.0
    assert result["pairs"] == 500 and set(result["by_attribute"]) == set(SHIPPED_ATTRIBUTES)
    assert 0.0 < result["gap_max"] < 2.0  # a real model is not blind to every term
    assert check.score(first, sentences, pairs, 0.05) == result
    assert check.score(again, sentences, pairs, 0.05)["within_tolerance"] == result["within_tolerance"]
