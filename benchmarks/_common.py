"""Shared by the benchmark scripts: load a variant of a finished pipeline run, build real inputs."""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.datasets import load_eval_pairs, unique_sentences
from edgekit.layout import Layout
from edgekit.params import load_params
from edgekit.runtimes import get_runtime
from edgekit.tasks.embedding.encoding import TextEncoder


def load_variant(project: Path, name: str):
    """The loaded backend of variant ``name`` and a batch-1, 32-token input of real text."""
    params = load_params(project / "params.yaml")
    layout = Layout(project)
    manifest = json.loads((layout.variant_dir(name) / "manifest.json").read_text())
    config = get_runtime(manifest["runtime"])
    backend = config.backend("embedding")(manifest["precision"], config.options.parse(manifest["options"], "options"), params.threads)
    backend.load(layout.variant_dir(name))
    texts = unique_sentences(load_eval_pairs(layout))
    batch = TextEncoder(layout.variant_dir(name), 32).fixed_length_batch(texts, 1, 32)
    return backend, batch, params
