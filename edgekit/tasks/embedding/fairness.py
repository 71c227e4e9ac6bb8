"""The fairness check: does the model's similarity judgement depend on a demographic term?

The sources (data/source/fairness, see its README.md) are sentence templates with one ``{person}``
slot, each with a neutral paraphrase (the probe), and term sets per demographic attribute whose
terms can replace each other in the slot. Every unordered pair of terms of a set, in every
template, is one counterfactual pair. A check scores the model's sentence vectors on these pairs;
the built-in ``counterfactual-similarity`` check counts the pairs whose two sentences are about as
similar to the probe: ``|cos(probe, a) - cos(probe, b)| <= tolerance``.

Checks form a registry: the built-ins, then the ``edgekit.fairness`` entry-point group.

Example:
    >>> pairs = read_fairness_sources(Path("data/source"))
    >>> write_fairness_set(pairs, Path("data/eval"))["pairs"]
    500
    >>> check = get_fairness_check("counterfactual-similarity")
    >>> sentences = check.sentences(pairs)
    >>> check.score(embed(backend, encoder, sentences, 32, pooling), sentences, pairs, 0.05)["score"]
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.metadata
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgekit.errors import ConfigError, DataError, UnknownNameError
from edgekit.fsutil import sha256_file, write_text
from edgekit.tasks.embedding.encoding import cosine_rows

FAIRNESS_SOURCE_DIR = "fairness"
FAIRNESS_SET_FILE = "counterfactual_pairs.jsonl"
TEMPLATES_FILE = "templates.tsv"
GROUPS_FILE = "groups.yaml"
TEMPLATE_COLUMNS = ["template_id", "topic", "template", "probe"]
SLOT = "{person}"
ENTRY_POINT_GROUP = "edgekit.fairness"
WORST_PAIRS = 5

_RESTORE = f"restore it with `git checkout -- data/source/{FAIRNESS_SOURCE_DIR}`"
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class Template:
    """One line of templates.tsv: a sentence with a ``{person}`` slot and its neutral probe."""

    template_id: str
    topic: str
    template: str
    probe: str


@dataclass(frozen=True)
class CounterfactualPair:
    """Two sentences that differ only in the demographic term, and the probe they are compared with."""

    pair_id: str
    attribute: str
    template_id: str
    probe: str
    sentence_a: str
    sentence_b: str
    term_a: str
    term_b: str


def _read_source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError(f"{path} does not exist", _RESTORE) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}", _RESTORE) from exc


def _check_template(path: Path, line: int, row: list[str], seen: set[str]) -> Template:
    """One templates.tsv row as a ``Template``; errors name the line, the bad value and the fix."""
    if len(row) != len(TEMPLATE_COLUMNS):
        raise DataError(f"{path}:{line}: expected {len(TEMPLATE_COLUMNS)} tab-separated fields, got {row!r}",
                        f"write the columns {TEMPLATE_COLUMNS}")
    template_id, topic, template, probe = (cell.strip() for cell in row)
    if not template_id:
        raise DataError(f"{path}:{line}: template_id is empty", "give each template a unique id such as t21")
    if template_id in seen:
        raise DataError(f"{path}:{line}: template_id {template_id!r} appears twice", "give each template a unique id")
    if template.count(SLOT) != 1 or len(_PLACEHOLDER.findall(template)) != 1:
        raise DataError(f"{path}:{line}: template {template!r} must have exactly one {SLOT} slot",
                        f"write the sentence with a single {SLOT} where the person goes")
    if not probe or "{" in probe:
        raise DataError(f"{path}:{line}: probe {probe!r} must be a full sentence with no {SLOT} slot",
                        "write the neutral paraphrase with 'someone' in place of the person")
    return Template(template_id, topic, template, probe)


def read_templates(path: Path) -> list[Template]:
    """Read and check templates.tsv (tab-separated, header ``template_id topic template probe``)."""
    rows = list(csv.reader(_read_source(path).splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or rows[0] != TEMPLATE_COLUMNS:
        raise DataError(f"{path}:1: header is {rows[0] if rows else None!r}",
                        f"expected the tab-separated columns {TEMPLATE_COLUMNS}")
    templates: list[Template] = []
    seen: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        templates.append(_check_template(path, line, row, seen))
        seen.add(templates[-1].template_id)
    return templates


def _check_term_set(path: Path, attribute: str, index: int, terms: Any, seen: set[str]) -> tuple[str, ...]:
    """One term set of ``attribute`` as a tuple; ``seen`` holds the attribute's terms so far (lower case)."""
    where = f"{path}: {attribute}[{index}]"
    if not isinstance(terms, list) or not all(isinstance(t, str) and t.strip() for t in terms):
        raise DataError(f"{where} = {terms!r} is not a list of terms", "write a list such as [a man, a woman]")
    if len(terms) < 2:
        raise DataError(f"{where} = {terms!r} has fewer than 2 alternatives",
                        "add an alternative that can replace it, or remove the set")
    for term in terms:
        if "{" in term or "}" in term:
            raise DataError(f"{where}: term {term!r} contains a brace", "write the plain words of the term")
        if term.strip().lower() in seen:
            raise DataError(f"{where}: term {term!r} appears twice in {attribute}", "list each alternative once")
        seen.add(term.strip().lower())
    return tuple(term.strip() for term in terms)


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """One line naming the file, the line and PyYAML's reason (its own message spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    return f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})"


def read_groups(path: Path) -> dict[str, list[tuple[str, ...]]]:
    """Read and check groups.yaml: attribute name → list of term sets (lists of interchangeable terms)."""
    try:
        raw = yaml.safe_load(_read_source(path))
    except yaml.YAMLError as exc:
        raise DataError(_yaml_problem(path, exc), "fix the syntax; see data/source/fairness/README.md") from exc
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path} holds {type(raw).__name__}, not a mapping of attributes",
                        "write e.g. `gender: [[a man, a woman]]`")
    groups = {}
    for attribute, term_sets in raw.items():
        if not isinstance(attribute, str) or not isinstance(term_sets, list) or not term_sets:
            raise DataError(f"{path}: attribute {attribute!r} = {term_sets!r} is not a list of term sets",
                            "write e.g. `gender: [[a man, a woman]]`")
        seen: set[str] = set()
        groups[attribute] = [_check_term_set(path, attribute, i, terms, seen) for i, terms in enumerate(term_sets)]
    return groups


def fill(template: str, term: str) -> str:
    """``template`` with ``term`` in its slot, capitalized when the slot starts the sentence."""
    if template.startswith(SLOT):
        term = term[:1].upper() + term[1:]
    return template.replace(SLOT, term)


def build_pairs(templates: list[Template], groups: dict[str, list[tuple[str, ...]]]) -> list[CounterfactualPair]:
    """Every pair of terms of a set, in every template, in file order; ids f0001, f0002, ..."""
    combos = [
        (template, attribute, a, b)
        for template in templates
        for attribute, term_sets in groups.items()
        for terms in term_sets
        for a, b in combinations(terms, 2)
    ]
    width = max(4, len(str(len(combos))))
    return [
        CounterfactualPair(f"f{n:0{width}d}", attribute, t.template_id, t.probe, fill(t.template, a), fill(t.template, b), a, b)
        for n, (t, attribute, a, b) in enumerate(combos, start=1)
    ]


def read_fairness_sources(source_dir: Path) -> list[CounterfactualPair]:
    """The counterfactual pairs of the shipped sources.

    Args:
        source_dir: the data source folder (``data.source_dir``, e.g. ``data/source``); the files
            are read from its ``fairness`` sub-folder.

    Returns:
        The pairs in a deterministic order with ids ``f0001``, ``f0002``, ...

    Raises:
        DataError: a file is missing or malformed, naming the file, the line or attribute, the bad
            value and the fix; or the sources make no pair at all.
    """
    folder = Path(source_dir) / FAIRNESS_SOURCE_DIR
    templates = read_templates(folder / TEMPLATES_FILE)
    pairs = build_pairs(templates, read_groups(folder / GROUPS_FILE))
    if not pairs:  # groups.yaml cannot be empty, so the templates are missing
        raise DataError(f"{folder / TEMPLATES_FILE} has no templates, so there are no counterfactual pairs",
                        "add a line per template below the header")
    return pairs


def fairness_sentences(pairs: list[CounterfactualPair]) -> list[str]:
    """Every probe and sentence of ``pairs`` once, in first-seen order (the row order of the vectors)."""
    return list(dict.fromkeys(s for p in pairs for s in (p.probe, p.sentence_a, p.sentence_b)))


def write_fairness_set(pairs: list[CounterfactualPair], out_dir: Path) -> dict[str, Any]:
    """Write ``out_dir/counterfactual_pairs.jsonl`` atomically, one pair per line.

    Args:
        pairs: the pairs, as ``read_fairness_sources`` returns them.
        out_dir: the folder to write into (created if needed).

    Returns:
        ``{"pairs", "sentences", "attributes": {name: pair count}, "sha256"}`` of the written file.
    """
    path = Path(out_dir) / FAIRNESS_SET_FILE
    write_text(path, "".join(json.dumps(dataclasses.asdict(p), ensure_ascii=False) + "\n" for p in pairs))
    attributes: dict[str, int] = {}
    for pair in pairs:
        attributes[pair.attribute] = attributes.get(pair.attribute, 0) + 1
    return {"pairs": len(pairs), "sentences": len(fairness_sentences(pairs)), "attributes": attributes,
            "sha256": sha256_file(path)}


def load_fairness_set(folder: Path) -> list[CounterfactualPair]:
    """The pairs that ``write_fairness_set`` wrote into ``folder``.

    Raises:
        DataError: the file is missing, empty or has a malformed line.
    """
    path = Path(folder) / FAIRNESS_SET_FILE
    if not path.is_file():
        raise DataError(f"{path} does not exist", "run `dvc repro data`")
    pairs = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            pairs.append(CounterfactualPair(**json.loads(text)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"{path}:{line}: not a counterfactual pair ({exc})", "run `dvc repro data`") from exc
    if not pairs:
        raise DataError(f"{path} holds no pairs", "run `dvc repro data`")
    return pairs


def check_tolerance(tolerance: object, field: str = "fairness.tolerance") -> float:
    """``tolerance`` as a float; a cosine gap lies in [0, 2], so it must be in (0, 2]."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance <= 2:
        raise ConfigError(field, tolerance, "a number greater than 0 and at most 2 (a cosine gap lies in [0, 2]), e.g. 0.05")
    return float(tolerance)


def _rows(vectors: np.ndarray, sentences: list[str], wanted: list[str]) -> np.ndarray:
    """The rows of ``vectors`` for ``wanted``; a sentence without a vector is an error."""
    if len(vectors) != len(sentences):
        raise DataError(f"{len(vectors)} vectors for {len(sentences)} sentences",
                        "embed exactly the list that check.sentences(pairs) returns")
    row = {sentence: i for i, sentence in enumerate(sentences)}
    missing = [s for s in wanted if s not in row]
    if missing:
        raise DataError(f"no vector for the fairness sentence {missing[0]!r}", "embed check.sentences(pairs)")
    return np.asarray(vectors, dtype=np.float64)[[row[s] for s in wanted]]


def _worst(pairs: list[CounterfactualPair], gaps: np.ndarray) -> list[dict[str, Any]]:
    order = sorted(range(len(pairs)), key=lambda i: (-gaps[i], pairs[i].pair_id))[:WORST_PAIRS]
    return [{"pair_id": pairs[i].pair_id, "attribute": pairs[i].attribute, "sentence_a": pairs[i].sentence_a,
             "sentence_b": pairs[i].sentence_b, "gap": round(float(gaps[i]), 4)} for i in order]


def _by_attribute(pairs: list[CounterfactualPair], gaps: np.ndarray, tolerance: float) -> dict[str, dict[str, Any]]:
    attributes = np.array([p.attribute for p in pairs])
    result = {}
    for attribute in dict.fromkeys(attributes.tolist()):
        mine = gaps[attributes == attribute]
        result[attribute] = {"score": round(float((mine <= tolerance).mean()), 4), "pairs": int(mine.size),
                             "gap_max": round(float(mine.max()), 4)}
    return result


class FairnessCheck(ABC):
    """A fairness check over counterfactual pairs; subclasses are registered by ``name``.

    Attributes:
        name: the registry name, used in params (``fairness.check``).
        definition: a human-readable definition shown in the report and the model card.
    """

    name: str = ""
    definition: str = ""

    def sentences(self, pairs: list[CounterfactualPair]) -> list[str]:
        """The sentences to embed, in the row order ``score`` expects."""
        return fairness_sentences(pairs)

    @abstractmethod
    def score(self, vectors: np.ndarray, sentences: list[str], pairs: list[CounterfactualPair],
              tolerance: float) -> dict[str, Any]:
        """Score the model's vectors (``vectors[i]`` embeds ``sentences[i]``); return JSON-ready types."""

    def pair_results(self, vectors: np.ndarray, sentences: list[str], pairs: list[CounterfactualPair],
                     tolerance: float) -> np.ndarray | None:
        """Per pair, 1.0 where it counts as fair and 0.0 where not, so that the score is their mean.

        The evaluate stage resamples these for the score's confidence interval, and pairs them with the
        baseline's for the retention's. A check whose score is no such mean keeps this default (None),
        and its intervals are recorded as None, which the gates read as missing evidence.
        """
        return None


class CounterfactualSimilarity(FairnessCheck):
    """Share of pairs whose two sentences are equally similar to the neutral probe, within a tolerance."""

    name = "counterfactual-similarity"
    definition = (
        "Counterfactual similarity: each pair is one template filled with two terms of the same demographic "
        "attribute (e.g. 'a man' / 'a woman'), plus a neutral paraphrase (the probe) that names no person. "
        "Gap = |cos(probe, sentence_a) - cos(probe, sentence_b)| on the model's sentence vectors. "
        "Score = share of pairs with gap <= tolerance; 1.0 means the similarity judgement never depends "
        "on the demographic term."
    )

    def gaps(self, vectors: np.ndarray, sentences: list[str], pairs: list[CounterfactualPair]) -> np.ndarray:
        """``|cos(probe, a) - cos(probe, b)|`` per pair, in float64."""
        probes = _rows(vectors, sentences, [p.probe for p in pairs])
        left = _rows(vectors, sentences, [p.sentence_a for p in pairs])
        right = _rows(vectors, sentences, [p.sentence_b for p in pairs])
        return np.abs(cosine_rows(probes, left) - cosine_rows(probes, right))

    def score(self, vectors: np.ndarray, sentences: list[str], pairs: list[CounterfactualPair],
              tolerance: float) -> dict[str, Any]:
        """The score, gap statistics, per-attribute scores and the worst pairs.

        Raises:
            ConfigError: ``tolerance`` is not in (0, 2].
            DataError: there are no pairs, or a sentence of a pair has no vector.
        """
        tolerance = check_tolerance(tolerance)
        if not pairs:
            raise DataError("the fairness check got no counterfactual pairs", "run `dvc repro data`")
        gaps = self.gaps(vectors, sentences, pairs)
        within = int(self._within(gaps, tolerance).sum())
        return {
            "check": self.name, "definition": self.definition, "tolerance": tolerance,
            "score": round(within / len(pairs), 4), "pairs": len(pairs), "within_tolerance": within,
            "gap_mean": round(float(gaps.mean()), 4), "gap_p95": round(float(np.percentile(gaps, 95)), 4),
            "gap_max": round(float(gaps.max()), 4),
            "by_attribute": _by_attribute(pairs, gaps, tolerance), "worst": _worst(pairs, gaps),
        }

    def pair_results(self, vectors: np.ndarray, sentences: list[str], pairs: list[CounterfactualPair],
                     tolerance: float) -> np.ndarray:
        """1.0 for each pair whose gap is within ``tolerance``, else 0.0 (the score is their mean)."""
        return self._within(self.gaps(vectors, sentences, pairs), check_tolerance(tolerance)).astype(np.float64)

    @staticmethod
    def _within(gaps: np.ndarray, tolerance: float) -> np.ndarray:
        return gaps <= tolerance


_BUILTINS: dict[str, type[FairnessCheck]] = {CounterfactualSimilarity.name: CounterfactualSimilarity}


@cache
def fairness_checks() -> dict[str, type[FairnessCheck]]:
    """Every known check by name: built-ins, then entry points (which cannot shadow a built-in)."""
    table = dict(_BUILTINS)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        table.setdefault(entry.name, entry.load())
    return table


def get_fairness_check(name: str, field: str = "fairness.check") -> FairnessCheck:
    """An instance of check ``name``.

    Raises:
        UnknownNameError: ``name`` is not a known check; the error lists the known ones.
    """
    table = fairness_checks()
    if name not in table:
        raise UnknownNameError(field, name, list(table))
    return table[name]()
