"""The ``decoder_optimize`` stage for one decoder variant: models/decoder_variants/<name> with its manifest.

As for encoders, the runtime's optimizer runs in a child process with a time limit, and a variant whose
runtime is missing (or cannot make this model) is recorded as ``skipped`` with the reason and the fix.

Example:
    >>> run(params, Layout(Path(".")), "gguf-q4_k_m")["status"]
    'ok'
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgekit.errors import StageInputError, install_command
from edgekit.fsutil import staged_dir
from edgekit.isolation import run_child
from edgekit.layout import Layout
from edgekit.manifest import write_manifest
from edgekit.params import Params, parse_params
from edgekit.pipeline.optimize import _clear, _tool_versions
from edgekit.runtimes import get_runtime


def run(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    variant = params.decoder.variant(name)
    config = get_runtime(variant.runtime)
    if not (layout.decoder_model / "config.json").is_file():
        raise StageInputError(f"{layout.decoder_model} has no config.json", "run `dvc repro decoder_model`")
    record: dict[str, Any] = {"variant": name, "kind": "generation", "runtime": variant.runtime, "precision": variant.precision,
                              "options": variant.options.to_dict(), "tools": _tool_versions(config)}
    with staged_dir(layout.decoder_variant_dir(name)) as out:
        missing = config.missing(for_optimize=True)
        if missing:
            names = ", ".join(d.distribution for d in missing)
            record.update(status="skipped", reason=f"{names} not installed", install=install_command(config.extra))
        else:
            payload = {"params": params.raw, "root": str(layout.root.resolve()), "variant": name, "out": str(out)}
            result = run_child("edgekit.pipeline.decoder_optimize:child", payload, params.optimize_timeout_seconds, "optimize.timeout_seconds")
            if result["status"] != "ok":
                _clear(out)
            record.update(result)
        return write_manifest(out, record)


def child(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side of ``run``: the runtime's decoder optimizer writes into ``payload['out']``."""
    params = parse_params(payload["params"], deep=())
    variant = params.decoder.variant(payload["variant"])
    backend = get_runtime(variant.runtime).backend("generation", for_optimize=True)(variant.precision, variant.options, params.threads)
    with tempfile.TemporaryDirectory(prefix=f"edgekit-{variant.name}-") as scratch:
        steps = backend.optimize(Layout(Path(payload["root"])).decoder_model, Path(payload["out"]), Path(scratch))
    return {"optimization": steps}
