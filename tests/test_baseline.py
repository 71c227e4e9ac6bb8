"""The baseline claim, checked from inside real runs (issue 10, point 9).

The README says the PyTorch baseline runs as an expert runs it: SDPA attention, intra-op threads =
``threads``, one inter-op thread, ``inference_mode``. These tests read that from a real benchmark
worker process, not from params. They also check that the baseline computes exactly what the
exported variants compute (the last hidden state, no pooler head), and that a ``torch.compile``
variant compiles once and later processes load the compiled graph from inductor's disk cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgekit import api
from edgekit.bench.harness import run_worker, scenario_request
from edgekit.datasets import load_eval_pairs, unique_sentences
from edgekit.layout import Layout
from edgekit.params import load_params
from edgekit.runtimes import get_runtime
from edgekit.tasks.embedding.encoding import TextEncoder

MINILM_LAYERS = 6


def _add_variant(project: Path, name: str, spec: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["variants"][name] = spec
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _worker_run(project: Path, name: str, scratch: Path, batch_size: int = 1, seq_length: int = 32) -> dict:
    """One real benchmark-worker process on variant ``name`` (made first if needed); its run record."""
    layout = Layout(project)
    if not (layout.variant_dir(name) / "manifest.json").is_file():
        assert api.optimize(name, project)["status"] == "ok"
    manifest = json.loads((layout.variant_dir(name) / "manifest.json").read_text())
    params = load_params(project / "params.yaml")
    texts = scratch / "texts.json"
    texts.write_text(json.dumps(unique_sentences(load_eval_pairs(layout))))
    request = scenario_request(params, manifest, layout.variant_dir(name), texts, batch_size, seq_length)
    run = run_worker(request, params.threads, timeout=900)
    assert run["status"] == "ok", run
    return run


def _load(project: Path, name: str, runtime: str, precision: str = "fp32", options: dict | None = None):
    config = get_runtime(runtime)
    backend = config.backend("embedding")(precision, config.options.parse(options, "options"), load_params(project / "params.yaml").threads)
    backend.load(Layout(project).variant_dir(name))
    return backend


@pytest.mark.pytorch
@pytest.mark.slow
def test_the_baseline_worker_runs_sdpa_with_pinned_threads_in_inference_mode(baseline_project, tmp_path):
    settings = _worker_run(baseline_project, "pytorch-fp32", tmp_path)["runtime_settings"]
    threads = load_params(baseline_project / "params.yaml").threads
    assert settings["in_call"] == {"inference_mode": True, "grad_enabled": False, "threads": threads, "interop_threads": 1}
    assert (settings["threads"], settings["interop_threads"]) == (threads, 1)
    assert settings["attn_implementation"] == "sdpa"
    assert settings["sdpa_calls_per_forward"] == settings["layers"] == MINILM_LAYERS  # the fused kernel ran, in every layer
    assert settings["pooler"] is False and settings["output"] == "last_hidden_state"
    assert settings["compile"] is None


@pytest.mark.pytorch
@pytest.mark.slow
def test_describe_reports_the_attention_kernel_that_ran(baseline_project):
    """The probe counts kernel calls, so eager attention shows up as no SDPA call at all."""
    assert api.optimize("pytorch-fp32", baseline_project)["status"] == "ok"
    settings = _load(baseline_project, "pytorch-fp32", "pytorch", options={"attn_implementation": "eager"}).describe()
    assert (settings["attn_implementation"], settings["sdpa_calls_per_forward"]) == ("eager", 0)


def _real_text_batch(project: Path, folder: Path) -> dict[str, np.ndarray]:
    """Sixteen evaluation sentences of different lengths, padded as evaluate pads them."""
    return TextEncoder(folder, 128).encode(unique_sentences(load_eval_pairs(Layout(project)))[:16])


def _same_hidden_states(project: Path, other) -> float:
    """Largest difference between the baseline's and ``other``'s hidden states on real tokens."""
    baseline = _load(project, "pytorch-fp32", "pytorch")
    assert baseline.describe()["pooler"] is False and baseline.model.pooler is None  # no head the exports drop
    batch = _real_text_batch(project, Layout(project).variant_dir("pytorch-fp32"))
    mask = batch["attention_mask"].astype(bool)  # padded positions are masked out of pooling
    return float(np.abs(baseline.run(batch)[mask] - other.run(batch)[mask]).max())


@pytest.mark.onnxruntime
@pytest.mark.slow
def test_the_baseline_computes_what_the_onnx_variant_computes(baseline_project):
    import onnx

    assert api.optimize("pytorch-fp32", baseline_project)["status"] == "ok"
    assert api.optimize("ort-fp32", baseline_project)["status"] == "ok"
    folder = Layout(baseline_project).variant_dir("ort-fp32")
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert [output.name for output in graph.output] == ["last_hidden_state"]
    assert not [i.name for i in graph.initializer if "pooler" in i.name]
    ort = _load(baseline_project, "ort-fp32", "onnxruntime", options={"fusions": True})
    assert _same_hidden_states(baseline_project, ort) < 1e-4


@pytest.mark.openvino
@pytest.mark.slow
def test_the_baseline_computes_what_the_openvino_variant_computes(baseline_project):
    assert api.optimize("pytorch-fp32", baseline_project)["status"] == "ok"
    assert api.optimize("ov-fp32", baseline_project)["status"] == "ok"
    ov = _load(baseline_project, "ov-fp32", "openvino")
    assert [output.get_any_name() for output in ov.compiled.outputs] == ["last_hidden_state"]
    assert _same_hidden_states(baseline_project, ov) < 1e-4


@pytest.mark.pytorch
@pytest.mark.slow
def test_a_compiled_variant_compiles_once_then_loads_from_the_disk_cache(baseline_project, tmp_path, monkeypatch):
    cache = tmp_path / "edgekit-cache"
    monkeypatch.setenv("EDGEKIT_CACHE", str(cache))  # a cold cache, seen by the worker processes
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    _add_variant(baseline_project, "pytorch-compile", {"runtime": "pytorch", "precision": "fp32", "options": {"compile": True}})
    cold = _worker_run(baseline_project, "pytorch-compile", tmp_path)
    warm = _worker_run(baseline_project, "pytorch-compile", tmp_path)
    for run in (cold, warm):
        settings = run["runtime_settings"]
        assert settings["in_call"]["inference_mode"] and settings["sdpa_calls_per_forward"] == MINILM_LAYERS
        compiled = settings["compile"]
        assert (compiled["backend"], compiled["mode"]) == ("inductor", "default")
        assert (compiled["graphs"], compiled["graph_breaks"]) == (1, 0)  # the whole encoder, one static graph
        assert compiled["cache_dir"] == str(cache / "torchinductor")
    assert cold["runtime_settings"]["compile"]["fx_graph_cache"]["miss"] == 1
    for cache_name in ("fx_graph_cache", "aot_autograd_cache"):  # the warm process compiles nothing
        assert warm["runtime_settings"]["compile"][cache_name] == {"hit": 1, "miss": 0, "bypass": 0}
    assert warm["first_ms"] < cold["first_ms"] / 2, (cold["first_ms"], warm["first_ms"])
