"""The ``%edgekit`` line magic: any ``edgekit`` verb, run as the command line runs it, plus ``repro``.

``%edgekit registry ...`` runs in the kernel through the CLI's own parser and API, so it leaves the same
events; ``%edgekit registry show [model|model@version]`` and ``history`` return rich displays instead of the CLI's
tables.
``%edgekit repro [stage]`` is ``dvc repro``; every other verb runs as ``python -m edgekit`` in a child
process whose output is streamed into the cell, because a pipeline verb imports runtimes that must not stay
loaded in the user's kernel. A refusal is the CLI's one ``error:`` line and the exit code; the magic never
raises, so the notebook's later cells still run.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import Any

from edgekit.errors import EdgekitError


def edgekit_magic(line: str) -> Any:
    """Run ``edgekit <line>``; a display for ``registry show``, else None (the output went to the cell)."""
    argv = shlex.split(line)
    if argv[:1] == ["repro"]:
        return _exited(_stream([sys.executable, "-m", "dvc", "repro", *argv[1:]]))
    if argv[:1] in (["bench"], ["benchmark"]) and len(argv) >= 2 and not {"-h", "--help"} & set(argv):
        return _bench(argv[1:])
    if argv[:1] == ["registry"]:
        from edgekit.registry.cli import main

        try:
            if argv[1:2] in (["show"], ["history"]) and not {"--json", "-h", "--help"} & set(argv):
                return _show(argv[1:])
            main(argv[1:])  # the CLI's own exit: its code, an error already printed as one line
        except EdgekitError as exc:  # from _show
            print(f"error: {exc}", file=sys.stderr)
            return _exited(1)
        except SystemExit as exc:
            return _exited(int(exc.code or 0))
    return _exited(_stream([sys.executable, "-m", "edgekit", *argv]))


def _bench(argv: list[str]) -> Any:
    """``bench VARIANT [-C PROJECT]`` in the kernel, with a progress bar (an ipywidgets bar in a notebook, tqdm's
    text bar elsewhere); returns the variant's view with its new figures."""
    import argparse

    from tqdm.auto import tqdm

    from edgekit import api
    from edgekit.notebook.display import BenchmarkView

    parsed = argparse.ArgumentParser(prog="%edgekit bench")
    parsed.add_argument("variant")
    parsed.add_argument("-C", "--project", default=".")
    try:
        args = parsed.parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage
        return _exited(int(exc.code or 0))
    try:
        with tqdm(total=api.planned_runs(args.variant, args.project), desc=f"benchmark {args.variant}", unit="process") as bar:
            def advance(key: str, run: dict) -> None:
                bar.set_postfix_str(f"{key}: {run['status']}")
                bar.update(1)

            record = api.benchmark(args.variant, args.project, progress=advance)
    except EdgekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _exited(1)
    return BenchmarkView(args.variant, record)


def _show(argv: list[str]) -> Any:
    from edgekit import notebook
    from edgekit.registry.cli import parser

    args = parser().parse_args(argv)
    if argv[0] == "history":
        from edgekit import registry
        from edgekit.notebook.display import HistoryView
        from edgekit.registry.cli import split_ref

        return HistoryView(registry.history(args.project, *split_ref(args.ref)), args.ref)
    if args.ref and "@" in args.ref:
        return notebook.version(args.project, args.ref)
    return notebook.registry(args.project, args.ref)


def _stream(command: list[str]) -> int:
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as child:
        assert child.stdout is not None
        for text in child.stdout:
            print(text, end="")
    return child.returncode


def _exited(code: int) -> None:
    if code:
        print(f"(edgekit exited with {code})", file=sys.stderr)


def load(ipython: Any) -> None:
    ipython.register_magic_function(edgekit_magic, magic_kind="line", magic_name="edgekit")
