"""``edgekit registry <verb>``: a few lines per verb over ``edgekit.registry``; ``--json`` on each.

Errors reach ``edgekit.cli.main``, which prints one red line with the fix and exits 1.

Example:
    $ edgekit registry register --variant ort-int8
    $ edgekit registry promote all-minilm-l6-v2@v1.0.0 --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekit import registry as api

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The model registry (git-native, signed).")
out = Console()
if not out.is_terminal:  # CI logs: wide enough that tables are not cut at 80 columns
    out.width = max(out.width, 160)

Project = Annotated[Path, typer.Option("--project", "-C", help="Project folder (holds params.yaml and dvc.yaml).")]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Ref = Annotated[str, typer.Argument(help="<model>@v<major>.<minor>.<patch>")]
Key = Annotated[Path | None, typer.Option("--key", help="SSH private key to sign with (its public key in the allowed signers).")]
Push = Annotated[str | None, typer.Option("--push", help="Push the registry to this git remote (a rejected push is a conflict).")]


def _emit(result: Any, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        out.print(f"[green]✓[/] {escape(text)}")


@app.command()
def register(project: Project = Path("."), model: Annotated[str | None, typer.Option(help="Registry name (default: from model.source).")] = None,
             variant: Annotated[str | None, typer.Option(help="Variant (default: the recommended one).")] = None,
             version: Annotated[str | None, typer.Option(help="vX.Y.Z (default: the latest, bumped).")] = None,
             bump: Annotated[str, typer.Option(help="major, minor or patch")] = "minor",
             key: Key = None, push: Push = None, as_json: Json = False) -> None:
    """Register a measured variant as a new version with its reproduction record (scanned, pinned)."""
    result = api.register(project, model, variant, version, bump, key, push)
    _emit(result, as_json, f"registered {result['model']}@{result['version']} ({result['variant']}, {result['files']} files scanned), "
                           f"event {result['event']['seq']}, tag {result['event']['tags'][0]}")


@app.command()
def promote(ref: Ref, project: Project = Path("."), stage: Annotated[str | None, typer.Option(help="Target stage (default: the next).")] = None,
            key: Key = None, push: Push = None, as_json: Json = False) -> None:
    """Promote a version one stage on; its gates are re-evaluated on its pinned metrics."""
    result = api.promote(project, ref, stage, key, push)
    displaced = f"; {result['displaced']} archived" if result["displaced"] else ""
    _emit(result, as_json, f"{ref} → {result['stage']} (gates: {result['gates']['verdict']}{displaced}), event {result['event']['seq']}")
    _hook(result, as_json)


def _hook(result: dict[str, Any], as_json: bool) -> None:
    hook = result.get("deploy")
    if hook and hook["returncode"]:
        if not as_json:
            out.print(f"[red]deploy hook failed[/] (exit {hook['returncode']}): {escape(hook['command'])}\n{escape(hook['stderr'])}")
        raise typer.Exit(1)
    if hook and not as_json:
        out.print(f"  deploy hook ran: {escape(hook['command'])}")


@app.command()
def approve(ref: Ref, project: Project = Path("."), stage: Annotated[str | None, typer.Option(help="Stage approved for (default: the next).")] = None,
            key: Key = None, push: Push = None, as_json: Json = False) -> None:
    """Sign an approval of a version for a stage; the approver is whoever the key belongs to."""
    result = api.approve(project, ref, stage, key, push)
    _emit(result, as_json, f"{result['signer']['principal']} approved {ref} for {result['stage']} ({result['signer']['key']}), event {result['event']['seq']}")


@app.command()
def archive(ref: Ref, project: Project = Path("."), reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
            key: Key = None, push: Push = None, as_json: Json = False) -> None:
    """Retire a version; it stays in the history."""
    result = api.archive(project, ref, reason, key, push)
    _emit(result, as_json, f"{ref}: {result['from']} → {result['stage']}, event {result['event']['seq']}")


@app.command()
def rollback(model: Annotated[str, typer.Argument(help="Model name.")], project: Project = Path("."),
             reason: Annotated[str, typer.Option(help="Why, for the record.")] = "", key: Key = None, push: Push = None,
             as_json: Json = False) -> None:
    """Put the previous production version back (a new event; the current one is archived)."""
    result = api.rollback(project, model, reason, key, push)
    _emit(result, as_json, f"{model}: {result['version']} is back in {result['stage']} (replacing {result['replaces']}), event {result['event']['seq']}")
    _hook(result, as_json)


@app.command()
def show(ref: Annotated[str | None, typer.Argument(help="A model, or model@version for its record.")] = None,
         project: Project = Path("."), as_json: Json = False) -> None:
    """Models, versions and stages; or one version with its reproduction record."""
    if ref and "@" in ref:
        result = api.describe(project, ref)
        if as_json:
            _emit(result, True, "")
            return
        record = result["record"]
        out.print(f"[bold]{escape(ref)}[/] {result['variant']} · stage {result['stage']} · commit {result['commit'][:12]} · "
                  f"record {result['record_sha256'][:12]} · {len(record['files'])} files · approvals {result['approvals']}")
        out.print(f"  policy {record['gates']['policy']['name']} {record['gates']['policy']['version']} · host {record['hardware']['cpu_model']}")
        return
    result = api.show(project, ref)
    if as_json:
        _emit(result, True, "")
        return
    table = Table("model", "latest", *[f"#{s}" for s in result["stages"][:-1]], "versions")
    for name, model in result["models"].items():
        table.add_row(name, model["latest"] or "-", *[model["stages"].get(s) or "-" for s in result["stages"][:-1]], str(len(model["versions"])))
    out.print(table)


@app.command()
def history(ref: Annotated[str | None, typer.Argument(help="A model or model@version.")] = None, project: Project = Path("."),
            as_json: Json = False) -> None:
    """Every event, in sequence order, with its hash."""
    model, _, version = (ref or "").partition("@")
    events = api.history(project, model or None, version or None)
    if as_json:
        _emit(events, True, "")
        return
    table = Table("seq", "event", "version", "stage", "by", "time", "hash")
    for e in events:
        who = e["signer"]["principal"] + " (signed)" if e.get("signer") else e.get("actor", "")
        table.add_row(str(e["seq"]), e["type"], f"{e['model']}@{e.get('version')}", e.get("stage") or "-", who, e["time"], e["hash"][:12])
    out.print(table)


@app.command()
def verify(project: Project = Path("."),
           checkpoint: Annotated[str | None, typer.Option(help="SEQ:HASH, or a JSON file from `edgekit registry checkpoint`.")] = None,
           as_json: Json = False) -> None:
    """Check the log's chain, signatures, records and tags (and its tail against a checkpoint)."""
    result = api.verify(project, _checkpoint(checkpoint), raise_on_problem=False)
    if as_json:
        _emit(result, True, "")
    elif result["ok"]:
        _emit(result, False, f"{result['events']} events verify ({result['signatures']} signed, {result['tags']} tags"
                             f"{', ' + str(len(result['tags_pending'])) + ' pending' if result['tags_pending'] else ''})")
    else:
        for p in result["problems"]:
            out.print(f"[red]✗[/] event {p['seq']}: {escape(p['problem'])}")
    if not result["ok"]:
        raise typer.Exit(1)


def _checkpoint(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    if Path(value).is_file():
        return json.loads(Path(value).read_text())
    seq, _, hash_ = value.partition(":")
    if not seq.isdigit() or len(hash_) != 64:
        raise api.RegistryError(f"checkpoint {value!r} is not SEQ:HASH", "pass the output of `edgekit registry checkpoint --json` or SEQ:HASH")
    return {"seq": int(seq), "hash": hash_}


@app.command("checkpoint")
def checkpoint_(project: Project = Path("."), as_json: Json = False) -> None:
    """The last event's sequence number and hash, to keep outside the writer's reach."""
    result = api.checkpoint(project)
    _emit(result, as_json, f"{result['seq']}:{result['hash']}")


@app.command()
def check(project: Project = Path("."), now: Annotated[str | None, typer.Option(help="Check as of this ISO date.")] = None,
          archive_expired: Annotated[bool, typer.Option("--archive", help="Archive expired versions (signed).")] = False,
          key: Key = None, as_json: Json = False) -> None:
    """Exit 1 when a version is past its review-by date or within the warning window."""
    result = api.check(project, now, archive_expired, key)
    if as_json:
        _emit(result, True, "")
    else:
        for kind in ("expired", "expiring"):
            for item in result[kind]:
                out.print(f"[{'red' if kind == 'expired' else 'yellow'}]{kind}[/] {item['ref']} in {item['stage']}: review by {item['review_by']}")
        for item in result["archived"]:
            out.print(f"[green]archived[/] {item['model']}@{item['version']} (event {item['event']['seq']})")
        if not (result["expired"] or result["expiring"]):
            _emit(result, False, f"no version is due for review (as of {result['at']})")
    if result["expired"] and not result["archived"] or result["expiring"]:
        raise typer.Exit(1)


@app.command()
def pull(project: Project = Path("."), remote: Annotated[str, typer.Option(help="git remote")] = "origin", as_json: Json = False) -> None:
    """Fetch the registry from a remote (fast-forward only)."""
    from edgekit.registry.core import Registry

    result = Registry.open(project).pull(remote)
    _emit(result, as_json, f"registry at event {result['seq']} from {remote}")


@app.command()
def fetch(model: Annotated[str, typer.Argument(help="Model name.")], project: Project = Path("."),
          out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder (default: deploy/<model>).")] = None,
          stage: Annotated[str | None, typer.Option(help="The stage whose version to fetch (default: production).")] = None,
          version: Annotated[str | None, typer.Option(help="A version instead of a stage.")] = None, as_json: Json = False) -> None:
    """Download a stage's version with `dvc artifacts get` and check every file against its record."""
    result = api.fetch(project, model, out or "", stage, version)
    _emit(result, as_json, f"{model}@{result['version']} ({result['variant']}, {result['stage']}): {result['files']} files in "
                           f"{result['out']} match the record")


@app.command()
def reproduce(ref: Ref, project: Project = Path("."), as_json: Json = False) -> None:
    """Re-run the pinned pipeline for the version in a temporary worktree; print digest and metric differences."""
    from edgekit.registry.reproduce import reproduce as run

    result = run(project, ref)
    if as_json:
        _emit(result, True, "")
    else:
        for line in result["lines"]:
            out.print(escape(line))
    if not result["ok"]:
        raise typer.Exit(1)


def main(args: list[str]) -> None:
    app(args=args, prog_name="edgekit registry")
