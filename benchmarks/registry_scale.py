"""The git-native registry at scale: `show`, `history` and `promote` at 10,000 versions, each ≤ 1 s.

The registry is built in bulk with `git fast-import`, as the git objects `registry.register` /
`approve` / `promote` would write: one declaration commit per version (the project's HEAD plus the
artifact declarations and the version's reproduction record), one commit per event on
`refs/edgekit/registry` (canonical JSON, `seq` and `prev` chained), and GTO's annotated tags. The event
shapes are copied from a real log: the script first runs the real API on the test project
(tests/registry_project.py) and reads its events back. Every 10th version of a model is promoted to
staging and every 50th also gets a real signed approval (ssh-keygen) and goes on to production, so
the lifecycle is the policy's own (production needs one signed approval).

Two layouts: `--models` models sharing the versions, and one model holding all of them (the worst case
for per-model work); each measured with the tags as loose refs and after `git pack-refs --all`.
`edgekit.registry.verify` must pass on each built registry (its time is reported, no target).
Each operation is timed as the Python API call and as the CLI (`edgekit registry ... --json`, a fresh
process), median of `--runs`; a promote run promotes a fresh registered version to staging, and (after
an untimed approval) times its promotion to production. GTO's `gto show` runs once for comparison
(gto#156: 6–12 s per command at 1,500 tags).

Run:  python benchmarks/registry_scale.py [--versions 10000] [--models 100] [--runs 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit import registry
from edgekit.registry import api, gitobjects, signing
from edgekit.registry.core import Registry, tag_date, tag_message
from edgekit.registry.events import GENESIS, EventLog, canonical, event_hash, signed_payload
from edgekit.registry.gitrepo import GitRepo
from edgekit.registry.record import record_bytes, record_sha256
from edgekit.registry.state import State, apply

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import registry_project  # noqa: E402  (the tests' real project: git, DVC, ONNX variants, policy)

VARIANT = "ort-int8"
TARGET_S = 1.0
GTO_TIMEOUT_S = 120
IDENTITY_DATE = 1796041709


def host_cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    return "unknown CPU"


# -- the real API, once, for the shapes of its events ------------------------------------------------
def real_shapes(template: Path, folder: Path, keys: dict[str, Path]) -> dict[str, Any]:
    """Register, promote, approve and promote a version with the real API; keep its events and record."""
    project = registry_project.copy(template, folder)
    registry.register(project, model="shape", variant=VARIANT)
    registry.promote(project, "shape@v1.0.0")
    registry.approve(project, "shape@v1.0.0", key=keys["alice"])
    registry.promote(project, "shape@v1.0.0")
    repo = GitRepo.find(project)
    events = EventLog(repo).events()
    kinds = [(e["type"], e.get("stage")) for e in events]
    assert kinds == [("register", None), ("promote", "staging"), ("approve", "production"), ("promote", "production")], kinds
    registered = events[0]
    record = json.loads(repo.show(registered["tag_commit"], gitobjects.record_path(".", "shape", "v1.0.0")))
    return {"register": registered, "staging": events[1], "approve": events[2], "production": events[3], "record": record}


# -- bulk build --------------------------------------------------------------------------------------
def version_plan(models: int, versions: int) -> list[tuple[str, str, int]]:
    """(model, version, index within the model), interleaved across models as a team would register them."""
    names = [f"model-{m:03d}" for m in range(models)]
    per_model = [versions // models + (1 if m < versions % models else 0) for m in range(models)]
    return [(names[m], f"v1.{i}.0", i) for i in range(max(per_model)) for m in range(models) if i < per_model[m]]


def fast_import(project: Path, stream: bytes, marks: Path | None = None) -> None:
    args = ["git", "fast-import", "--quiet", "--force"] + ([f"--export-marks={marks}"] if marks else [])
    subprocess.run(args, cwd=project, input=stream, check=True, capture_output=True)


def _data(payload: bytes) -> bytes:
    return b"data %d\n" % len(payload) + payload + b"\n"


def _declarations(project: Path, shapes: dict[str, Any]) -> Callable[[str, str, str], bytes]:
    """dvc.yaml and artifacts.yaml as `declaration_commit` writes them, with placeholders for model and digest."""
    repo = GitRepo.find(project)
    meta = {"variant": VARIANT, "runtime": shapes["record"].get("runtime") or "onnxruntime", "record_sha256": "f" * 64}
    path = shapes["register"]["path"]
    texts = {name: gitobjects._declare(repo.show("HEAD", name), "zzmodelzz", path, meta, dvc=name == "dvc.yaml")
             for name in ("dvc.yaml", "artifacts.yaml")}
    # The registered meta's digest, from the real declaration commit, says how ruamel wrote it (plain scalar).
    return lambda name, model, digest: texts[name].replace(b"zzmodelzz", model.encode()).replace(b"f" * 64, digest.encode())


def declaration_stream(project: Path, plan: list, shapes: dict[str, Any], identity: bytes) -> tuple[bytes, list[str]]:
    """One commit per version on a scratch ref, parent HEAD, as `gitobjects.declaration_commit` makes it."""
    head = GitRepo.find(project).head().encode()
    declare, out, digests = _declarations(project, shapes), io.BytesIO(), []
    # record_bytes indents, which takes json's pure-Python encoder (~20 ms for 70 kB): once, then substitute.
    template = record_bytes({**shapes["record"], "model": "zzmodelzz", "version": "zzversionzz"})
    for mark, (model, version, _) in enumerate(plan, start=1):
        record = template.replace(b'"zzmodelzz"', json.dumps(model).encode()).replace(b'"zzversionzz"', json.dumps(version).encode())
        digest = record_sha256(record)
        if re.fullmatch(r"[0-9]+(e[0-9]+)?", digest):  # would be a YAML number, quoted by ruamel: take the slow path
            raise SystemExit(f"record digest {digest} needs YAML quoting; change the plan")
        digests.append(digest)
        out.write(b"commit refs/edgekit/scratch\nmark :%d\ncommitter %s\n" % (mark, identity))
        out.write(_data(f"registry: {model} {version} ({VARIANT})\n".encode()) + b"from " + head + b"\n")
        for name in ("dvc.yaml", "artifacts.yaml"):
            out.write(b"M 100644 inline " + name.encode() + b"\n" + _data(declare(name, model, digest)))
        out.write(f"M 100644 inline {gitobjects.record_path('.', model, version)}\n".encode() + _data(record))
    return out.getvalue(), digests


class EventWriter:
    """The log's events, chained and folded as the API writes them, and the fast-import stream for them."""

    def __init__(self, shapes: dict[str, Any], identity: bytes, key: Path, exclusive: frozenset[str]):
        self.shapes, self.identity, self.key, self.exclusive = shapes, identity, key, exclusive
        self.state, self.seq, self.prev, self.out = State(), 0, GENESIS, io.BytesIO()
        self.common = {k: shapes["register"][k] for k in ("time", "actor")}

    def add(self, fields: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        if fields.get("tags"):  # dated as Registry.new_event dates them, from the identity's clock
            date = tag_date(self.state, fields["model"], IDENTITY_DATE)
            fields = {**fields, "tags": [{**tag, "date": date} for tag in fields["tags"]]}
        event = {**fields, **self.common, "seq": self.seq, "prev": self.prev}
        if event["type"] == "approve":
            event = {**event, "signature": signing.sign(signed_payload(event), self.key), "signer": self.shapes["approve"]["signer"]}
        hash_ = self.prev = event_hash(event)
        apply(self.state, event, hash_, self.exclusive)
        self.out.write(b"commit refs/edgekit/registry\ncommitter %s\n" % self.identity + _data(canonical(event)) + b"deleteall\n")
        for tag in event.get("tags", []):
            tagger = self.identity.replace(b" %d +0000" % IDENTITY_DATE, b" %d +0000" % tag["date"])
            self.out.write(f"tag {tag['name']}\nfrom {tag['target']}\ntagger ".encode() + tagger + b"\n"
                           + _data(tag_message(event, tag, hash_).encode()))
        return event

    def register(self, model: str, version: str, tag_commit: str, digest: str) -> None:
        shape = self.shapes["register"]
        self.add({"type": "register", "model": model, "version": version, "variant": VARIANT, "commit": shape["commit"],
                  "tag_commit": tag_commit, "record_sha256": digest, "path": shape["path"],
                  "tags": [{"name": f"{model}@{version}", "target": tag_commit, "version": version}]})

    def promote(self, model: str, version: str, stage: str, approvals: list[dict[str, Any]]) -> None:
        entry = self.state.version(model, version)
        moves = [{"version": version, "from": entry.stage, "to": stage}]
        displaced = self.state.occupant(model, stage)
        if displaced and displaced != version:
            moves.append({"version": displaced, "from": stage, "to": "archived"})
        self.add({"type": "promote", "model": model, "version": version, "stage": stage, "moves": moves,
                  "gates": self.shapes[stage]["gates"], "approvals": approvals,
                  "tags": api._stage_tags(self.state, model, moves, self.exclusive)})

    def approve_and_promote(self, model: str, version: str) -> None:
        entry = self.state.version(model, version)
        approval = self.add({"type": "approve", "model": model, "version": version, "stage": "production",
                             "record_sha256": entry.record_sha256})
        self.promote(model, version, "production", [{"seq": approval["seq"], **approval["signer"]}])


def build_registry(template: Path, folder: Path, shapes: dict[str, Any], models: int, versions: int, key: Path) -> dict[str, float]:
    """A copy of the template project holding ``versions`` registered versions; returns the build's timings."""
    project = registry_project.copy(template, folder)
    registered = shapes["register"]
    identity = f"{registered['actor']} <{registered['actor']}> {IDENTITY_DATE} +0000".encode()
    plan = version_plan(models, versions)
    started = time.perf_counter()
    stream, digests = declaration_stream(project, plan, shapes, identity)
    marks = folder / ".git" / "edgekit-scale.marks"
    fast_import(project, stream, marks)
    commits = dict(line.split() for line in marks.read_text().splitlines())
    subprocess.run(["git", "update-ref", "-d", "refs/edgekit/scratch"], cwd=project, check=True)
    declared = time.perf_counter()
    writer = EventWriter(shapes, identity, key, Registry.open(project).lifecycle().exclusive)
    for mark, ((model, version, index), digest) in enumerate(zip(plan, digests, strict=True), start=1):
        writer.register(model, version, commits[f":{mark}"], digest)
        if (index + 1) % 10 == 0:
            writer.promote(model, version, "staging", [])
        if (index + 1) % 50 == 0:
            writer.approve_and_promote(model, version)
    fast_import(project, writer.out.getvalue())
    return {"declarations_s": declared - started, "events_s": time.perf_counter() - declared, "events": writer.seq,
            "tags": len(writer.state.tags)}


# -- timing ------------------------------------------------------------------------------------------
def cli(project: Path, *args: str) -> Callable[[], None]:
    """A fresh `edgekit registry` process, its output piped (so `--json` is compact, as a program reads it). Its
    bytecode is cached as in any installed package, even where PYTHONDONTWRITEBYTECODE is set (compiling the
    registry's modules on each start adds about 0.05 s)."""
    command = [shutil.which("edgekit") or str(Path(sys.executable).with_name("edgekit")), "registry", *args, "--project", str(project)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return lambda: subprocess.run(command, check=True, capture_output=True, env=env)


def timed(call: Callable[[], Any], before: Callable[[], Any] | None = None) -> float:
    if before:
        before()
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def fresh_versions(project: Path, runs: int) -> list[str]:
    """Registered versions in no stage yet, of different models where there are several."""
    state = Registry.open(project).state()
    idle = sorted((v for v in state.versions.values() if v.stage is None), key=lambda v: (-v.registered_seq))
    by_model: dict[str, list[str]] = {}
    for entry in idle:
        by_model.setdefault(entry.model, []).append(f"{entry.model}@{entry.version}")
    return [refs[i] for i in range(2 * runs) for refs in by_model.values() if i < len(refs)][: 2 * runs]


def measure(project: Path, runs: int, key: Path, model: str) -> list[tuple[str, list[float]]]:
    """(operation, seconds of each run) for the API and the CLI."""
    fresh = iter(fresh_versions(project, runs))
    rows = []
    for label in ("api", "cli"):
        calls = _reads(project, label, model)
        rows += [(f"{name} ({label})", [timed(call) for _ in range(runs)]) for name, call in calls.items()]
        staging, production = [], []
        for _ in range(runs):
            ref = next(fresh)
            staging.append(timed(_promote(project, label, ref)))
            production.append(timed(_promote(project, label, ref), lambda r=ref: api.approve(project, r, key=key)))
        rows.append((f"promote → staging ({label})", staging))
        rows.append((f"promote → production ({label})", production))
    return rows


def _reads(project: Path, label: str, model: str) -> dict[str, Callable[[], Any]]:
    if label == "api":
        return {"show": lambda: api.show(project), "history": lambda: api.history(project),
                f"history {model}": lambda: api.history(project, model)}
    return {"show": cli(project, "show", "--json"), "history": cli(project, "history", "--json"),
            f"history {model}": cli(project, "history", model, "--json")}


def _promote(project: Path, label: str, ref: str) -> Callable[[], Any]:
    return (lambda: api.promote(project, ref)) if label == "api" else cli(project, "promote", ref, "--json")


def gto_show(project: Path) -> str:
    gto = shutil.which("gto") or str(Path(sys.executable).with_name("gto"))
    started = time.perf_counter()
    try:
        subprocess.run([gto, "show"], cwd=project, check=True, capture_output=True, timeout=GTO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"> {GTO_TIMEOUT_S} s (timed out)"
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        return f"failed: {str(getattr(exc, 'stderr', exc))[-200:]}"
    return f"{time.perf_counter() - started:.2f} s"


def profile(project: Path, ref: str) -> None:
    """cProfile of one API call of each operation: the top functions by cumulative time."""
    for name, call in (("show", lambda: api.show(project)), ("history", lambda: api.history(project)),
                       ("promote", lambda: api.promote(project, ref))):
        profiler = cProfile.Profile()
        profiler.runcall(call)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(18)
        print(f"\n--- profile: {name} ---\n" + "\n".join(text.getvalue().splitlines()[:45]))


def print_table(title: str, versions: int, rows: list[tuple[str, list[float]]]) -> None:
    print(f"\n{title}")
    print(f"  {'operation':34s} {'N':>6s} {'median s':>9s} {'min':>7s} {'max':>7s}  ≤ {TARGET_S:g} s")
    for name, times in rows:
        median = statistics.median(times)
        verdict = "PASS" if median <= TARGET_S else "FAIL"
        print(f"  {name:34s} {versions:6d} {median:9.3f} {min(times):7.3f} {max(times):7.3f}  {verdict}")


def run_layout(template: Path, work: Path, shapes: dict[str, Any], args: argparse.Namespace, models: int, keys: dict[str, Path]) -> Path:
    folder = work / f"registry-{models}x{args.versions // models}"
    built = build_registry(template, folder, shapes, models, args.versions, keys["alice"])
    print(f"\n{models} model(s), {args.versions} versions: {built['events']} events, {built['tags']} tags; built in "
          f"{built['declarations_s']:.1f} s (declaration commits) + {built['events_s']:.1f} s (events, tags, signatures)")
    started = time.perf_counter()
    report = registry.verify(folder)
    print(f"  verify: ok={report['ok']}, {report['events']} events, {report['signatures']} signatures, "
          f"{report['tags']} tags, {time.perf_counter() - started:.2f} s (no target)")
    for refs in ("loose", "packed"):
        if refs == "packed":
            subprocess.run(["git", "pack-refs", "--all"], cwd=folder, check=True)
        print_table(f"{models} model(s) × {args.versions // models} versions, {refs} refs:", args.versions,
                    measure(folder, args.runs, keys["alice"], "model-000"))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=100, help="models the versions are spread over (one model holding all is also run)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gto-versions", type=int, default=1_500, help="a second, smaller registry for `gto show` (0: skip gto)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the projects are built (default: a temporary folder)")
    parser.add_argument("--profile", action="store_true", help="cProfile one API call of each operation")
    args = parser.parse_args()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    print(f"host: {host_cpu()}; git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}")
    with tempfile.TemporaryDirectory(prefix="registry-scale-") as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        keys = registry_project.make_keys(work / "keys")
        template = registry_project.build(work / "template", keys)
        shapes = real_shapes(template, work / "shapes", keys)
        projects = [run_layout(template, work, shapes, args, models, keys) for models in dict.fromkeys((args.models, 1))]
        if args.profile:
            profile(projects[-1], fresh_versions(projects[-1], 1)[0])
        if args.gto_versions:
            small = work / "gto-small"
            build_registry(template, small, shapes, min(args.models, args.gto_versions), args.gto_versions, keys["alice"])
            print(f"\ngto show (once, timeout {GTO_TIMEOUT_S} s): N={args.gto_versions}: {gto_show(small)}; "
                  f"N={args.versions} ({args.models} models): {gto_show(projects[0])}")


if __name__ == "__main__":
    main()
