"""Variant manifests: what a variant folder holds and how it was made, and its verification.

Example:
    >>> write_manifest(folder, {"variant": "ort-int8", "status": "ok", ...})
    >>> verify_manifest(folder)  # raises IntegrityError on any changed, missing or extra file
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import IntegrityError, StageInputError
from edgekit.fsutil import file_digests, read_json, tree_digest, write_json

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


def write_manifest(folder: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Add the digests of every file in ``folder`` to ``record`` and write it as the manifest."""
    files = file_digests(folder, exclude=(MANIFEST,))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        **record,
        "files": files,
        "files_sha256": tree_digest(files),
        "size_bytes": sum(f["bytes"] for f in files.values()),
    }
    write_json(folder / MANIFEST, manifest)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    if not (folder / MANIFEST).is_file():
        raise StageInputError(f"{folder / MANIFEST} does not exist", f"run `dvc repro optimize@{folder.name}`")
    return read_json(folder / MANIFEST)


def verify_manifest(folder: Path) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest."""
    manifest = read_manifest(folder)
    actual = file_digests(folder, exclude=(MANIFEST,))
    fix = f"re-run `dvc repro optimize@{manifest.get('variant', folder.name)}`"
    for name, expected in manifest["files"].items():
        if name not in actual:
            raise IntegrityError(f"{folder / name} is missing (listed in the manifest)", fix)
        if actual[name]["sha256"] != expected["sha256"]:
            raise IntegrityError(
                f"hash mismatch for {folder / name}: expected {expected['sha256'][:12]}…, got {actual[name]['sha256'][:12]}…", fix
            )
    extra = sorted(set(actual) - set(manifest["files"]))
    if extra:
        raise IntegrityError(f"{folder} holds files the manifest does not list: {', '.join(extra)}", fix)
    return manifest


def status_record(manifest: dict[str, Any]) -> dict[str, Any]:
    """The fields a later stage copies from a variant's manifest (and why it was not made, if so)."""
    keys = ("variant", "runtime", "precision", "status", "reason", "install", "error", "hint", "files_sha256")
    return {k: manifest[k] for k in keys if k in manifest}
