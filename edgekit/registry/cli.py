"""``edgekit registry <verb>``: a few lines per verb over ``edgekit.registry``; ``--json`` on each.

The parser is the standard library's: ``edgekit/__main__.py`` sends ``edgekit registry ...`` here before the
rest of the CLI is imported, because typer (which now builds pydantic adapters) and rich took 0.3 s to import,
a third of the second a registry command has at 10,000 versions; rich is imported only for output meant for
people, and a table piped elsewhere is tab-separated. ``--json`` is indented on a terminal and compact when piped (as ``gh`` does): the
indenting encoder is pure Python, 0.2–0.5 s for 10,000 versions.

An ``EdgekitError`` is one ``error:`` line with its fix on stderr and exit code 1; a usage error exits 2.

Example:
    $ edgekit registry register --variant ort-int8
    $ edgekit registry promote all-minilm-l6-v2@v1.0.0 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError

REF_HELP = "<model>@v<major>.<minor>.<patch>"


class Exit(Exception):
    """Leave with ``code`` after the output is written (a failed check, a failed deploy hook)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def _api():
    from edgekit import registry

    return registry


# -- output ---------------------------------------------------------------------------------------
def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:  # CI logs: wide enough that tables are not cut at 80 columns
        console.width = max(console.width, 160)
    return console


def _say(markup: str) -> None:
    _console().print(markup, highlight=False)


def _escape(text: Any) -> str:
    """``text`` as literal rich markup (only output for people is markup, and it imports rich anyway)."""
    from rich.markup import escape

    return escape(str(text))


def _emit(result: Any, as_json: bool, text: str) -> None:
    if as_json:
        if sys.stdout.isatty():
            print(json.dumps(result, indent=2, sort_keys=True, default=str))
        else:
            print(json.dumps(result, sort_keys=True, default=str, separators=(",", ":")))
    else:
        _say(f"[green]✓[/] {_escape(text)}")


def _table(columns: list[str], rows: list[list[str]]) -> None:
    if sys.stdout.isatty():
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*(_escape(cell) for cell in row))
        _console().print(table)
    else:  # tab-separated, with a header line: what `cut` and `column -t` read
        print("\t".join(columns))
        for row in rows:
            print("\t".join(row))


# -- verbs ----------------------------------------------------------------------------------------
def register(a: argparse.Namespace) -> None:
    result = _api().register(a.project, a.model, a.variant, a.version, a.bump, a.key, a.push, decoder=a.decoder)
    _emit(result, a.json, f"registered {result['model']}@{result['version']} ({result['variant']}, {result['files']} files scanned), "
                          f"event {result['event']['seq']}, tag {result['event']['tags'][0]}")


def promote(a: argparse.Namespace) -> None:
    result = _api().promote(a.project, a.ref, a.stage, a.key, a.push)
    displaced = f"; {result['displaced']} archived" if result["displaced"] else ""
    _emit(result, a.json, f"{a.ref} → {result['stage']} (gates: {result['gates']['verdict']}{displaced}), event {result['event']['seq']}")
    _hook(result, a.json)


def _hook(result: dict[str, Any], as_json: bool) -> None:
    hook = result.get("deploy")
    if hook and hook["returncode"]:
        if not as_json:
            _say(f"[red]deploy hook failed[/] (exit {hook['returncode']}): {_escape(hook['command'])}\n{_escape(hook['stderr'])}")
        raise Exit(1)
    if hook and not as_json:
        _say(f"  deploy hook ran: {_escape(hook['command'])}")


def approve(a: argparse.Namespace) -> None:
    result = _api().approve(a.project, a.ref, a.stage, a.key, a.push)
    _emit(result, a.json, f"{result['signer']['principal']} approved {a.ref} for {result['stage']} ({result['signer']['key']}), "
                          f"event {result['event']['seq']}")


def archive(a: argparse.Namespace) -> None:
    result = _api().archive(a.project, a.ref, a.reason, a.key, a.push)
    _emit(result, a.json, f"{a.ref}: {result['from']} → {result['stage']}, event {result['event']['seq']}")


def rollback(a: argparse.Namespace) -> None:
    result = _api().rollback(a.project, a.model, a.reason, a.key, a.push)
    _emit(result, a.json, f"{a.model}: {result['version']} is back in {result['stage']} (replacing {result['replaces']}), "
                          f"event {result['event']['seq']}")
    _hook(result, a.json)


def show(a: argparse.Namespace) -> None:
    if a.ref and "@" in a.ref:
        result = _api().describe(a.project, a.ref)
        if a.json:
            return _emit(result, True, "")
        record = result["record"]
        _say(f"[bold]{_escape(a.ref)}[/] {result['variant']} · stage {result['stage']} · commit {result['commit'][:12]} · "
             f"record {result['record_sha256'][:12]} · {len(record['files'])} files · approvals {_escape(result['approvals'])}")
        _say(f"  policy {record['gates']['policy']['name']} {record['gates']['policy']['version']} · host {_escape(record['hardware']['cpu_model'])}")
        return None
    result = _api().show(a.project, a.ref)
    if a.json:
        return _emit(result, True, "")
    stages = result["stages"][:-1]
    _table(["model", "latest", *[f"#{s}" for s in stages], "versions"],
           [[name, model["latest"] or "-", *[model["stages"].get(s) or "-" for s in stages], str(len(model["versions"]))]
            for name, model in result["models"].items()])
    return None


HISTORY_COLUMNS = ["seq", "event", "version", "stage", "by", "time", "hash"]


def history_rows(events: list[dict[str, Any]]) -> list[list[Any]]:
    """``edgekit.registry.history``'s events as table rows (HISTORY_COLUMNS), for the CLI and the notebook views."""
    return [[e["seq"], e["type"], f"{e['model']}@{e['version']}" if e.get("version") else e["model"], e.get("stage"),
             e["signer"]["principal"] + " (signed)" if e.get("signer") else e.get("actor", ""), e["time"], e["hash"][:12]]
            for e in events]


def split_ref(ref: str | None) -> tuple[str | None, str | None]:
    """``model``, ``model@version`` or nothing → (model, version), either None when absent."""
    model, _, version = (ref or "").partition("@")
    return model or None, version or None


def history(a: argparse.Namespace) -> None:
    events = _api().history(a.project, *split_ref(a.ref))
    if a.json:
        return _emit(events, True, "")
    _table(HISTORY_COLUMNS, [["-" if cell is None else str(cell) for cell in row] for row in history_rows(events)])
    return None


def verify(a: argparse.Namespace) -> None:
    result = _api().verify(a.project, _checkpoint(a.checkpoint), raise_on_problem=False)
    if a.json:
        _emit(result, True, "")
    elif result["ok"]:
        pending = f", {len(result['tags_pending'])} pending" if result["tags_pending"] else ""
        _emit(result, False, f"{result['events']} events verify ({result['signatures']} signed, {result['tags']} tags{pending})")
    else:
        for problem in result["problems"]:
            _say(f"[red]✗[/] event {problem['seq']}: {_escape(problem['problem'])}")
    if not result["ok"]:
        raise Exit(1)


def _checkpoint(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    if Path(value).is_file():
        return json.loads(Path(value).read_text())
    seq, _, hash_ = value.partition(":")
    if not seq.isdigit() or len(hash_) != 64:
        raise _api().RegistryError(f"checkpoint {value!r} is not SEQ:HASH",
                                   "pass the output of `edgekit registry checkpoint --json` or SEQ:HASH")
    return {"seq": int(seq), "hash": hash_}


def checkpoint(a: argparse.Namespace) -> None:
    result = _api().checkpoint(a.project)
    _emit(result, a.json, f"{result['seq']}:{result['hash']}")


def check(a: argparse.Namespace) -> None:
    result = _api().check(a.project, a.now, a.archive, a.key)
    if a.json:
        _emit(result, True, "")
    else:
        for kind in ("expired", "expiring"):
            for item in result[kind]:
                _say(f"[{'red' if kind == 'expired' else 'yellow'}]{kind}[/] {item['ref']} in {item['stage']}: review by {item['review_by']}")
        for item in result["served_expired"]:
            _say(f"[red]served past review[/] {item['ref']}: {item['answered']} answers counted by telemetry event "
                 f"{item['telemetry_seq']} ({item['seen']}), review was due {item['review_by']}")
        for item in result["archived"]:
            _say(f"[green]archived[/] {item['model']}@{item['version']} (event {item['event']['seq']})")
        if not (result["expired"] or result["expiring"]):
            _emit(result, False, f"no version is due for review (as of {result['at']})")
    if result["expired"] and not result["archived"] or result["expiring"]:
        raise Exit(1)


def pull(a: argparse.Namespace) -> None:
    from edgekit.registry.core import Registry

    result = Registry.open(a.project).pull(a.remote)
    _emit(result, a.json, f"registry at event {result['seq']} from {a.remote}")


def fetch(a: argparse.Namespace) -> None:
    result = _api().fetch(a.project, a.model, a.out or "", a.stage, a.version)
    _emit(result, a.json, f"{a.model}@{result['version']} ({result['variant']}, {result['stage']}): {result['files']} files in "
                          f"{result['out']} match the record")


def reproduce(a: argparse.Namespace) -> None:
    result = _api().reproduce(a.project, a.ref)
    if a.json:
        _emit(result, True, "")
    else:
        for line in result["lines"]:
            _say(_escape(line))
    if not result["ok"]:
        raise Exit(1)


# -- the parser -----------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="edgekit registry", description="The model registry (git-native, signed).")
    verbs = top.add_subparsers(dest="verb", metavar="<verb>", required=True)

    def verb(handler: Callable[[argparse.Namespace], None], text: str, *, writes: bool = False,
             ref: str | None = None) -> argparse.ArgumentParser:
        sub = verbs.add_parser(handler.__name__, help=text, description=text)
        if ref:
            sub.add_argument("ref", nargs="?" if ref.endswith("?") else None, default=None, help=ref.rstrip("?"))
        sub.add_argument("-C", "--project", type=Path, default=Path("."), help="project folder (holds params.yaml and dvc.yaml)")
        if writes:
            sub.add_argument("--key", type=Path, help="SSH private key to sign with (its public key in the allowed signers)")
            sub.add_argument("--push", metavar="REMOTE", help="push the registry to this git remote (a rejected push is a conflict)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(handler=handler)
        return sub

    sub = verb(register, "Register a measured variant as a new version with its reproduction record (scanned, pinned).", writes=True)
    sub.add_argument("--model", help="registry name (default: from model.source, or decoder.source with --decoder)")
    sub.add_argument("--variant", help="variant (default: the recommended one)")
    sub.add_argument("--decoder", action="store_true",
                     help="a decoder variant (params.yaml's decoder.variants; default: metrics/decoder_summary.json's recommendation)")
    sub.add_argument("--version", help="vX.Y.Z (default: the latest, bumped)")
    sub.add_argument("--bump", choices=("major", "minor", "patch"), default="minor", help="which part of the latest version to bump")
    sub = verb(promote, "Promote a version one stage on; its gates are re-evaluated on its pinned metrics.", writes=True, ref=REF_HELP)
    sub.add_argument("--stage", help="target stage (default: the next)")
    sub = verb(approve, "Sign an approval of a version for a stage; the approver is whoever the key belongs to.", writes=True, ref=REF_HELP)
    sub.add_argument("--stage", help="stage approved for (default: the next)")
    sub = verb(archive, "Retire a version; it stays in the history.", writes=True, ref=REF_HELP)
    sub.add_argument("--reason", default="", help="why, for the record")
    sub = verb(rollback, "Put the previous production version back (a new event; the current one is archived).", writes=True)
    sub.add_argument("model", help="model name")
    sub.add_argument("--reason", default="", help="why, for the record")
    verb(show, "Models, versions and stages; or one version with its reproduction record.", ref="a model, or model@version for its record?")
    verb(history, "Every event, in sequence order, with its hash.", ref="a model or model@version?")
    sub = verb(verify, "Check the log's chain, signatures, records and tags (and its tail against a checkpoint).")
    sub.add_argument("--checkpoint", help="SEQ:HASH, or a JSON file from `edgekit registry checkpoint`")
    verb(checkpoint, "The last event's sequence number and hash, to keep outside the writer's reach.")
    sub = verb(check, "Exit 1 when a version is past its review-by date or within the warning window.")
    sub.add_argument("--now", help="check as of this ISO date")
    sub.add_argument("--archive", action="store_true", help="archive expired versions (signed with --key)")
    sub.add_argument("--key", type=Path, help="SSH private key to sign the archive events with")
    sub = verb(pull, "Fetch the registry from a remote (fast-forward only).")
    sub.add_argument("--remote", default="origin", help="git remote")
    sub = verb(fetch, "Download a stage's version with `dvc artifacts get` and check every file against its record.")
    sub.add_argument("model", help="model name")
    sub.add_argument("-o", "--out", type=Path, help="folder (default: deploy/<model>)")
    sub.add_argument("--stage", help="the stage whose version to fetch (default: production)")
    sub.add_argument("--version", help="a version instead of a stage")
    verb(reproduce, "Re-run the pinned pipeline for the version in a temporary worktree; print digest and metric differences.",
         ref=REF_HELP)
    return top


def run(argv: list[str]) -> int:
    """Run one verb; its exit code. An ``EdgekitError`` propagates (``main`` prints it)."""
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except Exit as done:
        return done.code
    return 0


def main(argv: list[str], traceback: bool = False) -> None:
    """``edgekit registry ...``: exits with the verb's code; an error is one line on stderr and exit 1."""
    try:
        code = run(argv)
    except EdgekitError as exc:
        if traceback:
            raise
        if sys.stderr.isatty():
            _console(stderr=True).print(f"[bold red]error:[/] {_escape(exc)}", highlight=False, soft_wrap=True)
        else:
            print(f"error: {exc}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.exit(code)
