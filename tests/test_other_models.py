"""Another model than the default MiniLM never stops the pipeline (issue 10, point 11).

A tiny random DistilBERT (conftest's ``tiny_distilbert``: no token-type embeddings, no pooler, its own
layer names) goes through optimize and evaluate on every runtime, as `dvc repro` runs them after
`model.source` is pointed at its folder. Each variant ends ``ok``, ``failed`` or ``skipped`` with its
reason; none raises. MLX's encoder is BERT only, so its variant is skipped by name, and the later
stages say why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_project, small_params
from edgekit import api

# One variant per runtime, and what it must come to on DistilBERT.
VARIANTS = {
    "pytorch": ("pytorch-fp32", {"runtime": "pytorch", "precision": "fp32"}, "ok"),
    "onnxruntime": ("ort-int8", {"runtime": "onnxruntime", "precision": "int8"}, "ok"),
    "openvino": ("ov-int8-weights", {"runtime": "openvino", "precision": "int8-weights"}, "ok"),
    # llama.cpp's converter maps DistilBertModel onto its BERT graph (no token-type table needed).
    "llamacpp": ("gguf-q8_0", {"runtime": "llamacpp", "precision": "q8_0"}, "ok"),
    "mlx": ("mlx-int8", {"runtime": "mlx", "precision": "int8", "options": {"group_size": 32}}, "skipped"),
    "olive": ("olive-int8", {"runtime": "olive", "precision": "int8"}, "ok"),
}
# Against the PyTorch fp32 baseline on the same random model (fp32 and 8-bit weights alike).
MIN_COSINE = 0.99


@pytest.fixture(scope="module")
def distilbert_project(tiny_distilbert, tmp_path_factory) -> Path:
    """A project whose model.source is the DistilBERT folder, with its data and baseline stages run."""
    params = small_params(model={"source": str(tiny_distilbert), "max_seq_length": 64})
    params["data"].update(eval_pairs=20, calibration_size=8)
    params["variants"] = {name: spec for name, spec, _ in VARIANTS.values()}
    project = make_project(tmp_path_factory.mktemp("distilbert-project"), params)
    api.environment(project)
    api.data(project)
    assert api.baseline(project)["model_type"] == "distilbert"
    return project


def _cases() -> list:
    return [pytest.param(runtime, marks=getattr(pytest.mark, runtime), id=runtime) for runtime in VARIANTS]


@pytest.mark.pytorch
@pytest.mark.slow
@pytest.mark.parametrize("runtime", _cases())
def test_each_runtime_makes_or_declines_a_distilbert_variant(distilbert_project, runtime):
    name, _, expected = VARIANTS[runtime]
    manifest = api.optimize(name, distilbert_project)  # never raises for the variant's own reasons
    assert manifest["status"] == expected, json.dumps({k: manifest.get(k) for k in ("status", "reason", "error", "hint")})
    quality = api.evaluate(name, distilbert_project)
    assert quality["status"] == expected, quality
    if expected == "ok":
        assert quality["cosine_mean"] >= MIN_COSINE, quality
        assert quality["pairs"] == 20


@pytest.mark.pytorch
@pytest.mark.mlx
@pytest.mark.slow
def test_mlx_skips_distilbert_by_name_and_every_later_stage_says_why(distilbert_project):
    name = VARIANTS["mlx"][0]
    manifest = api.optimize(name, distilbert_project)
    assert manifest["status"] == "skipped"
    assert "the mlx runtime cannot run model_type 'distilbert'; it supports: bert" in manifest["reason"]
    assert "pytorch, onnxruntime or openvino" in manifest["hint"]
    assert set(manifest["files"]) == set()  # checked before any work: nothing half-made is left behind
    for record in (api.benchmark(name, distilbert_project), api.evaluate(name, distilbert_project)):
        assert (record["status"], record["reason"], record["hint"]) == ("skipped", manifest["reason"], manifest["hint"])


@pytest.mark.pytorch
def test_a_model_type_transformers_does_not_know_is_unsupported_not_a_crash(tmp_path):
    from edgekit.errors import UnsupportedModelError
    from edgekit.tasks.embedding.backend import encoder_class

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "edgekit-unknown", "architectures": ["X"]}))
    with pytest.raises(UnsupportedModelError, match="cannot load model_type 'edgekit-unknown': transformers does not know it"):
        encoder_class(tmp_path, "pytorch")


@pytest.mark.onnxruntime
def test_onnxruntime_declines_a_model_optimum_cannot_export_before_any_work(tmp_path):
    """Funnel Transformer has a transformers encoder but no optimum ONNX config (optimum-onnx 0.1)."""
    from transformers import FunnelConfig

    from edgekit.errors import UnsupportedModelError
    from edgekit.runtimes.onnxruntime.backend import check_exportable

    FunnelConfig().save_pretrained(tmp_path)  # the config alone: the check reads nothing else
    with pytest.raises(UnsupportedModelError, match="cannot export model_type 'funnel'") as error:
        check_exportable(tmp_path)
    assert error.value.variant_record()["status"] == "skipped" and "pytorch or openvino" in error.value.hint
