"""The ``environment`` stage: the fingerprint of the software and hardware (``edgekit.fingerprint``) and the
digest of the source model's files.

It runs on every ``dvc repro`` (``always_changed``); its outputs hold nothing volatile, so a new CPU or
lock file re-runs exactly what depends on the machine, and a changed model (a local folder edited, another
package version, another Hugging Face snapshot) exactly what depends on the model: DVC cannot name a
folder that params.yaml chooses as a dep, so the baseline depends on this digest instead.

Example:
    >>> run(Layout(Path(".")))["cpu"]["model"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.fingerprint import fingerprint
from edgekit.fsutil import file_digests, tree_digest, write_json
from edgekit.layout import Layout
from edgekit.modelsource import ModelSource


def run(layout: Layout, out: Path | None = None, spec: str | None = None, source: ModelSource | None = None,
        decoder=None) -> dict[str, Any]:
    """Write the fingerprint to ``out`` (outputs/environment.json by default) and return it; with ``spec``
    (params' ``model.source``) and its resolved ``source``, also the model's digest to outputs/model_source.json,
    and with ``decoder`` (params' ``decoder``) the decoder's to outputs/decoder_source.json."""
    record = fingerprint(layout.root)
    write_json(out or layout.environment, record)
    if source is not None:
        write_json(layout.model_source, source_record(spec, source))
        write_json(layout.decoder_source, decoder_source_record(decoder))
    return record


def decoder_source_record(decoder) -> dict[str, Any]:
    """The decoder the decoder_model stage starts from: a local folder's or a cached Hugging Face snapshot's digest,
    so that an edited folder re-runs it; the decoder it makes itself is pinned by its corpus and params instead."""
    if decoder is None or decoder.made_here:
        return {"spec": decoder.source if decoder else None, "kind": "made by the decoder_model stage" if decoder else "none"}
    from edgekit.modelsource import resolve_source

    return source_record(decoder.source, resolve_source(decoder.source))


def source_record(spec: str, source: ModelSource) -> dict[str, Any]:
    """Where the source model was found and the sha256 of each of its files (no path: it differs per machine)."""
    files = file_digests(source.folder)
    return {"spec": spec, "kind": source.kind, "version": source.version, "sha256": tree_digest(files), "files": files}
