"""The ``%edgekit`` line magic: any ``edgekit`` verb, run as the command line runs it.

``%edgekit registry ...`` runs in the kernel, through the same parser and API as the CLI (so it leaves the
same events); every other verb runs as ``python -m edgekit`` in a child process whose output is streamed
into the cell, because a pipeline verb imports runtimes that must not stay loaded in the user's kernel.
A refusal is the CLI's one ``error:`` line; the magic never raises, so a notebook's later cells still run.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import Any

from edgekit.errors import EdgekitError


def edgekit_magic(line: str) -> int:
    """Run ``edgekit <line>``; return its exit code."""
    argv = shlex.split(line)
    if argv[:1] == ["registry"]:
        from edgekit.registry.cli import run

        try:
            return run(argv[1:])
        except EdgekitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except SystemExit as exc:  # argparse: --help, or a usage error (already printed)
            return int(exc.code or 0)
    with subprocess.Popen([sys.executable, "-m", "edgekit", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as child:
        assert child.stdout is not None
        for text in child.stdout:
            print(text, end="")
    return child.returncode


def load(ipython: Any) -> None:
    ipython.register_magic_function(lambda line: _report(edgekit_magic(line)), magic_kind="line", magic_name="edgekit")


def _report(code: int) -> None:
    if code:
        print(f"(edgekit exited with {code})", file=sys.stderr)
