"""Which edgekit source files a pipeline stage really ran: the evidence behind its DVC deps.

With ``EDGEKIT_IMPORT_TRACE`` set to a folder, every edgekit process (the stage's own and the child
processes it starts: optimizers, timing workers, evaluators, notebook kernels) writes, when it exits,
the edgekit files it had imported to ``<folder>/<stage>.<pid>.json``. The stage is the ``edgekit`` verb
and its variant (``optimize@ort-int8``), set by the CLI in ``EDGEKIT_STAGE`` so children inherit it.
A test runs `dvc repro` with the trace on and compares each stage's files with its deps in dvc.lock.

Example:
    $ EDGEKIT_IMPORT_TRACE=/tmp/trace dvc repro
    $ cat /tmp/trace/optimize@ort-int8.*.json
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import sys
from pathlib import Path

TRACE_ENV = "EDGEKIT_IMPORT_TRACE"
STAGE_ENV = "EDGEKIT_STAGE"
_PACKAGE = Path(__file__).resolve().parent


_seen: set[str] = set()


def _audit(event: str, args: tuple) -> None:
    # Every `import` statement raises this audit event, so names are kept even where a process tears its
    # modules down before exiting (a Jupyter kernel: at exit its sys.modules no longer held them).
    # A module is in sys.modules while its body runs, so the package being imported when tracing started
    # (`from edgekit.results import ...` runs edgekit/__init__.py first) is caught at its own first import.
    if event == "import" and isinstance(args[0], str) and args[0].partition(".")[0] == "edgekit":
        _seen.add(args[0])
        _seen.update(name for name in list(sys.modules) if name.partition(".")[0] == "edgekit")


def imported_files() -> list[str]:
    """The edgekit source files loaded in this process, relative to the folder that holds the package."""
    names = _seen | {name for name in list(sys.modules) if name.partition(".")[0] == "edgekit"}
    files = set()
    for name in names:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) if module else _origin(name)
        if path and Path(path).resolve().is_relative_to(_PACKAGE):
            files.add(Path(path).resolve().relative_to(_PACKAGE.parent).as_posix())
    return sorted(files)


def _origin(name: str) -> str | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec else None


def _write() -> None:
    folder = Path(os.environ[TRACE_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    stage = os.environ.get(STAGE_ENV, "unknown")
    record = {"stage": stage, "argv": sys.argv, "files": imported_files()}
    (folder / f"{stage}.{os.getpid()}.json").write_text(json.dumps(record, indent=1))


def install() -> None:
    """Write this process's imports at exit when tracing is on; otherwise do nothing."""
    if os.environ.get(TRACE_ENV):
        _seen.update(name for name in sys.modules if name.partition(".")[0] == "edgekit")
        sys.addaudithook(_audit)
        atexit.register(_write)


def set_stage(verb: str, variant: str | None = None) -> None:
    """Name the DVC stage this process runs, for itself and the processes it starts."""
    name = verb.replace("-", "_")
    os.environ[STAGE_ENV] = f"{name}@{variant}" if variant else name
