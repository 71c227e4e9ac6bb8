"""Run one function in a fresh interpreter, with a time limit, and bring back its result.

A runtime that segfaults, hangs or leaks cannot take the pipeline down with it: the stage records
the variant as failed with the reason and the other variants go on. So does a runtime that says
it cannot make or run the variant: an ``EdgekitError`` raised in the child comes back as the
variant's record (``EdgekitError.variant_record``: ``failed`` with the error and its hint, or
``skipped`` for a model the runtime does not support or a runtime that is not installed). Only an
error about the project itself (``stops_pipeline``: bad params, a stale or tampered input) is
raised again in the parent, because the user must fix it before any variant can run.

Example:
    >>> result = run_child("edgekit.bench.worker:run", request, timeout=900, setting="benchmark.timeout_seconds")
    >>> result["status"]
    'ok'
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError
from edgekit.fsutil import write_json

_EDGEKIT_ERROR_EXIT = 3
_STDERR_TAIL_LINES = 15


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-_STDERR_TAIL_LINES:])


def _failure(returncode: int, stderr: str) -> dict[str, Any]:
    if returncode < 0:
        reason = f"killed by {signal.Signals(-returncode).name}"
    else:
        reason = f"exited with code {returncode}"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return {"status": "failed", "error": f"{reason}: {last}" if last else reason, "stderr": _tail(stderr)}


def run_child(target: str, payload: dict[str, Any], timeout: float, setting: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Call ``module:function(payload)`` in a new process; return ``{"status": "ok", **result}`` or why not.

    Why not is a ``failed`` record (crash, time-out, or an ``EdgekitError`` of the variant) or a
    ``skipped`` one (the runtime does not support the model, or is not installed).

    Args:
        target: ``module:function``; the function takes the payload dict and returns a JSON-able dict.
        payload: its argument (JSON-able).
        timeout: seconds before the child and everything it started are killed.
        setting: the params field that sets ``timeout``, named in the failure message.
        env: the child's environment (default: this process's).

    Raises:
        EdgekitError: the child raised one that ``stops_pipeline`` (its message and hint are kept).
    """
    with tempfile.TemporaryDirectory(prefix="edgekit-child-") as scratch:
        request, result = Path(scratch) / "request.json", Path(scratch) / "result.json"
        request.write_text(json.dumps({"target": target, "payload": payload}))
        # -P: do not put the working directory first on sys.path, so the child imports the same
        # edgekit as this process even when run from a folder that holds another copy of it.
        safe_path = ["-P"] if sys.version_info >= (3, 11) else []
        command = [sys.executable, *safe_path, "-m", "edgekit.isolation", str(request), str(result)]
        # A new session, so that a timeout also kills what the child started (converters, compilers).
        child_env = {**(env if env is not None else os.environ), **OFFLINE_ENV}
        child = subprocess.Popen(command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return {"status": "failed", "error": f"timed out after {timeout:.0f} s ({setting})"}
        if child.returncode == _EDGEKIT_ERROR_EXIT and result.is_file():
            return _edgekit_error_outcome(json.loads(result.read_text()), stderr)
        if child.returncode != 0 or not result.is_file():
            return _failure(child.returncode, stderr)
        return {"status": "ok", **json.loads(result.read_text())}


def variant_payload(params, layout, name: str, **extra: Any) -> dict[str, Any]:
    """What a per-variant child needs to rebuild its params and layout: the raw params, the project root, the name."""
    return {"params": params.raw, "root": str(layout.root.resolve()), "variant": name, **extra}


def unpack_variant(payload: dict[str, Any]):
    """The child's side of ``variant_payload``: (params, layout, variant), validating only this variant."""
    from edgekit.layout import Layout
    from edgekit.params import parse_params

    params = parse_params(payload["params"], deep=(payload["variant"],))
    return params, Layout(Path(payload["root"])), params.variant(payload["variant"])


def _edgekit_error_outcome(error: dict[str, Any], stderr: str) -> dict[str, Any]:
    """The variant's record for an ``EdgekitError`` the child raised, or the error again if it stops the pipeline."""
    if error["stops_pipeline"]:
        raise EdgekitError(error["message"], error["hint"])
    record = error["record"]
    if record["status"] == "failed":
        record["stderr"] = _tail(stderr)  # the child's traceback, for whoever debugs the runtime
    return record


# Runtimes that phone home when imported: onnxruntime 1.32's Linux wheel resolves a telemetry host and
# writes a device id unless this is set before the import (microsoft/onnxruntime#27379). Offline by
# default, and no background telemetry threads while a benchmark runs.
OFFLINE_ENV = {"ORT_DISABLE_TELEMETRY": "1", "OLIVE_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "1"}


def main(argv: list[str]) -> int:
    request_path, result_path = (Path(a) for a in argv)
    request = json.loads(request_path.read_text())
    module_name, _, function_name = request["target"].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        write_json(result_path, function(request["payload"]))
    except EdgekitError as exc:
        traceback.print_exc()
        write_json(result_path, {"message": exc.message, "hint": exc.hint, "stops_pipeline": exc.stops_pipeline,
                                 "record": exc.variant_record()})
        return _EDGEKIT_ERROR_EXIT
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
