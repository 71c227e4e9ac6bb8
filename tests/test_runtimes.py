"""One conformance suite, applied to every runtime × precision (mlx-lm's model test runner is the model).

Each case: optimize on the small offline model, manifest digests match the files, load, run,
output shape and dtype, a second run gives the same output, and fidelity to the PyTorch baseline
at or above the threshold documented for that precision (README, "Fidelity thresholds").
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from edgekit import api
from edgekit.deps import Dependency
from edgekit.embedding import TextEncoder
from edgekit.fsutil import read_json, sha256_file
from edgekit.layout import Layout
from edgekit.manifest import verify_manifest
from edgekit.params import load_params
from edgekit.runtimes import get_runtime, runtimes
from edgekit.runtimes.base import Backend, Options, RuntimeConfig

# runtime, precision, options, minimum mean cosine to the baseline, minimum task retention
CASES = [
    pytest.param("pytorch", "fp32", {}, 0.99999, 0.9999, marks=pytest.mark.pytorch, id="pytorch-fp32"),
    pytest.param("onnxruntime", "fp32", {"fusions": True}, 0.9999, 0.999, marks=pytest.mark.onnxruntime, id="ort-fp32"),
    pytest.param("onnxruntime", "fp32", {"fusions": False}, 0.9999, 0.999, marks=pytest.mark.onnxruntime, id="ort-fp32-unfused"),
    pytest.param("onnxruntime", "int8", {"per_channel": True}, 0.98, 0.97, marks=pytest.mark.onnxruntime, id="ort-int8-per-channel"),
    pytest.param("onnxruntime", "int8", {"per_channel": False}, 0.95, 0.95, marks=pytest.mark.onnxruntime, id="ort-int8-per-tensor"),
]


def with_variant(project, name: str, spec: dict, params_file: str = "params.yaml"):
    """Add a variant to a copy of the project's params.yaml (``params_file``); return its path."""
    source = project / params_file if (project / params_file).exists() else project / "params.yaml"
    params = yaml.safe_load(source.read_text())
    params["variants"][name] = spec
    path = project / params_file
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("runtime", "precision", "options", "min_cosine", "min_retention"), CASES)
def test_runtime_conformance(baseline_project, runtime, precision, options, min_cosine, min_retention):
    name = f"case-{runtime}-{precision}-{'-'.join(f'{k}{v}' for k, v in options.items()) or 'default'}".lower()
    with_variant(baseline_project, name, {"runtime": runtime, "precision": precision, "options": options})
    layout = Layout(baseline_project)

    manifest = api.optimize(name, baseline_project)
    assert manifest["status"] == "ok", manifest.get("error")
    folder = layout.variant_dir(name)
    assert verify_manifest(folder)["files_sha256"] == manifest["files_sha256"]
    for rel, entry in manifest["files"].items():
        assert sha256_file(folder / rel) == entry["sha256"]
    assert manifest["source_sha256"] == read_json(layout.baseline_metrics)["model_sha256"]
    assert manifest["tools"]["edgekit"] and manifest["options"] == {**manifest["options"], **options}

    params = load_params(baseline_project / "params.yaml")
    config = get_runtime(runtime)
    backend = config.backend()(precision, config.options.parse(options, "options"), params.threads)
    backend.load(folder)
    batch = TextEncoder(folder, 64).encode(["A cat sits on the mat.", "Quarterly revenue rose by four percent."])
    first, second = backend.run(batch), backend.run(batch)
    hidden = read_json(layout.source_model / "config.json")["hidden_size"]
    assert first.shape == (2, batch["input_ids"].shape[1], hidden)
    assert first.dtype == np.float32
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)

    quality = api.evaluate(name, baseline_project)
    assert quality["status"] == "ok"
    assert quality["cosine_mean"] >= min_cosine, quality
    assert quality["retention"] >= min_retention, quality


@pytest.mark.pytorch
@pytest.mark.slow
def test_tokenization_matches_the_baseline_tokenizer(baseline_project):
    """Every runtime is fed the token ids transformers' own tokenizer gives."""
    from transformers import AutoTokenizer

    source = Layout(baseline_project).source_model
    texts = ["Edge devices can't always reach the network!", "naïve café — déjà vu", "x" * 300]
    reference = AutoTokenizer.from_pretrained(source)(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    ours = TextEncoder(source, 128).encode(texts)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(ours[key], reference[key])


# A runtime that is registered but not installed, and one whose optimizer crashes.
@dataclasses.dataclass(frozen=True)
class _NoOptions(Options):
    pass


class _CrashingBackend(Backend):
    def optimize(self, source, out, calibration):
        (out / "partial.bin").write_bytes(b"half")
        raise RuntimeError("converter crashed on layer 3")

    def load(self, folder):
        raise AssertionError("never loaded")

    def run(self, inputs):
        raise AssertionError("never run")


class _GhostConfig(RuntimeConfig):
    name = "ghost"
    extra = "ghost"
    dependencies = (Dependency("edgekit_ghost_runtime", "ghost-runtime", "ghost"),)
    precisions = ("fp32",)
    options = _NoOptions
    backend_path = "unused:Unused"


class _CrashConfig(RuntimeConfig):
    name = "crash"
    extra = "pytorch"
    dependencies = ()
    precisions = ("fp32",)
    options = _NoOptions
    backend_path = f"{__name__}:_CrashingBackend"


@pytest.fixture
def extra_runtimes():
    table = runtimes()
    table.update(ghost=_GhostConfig, crash=_CrashConfig)
    yield
    del table["ghost"], table["crash"]


@pytest.mark.pytorch
@pytest.mark.slow
def test_missing_and_crashing_runtimes_are_recorded_and_the_rest_go_on(baseline_project, extra_runtimes):
    # A separate params file: the shared project's params.yaml must stay valid without these runtimes.
    with_variant(baseline_project, "ghost-fp32", {"runtime": "ghost", "precision": "fp32"}, "params-extra.yaml")
    extra = with_variant(baseline_project, "crash-fp32", {"runtime": "crash", "precision": "fp32"}, "params-extra.yaml")
    layout = Layout(baseline_project)

    skipped = api.optimize("ghost-fp32", baseline_project, extra)
    assert skipped["status"] == "skipped"
    assert "ghost-runtime not installed" in skipped["reason"]
    assert skipped["install"] == 'pip install -c requirements/lock.txt -e ".[ghost]"'

    failed = api.optimize("crash-fp32", baseline_project, extra)
    assert failed["status"] == "failed"
    assert "converter crashed on layer 3" in failed["error"]
    assert not (layout.variant_dir("crash-fp32") / "partial.bin").exists()

    for name, status in (("ghost-fp32", "skipped"), ("crash-fp32", "failed")):
        assert api.benchmark(name, baseline_project, extra)["status"] == status
        assert api.evaluate(name, baseline_project, extra)["status"] == status
