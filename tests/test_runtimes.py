"""One conformance suite, applied to every runtime × precision (mlx-lm's model test runner is the model).

Each case: optimize on the small offline model, manifest digests match the files, load, run,
output shape and dtype, a second run gives the same output, and fidelity to the PyTorch baseline
at or above the floor the runtime's config declares for that precision (``kinds["embedding"].floors``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from conftest import MARKER_DEPENDENCIES
from edgekit import api
from edgekit.fsutil import read_json, sha256_file
from edgekit.layout import Layout
from edgekit.manifest import verify_manifest
from edgekit.params import load_params
from edgekit.runtimes import clear_cache, get_runtime, runtimes
from edgekit.tasks.embedding.encoding import TextEncoder


def conformance_cases() -> list:
    """Every registered runtime × precision (plus its extra option sets), marked with its runtime.

    The fidelity bar of each case is the runtime's own floor for that precision and options.
    """
    cases = []
    for name, config in sorted(runtimes().items()):
        if name not in MARKER_DEPENDENCIES:
            continue  # a runtime registered by a test, not a built-in
        support = config.support("embedding")
        for precision in support.precisions:
            default = ({}, support.floors[precision])
            for options, floor in (default, *support.conformance_options.get(precision, ())):
                suffix = "-".join(f"{k}-{v}" for k, v in options.items()).lower()
                case_id = "-".join(filter(None, (name, precision, suffix)))
                cases.append(pytest.param(name, precision, options, floor.cosine_mean, floor.retention,
                                          marks=getattr(pytest.mark, name), id=case_id))
    return cases


def with_variant(project, name: str, spec: dict, params_file: str = "params.yaml"):
    """Add a variant to a copy of the project's params.yaml (``params_file``); return its path."""
    source = project / params_file if (project / params_file).exists() else project / "params.yaml"
    params = yaml.safe_load(source.read_text())
    params["variants"][name] = spec
    path = project / params_file
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("runtime", "precision", "options", "min_cosine", "min_retention"), conformance_cases())
def test_runtime_conformance(baseline_project, runtime, precision, options, min_cosine, min_retention):
    name = f"case-{runtime}-{precision}-{'-'.join(f'{k}-{v}' for k, v in options.items()) or 'default'}".lower().replace("_", "-")
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
    backend = config.backend("embedding")(precision, config.options.parse(options, "options"), params.threads)
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


@pytest.mark.onnxruntime
@pytest.mark.slow
def test_peak_rss_is_the_worker_own_even_from_a_big_parent(baseline_project):
    """This test process has torch loaded (hundreds of MB); Linux carries ru_maxrss across exec."""
    import torch  # noqa: F401  (make the parent big, as pytest with the baseline loaded is)

    for name in ("pytorch-fp32", "ort-int8"):
        assert api.optimize(name, baseline_project)["status"] == "ok"
    torch_rss = api.benchmark("pytorch-fp32", baseline_project)["peak_rss_mb"]
    onnx_rss = api.benchmark("ort-int8", baseline_project)["peak_rss_mb"]
    assert onnx_rss < torch_rss / 2, (onnx_rss, torch_rss)


PLUGIN = """
import dataclasses, os, time
from edgekit.deps import Dependency
from edgekit.errors import UnsupportedModelError, VariantError
from edgekit.runtimes.base import Options, RuntimeConfig
from edgekit.tasks.base import Support
from edgekit.tasks.embedding.backend import Backend
from edgekit.tasks.embedding.task import FidelityFloor


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    pass


class Misbehaving(Backend):
    def optimize(self, source, out, context):
        (out / "partial.bin").write_bytes(b"half")
        if self.precision == "unsupported":
            raise UnsupportedModelError("the crash runtime cannot run model_type 'bert'", "use the pytorch runtime")
        if self.precision == "refuse":
            raise VariantError("the crash runtime has no kernel for this layer", "use precision raise instead")
        if self.precision == "abort":
            os.abort()  # a native crash, as a converter segfault would be
        if self.precision == "hang":
            time.sleep(600)
        raise RuntimeError("converter crashed on layer 3")

    def load(self, folder):
        raise AssertionError("never loaded")

    def run(self, inputs):
        raise AssertionError("never run")


class GhostConfig(RuntimeConfig):
    name, extra, options = "ghost", "ghost", NoOptions
    kinds = {"embedding": Support("unused:Unused", ("fp32",), {"fp32": FidelityFloor(0.99, 0.99)})}
    dependencies = (Dependency("edgekit_ghost_runtime", "ghost-runtime", "ghost"),)


CRASHES = ("raise", "abort", "hang", "unsupported", "refuse")


class CrashConfig(RuntimeConfig):
    name, extra, options = "crash", "crash", NoOptions
    kinds = {"embedding": Support("edgekit_test_plugin:Misbehaving", CRASHES, {p: FidelityFloor(0.99, 0.99) for p in CRASHES})}
    dependencies = ()
"""


@pytest.fixture
def plugin_runtimes(tmp_path, monkeypatch):
    """Two third-party runtimes registered through the edgekit.runtimes entry-point group, as a real plug-in is."""
    site = tmp_path / "site"
    (site / "edgekit_test_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "edgekit_test_plugin.py").write_text(PLUGIN)
    (site / "edgekit_test_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: edgekit-test-plugin\nVersion: 1.0\n")
    (site / "edgekit_test_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[edgekit.runtimes]\nghost = edgekit_test_plugin:GhostConfig\ncrash = edgekit_test_plugin:CrashConfig\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH")))))
    clear_cache()
    yield
    clear_cache()


@pytest.mark.pytorch
@pytest.mark.slow
def test_missing_and_misbehaving_runtimes_are_recorded_and_the_rest_go_on(baseline_project, plugin_runtimes):
    assert {"ghost", "crash"} <= set(runtimes())
    # A separate params file: the shared project's params.yaml must stay valid without these runtimes.
    extra = None
    for name, spec in {"ghost-fp32": ("ghost", "fp32"), "crash-raise": ("crash", "raise"),
                       "crash-abort": ("crash", "abort"), "crash-hang": ("crash", "hang"),
                       "crash-unsupported": ("crash", "unsupported"), "crash-refuse": ("crash", "refuse")}.items():
        extra = with_variant(baseline_project, name, {"runtime": spec[0], "precision": spec[1]}, "params-extra.yaml")
    params = yaml.safe_load(extra.read_text())
    params["optimize"] = {"timeout_seconds": 5}
    extra.write_text(yaml.safe_dump(params, sort_keys=False))
    layout = Layout(baseline_project)

    skipped = api.optimize("ghost-fp32", baseline_project, extra)
    assert skipped["status"] == "skipped"
    assert "ghost-runtime not installed" in skipped["reason"]
    assert skipped["install"] == 'pip install -c requirements/lock.txt -e ".[ghost]"'

    raised = api.optimize("crash-raise", baseline_project, extra)
    assert raised["status"] == "failed"
    assert "RuntimeError: converter crashed on layer 3" in raised["error"]
    assert "Traceback" in raised["stderr"]
    assert not (layout.variant_dir("crash-raise") / "partial.bin").exists()

    aborted = api.optimize("crash-abort", baseline_project, extra)
    assert aborted["status"] == "failed" and "killed by SIGABRT" in aborted["error"]

    hung = api.optimize("crash-hang", baseline_project, extra)
    assert hung["status"] == "failed"
    assert hung["error"] == "timed out after 5 s (optimize.timeout_seconds)"

    # A runtime that says it cannot make the variant is that variant's record, not the stage's error.
    unsupported = api.optimize("crash-unsupported", baseline_project, extra)
    assert unsupported["status"] == "skipped"
    assert unsupported["reason"] == "the crash runtime cannot run model_type 'bert'; use the pytorch runtime"
    assert unsupported["hint"] == "use the pytorch runtime"
    refused = api.optimize("crash-refuse", baseline_project, extra)
    assert refused["status"] == "failed"
    assert refused["error"] == "VariantError: the crash runtime has no kernel for this layer; use precision raise instead"
    assert refused["hint"] == "use precision raise instead"
    assert not (layout.variant_dir("crash-refuse") / "partial.bin").exists()

    later = {}
    for name, status in (("ghost-fp32", "skipped"), ("crash-raise", "failed"), ("crash-hang", "failed"),
                         ("crash-unsupported", "skipped"), ("crash-refuse", "failed")):
        for stage in (api.benchmark, api.evaluate):
            record = later[name, stage.__name__] = stage(name, baseline_project, extra)
            assert record["status"] == status, (name, record)
            assert record.get("reason") or record.get("error"), record  # with why, for the report
    assert later["crash-unsupported", "evaluate"]["hint"] == "use the pytorch runtime"
    assert later["crash-refuse", "benchmark"]["hint"] == "use precision raise instead"


def test_an_optimize_context_without_the_pipeline_encoder_is_refused(tmp_path):
    from edgekit.tasks.embedding.backend import OptimizeContext

    fields = ([], [], 0.0, 128, {"pooling": "mean", "normalize": True}, 0, tmp_path)
    with pytest.raises(TypeError, match="encoder"):
        OptimizeContext(*fields)
    with pytest.raises(TypeError, match="TextEncoder"):
        OptimizeContext(*fields, encoder=None)
