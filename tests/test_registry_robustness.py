"""The registry under attack and under failure: every tampering of the log is caught and names its event,
a writer killed with SIGKILL at any point leaves a registry that opens and verifies, and 32 processes
writing one clone at once lose nothing and never break the exclusive stages.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from registry_project import MODEL, commit_all, copy

from edgekit import registry
from edgekit.registry import ConflictError, RegistryError, signing
from edgekit.registry.core import Registry
from edgekit.registry.events import REF, canonical, event_hash, signed_payload
from edgekit.registry.gitrepo import EMPTY_TREE
from edgekit.registry.state import State, apply, fold
from edgekit.registry.verify import verify


def save_stats(test: str, stats: dict[str, Any]) -> None:
    """Outcome counts and timings, appended as JSON lines to $EDGEKIT_ROBUSTNESS_STATS when it is set (the
    tests print nothing)."""
    if os.environ.get("EDGEKIT_ROBUSTNESS_STATS"):
        with open(os.environ["EDGEKIT_ROBUSTNESS_STATS"], "a") as out:
            out.write(json.dumps({"test": test, **stats}, default=str) + "\n")


GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "attacker", "GIT_AUTHOR_EMAIL": "a@example.com",
           "GIT_COMMITTER_NAME": "attacker", "GIT_COMMITTER_EMAIL": "a@example.com"}


def ref(version: str) -> str:
    return f"{MODEL}@{version}"


def git(project: Path, *args: str, input: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=project, input=input, capture_output=True, text=True, env=GIT_ENV)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout.strip()


def log_of(project: Path) -> tuple[list[str], list[str]]:
    """The log's commits and their raw event JSON, oldest first."""
    stored = Registry.open(project).log.stored()
    return [s.commit for s in stored], [s.raw for s in stored]


def rewrite_log(project: Path, raws: list[str], original: tuple[list[str], list[str]]) -> None:
    """Write ``raws`` as the log, the way someone with write access to the repository can: a new commit chain
    on the empty tree, force-moved onto the registry's ref (the original commits reused while they agree)."""
    commits, original_raws = original
    parent, start = None, 0
    while start < min(len(raws), len(original_raws)) and raws[start] == original_raws[start]:
        parent, start = commits[start], start + 1
    for raw in raws[start:]:
        parent = git(project, "commit-tree", EMPTY_TREE, *(["-p", parent] if parent else []), input=raw)
    git(project, "update-ref", REF, parent)


def rechain(events: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """Events from index ``start`` on with ``prev`` recomputed, as a careful attacker would."""
    events = [dict(e) for e in events]
    for i in range(max(start, 1), len(events)):
        events[i]["prev"] = event_hash(events[i - 1])
    return events


def raws_of(events: list[dict[str, Any]]) -> list[str]:
    return [canonical(e).decode() for e in events]


# --- 1. the tamper corpus ---------------------------------------------------------------------------


def build_full_log(project: Path, keys: dict[str, Path]) -> None:
    """Every event type: two registrations, both through staging with alice's approvals to production
    (v1.1.0 displaces v1.0.0), a rollback and an archive."""
    registry.register(project, model=MODEL, variant="ort-int8")
    registry.register(project, model=MODEL, variant="olive-int8")
    for version in ("v1.0.0", "v1.1.0"):
        registry.promote(project, ref(version))
        registry.approve(project, ref(version), key=keys["alice"])
        registry.promote(project, ref(version))
    registry.rollback(project, MODEL, reason="corpus")
    registry.archive(project, ref("v1.0.0"), reason="corpus")


class Case:
    """One tampering: the log it leaves, the checkpoint verify gets, and which problem must name what."""

    def __init__(self, label: str, raws: list[str], checkpoint: dict | None, named: Callable[[list[dict]], bool]):
        self.label, self.raws, self.checkpoint, self.named = label, raws, checkpoint, named


def names(*seqs: int, text: str = "") -> Callable[[list[dict]], bool]:
    """At least one problem names one of ``seqs`` (and says ``text``)."""
    return lambda problems: any(p["seq"] in seqs and text in p["problem"] for p in problems)


def names_all(*seqs: int) -> Callable[[list[dict]], bool]:
    return lambda problems: all(any(p["seq"] == s for p in problems) for s in seqs)


def forged_promotion(seq: int, prev: str) -> dict[str, Any]:
    """A promotion to production nobody approved, chained after the event it follows."""
    return {"type": "promote", "model": MODEL, "version": "v1.1.0", "stage": "production", "time": "2030-01-01T00:00:00+00:00",
            "actor": "mallory@example.com", "moves": [{"version": "v1.1.0", "from": "staging", "to": "production"}],
            "gates": {}, "approvals": [], "tags": [], "seq": seq, "prev": prev}


def tamper_cases(events: list[dict[str, Any]], cp: dict[str, Any], keys: dict[str, Path]) -> list[Case]:
    """Every event × every mutation. Where a problem must be reported (``seq``):

    - an edited field: the edited event (the next event's ``prev``, or for the last, its tags and the checkpoint);
    - an edit with every later ``prev`` recomputed: the edited event (its tags' event hash or its signature);
    - a deleted event i: the event after it, now one position early (i + 1); the last one: the checkpoint (n);
    - event i swapped with i + 1: event i (now one position late);
    - a copy of event i inserted after it: event i (the copy, reported as duplicated);
    - a forged event after event i: position i + 1 (the displaced original i + 1, or the forgery itself at the tail);
    - an approval's signature replaced (later ``prev`` recomputed): the approval, by its signature check;
    - the tail truncated by k: the checkpoint's event (n); without a checkpoint, each dropped event that had tags.
    """
    n, cases = len(events), []
    for i, event in enumerate(events, start=1):
        index = i - 1
        for field in ("time", "version", "stage" if "stage" in event else "variant"):
            edited = [dict(e) for e in events]
            edited[index][field] = "v9.9.9" if field == "version" else "2000-01-01T00:00:00+00:00" if field == "time" else "staging-x"
            cases.append(Case(f"edit {field} of {i}", raws_of(edited), cp, names(i)))
        edited = [dict(e) for e in events]
        edited[index]["time"] = "2000-01-01T00:00:00+00:00"
        for checkpoint in (cp, None):
            cases.append(Case(f"edit time of {i}, later prev recomputed, checkpoint={bool(checkpoint)}",
                              raws_of(rechain(edited, i)), checkpoint, names(i)))
        raws = raws_of(events)
        cases.append(Case(f"delete {i}", raws[:index] + raws[i:], cp, names(i + 1 if i < n else n)))
        if i < n:
            cases.append(Case(f"swap {i} and {i + 1}", raws[:index] + [raws[i], raws[index]] + raws[i + 1:], cp, names(i)))
        cases.append(Case(f"duplicate {i}", raws[:i] + [raws[index]] + raws[i:], cp, names(i)))
        forged = canonical(forged_promotion(i + 1, event_hash(event))).decode()
        cases.append(Case(f"forged event after {i}", raws[:i] + [forged] + raws[i:], cp, names(i + 1)))
        if event["type"] == "approve":
            payload = signed_payload(event)
            other = signed_payload({**event, "stage": "staging"})
            for label, signature in (("mallory's key", signing.sign(payload, keys["mallory"])),
                                     ("alice's key over another payload", signing.sign(other, keys["alice"]))):
                swapped = [dict(e) for e in events]
                swapped[index]["signature"] = signature
                cases.append(Case(f"signature of {i} by {label}", raws_of(rechain(swapped, i)), None, names(i, text="signature")))
    tagged = {e["seq"] for e in events if e.get("tags")}
    for k in (1, 2, 3):
        raws = raws_of(events)[:-k]
        cases.append(Case(f"truncate {k}, checkpoint", raws, cp, names(n)))
        dropped = sorted(tagged & set(range(n - k + 1, n + 1)))
        assert dropped, "the corpus log must end with tagged events"
        cases.append(Case(f"truncate {k}, no checkpoint", raws, None, names_all(*dropped)))
    return cases


def test_every_tampering_is_detected_and_names_its_event(registry_project, registry_keys):
    project = registry_project
    build_full_log(project, registry_keys)
    cp = registry.checkpoint(project)
    original = log_of(project)
    events = [json.loads(raw) for raw in original[1]]
    assert [e["type"] for e in events] == ["register", "register", "promote", "approve", "promote", "promote", "approve",
                                           "promote", "rollback", "archive"]
    assert verify(project, checkpoint=cp)["ok"] and verify(project)["ok"]

    cases = tamper_cases(events, cp, registry_keys)
    missed = []
    for case in cases:
        rewrite_log(project, case.raws, original)
        report = verify(project, checkpoint=case.checkpoint, raise_on_problem=False)
        if report["ok"] or not case.named(report["problems"]):
            missed.append((case.label, report["problems"]))
        git(project, "update-ref", REF, original[0][-1])
    detected, total = len(cases) - len(missed), len(cases)
    assert detected == total, f"{total - detected} of {total} tamperings missed or misnamed: {missed}"
    assert total >= 90
    save_stats("tamper", {"cases": total, "detected": detected})
    assert log_of(project) == original
    assert verify(project, checkpoint=cp)["ok"] and verify(project)["ok"]


# --- 2. kill -9 at any point ------------------------------------------------------------------------


def run_and_kill(operation: Callable[[], Any], delay: float, errors: Path) -> bool:
    """Run ``operation`` in a forked child (its own process group, so git children die with it) and SIGKILL
    the group after ``delay`` s. Returns whether it was killed; a child that finished must have succeeded."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.setpgid(0, 0)
            operation()
            code = 0
        except BaseException:
            errors.write_text(traceback.format_exc())
        finally:
            os._exit(code)
    try:
        os.setpgid(pid, pid)
    except OSError:  # the child did it first, or already exited
        pass
    time.sleep(delay)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return True
    assert os.WEXITSTATUS(status) == 0, f"an operation after a kill failed:\n{errors.read_text() if errors.exists() else ''}"
    return False


def next_operation(project: Path, step: int, keys: dict[str, Path], state: State | None = None) -> tuple[str, Callable[[], Any]]:
    """A write that is valid whatever the killed ones did: every eighth a registration (it runs `dvc status`,
    about a second), otherwise alternately an approval by alice and a promotion."""
    state = state or Registry.open(project).state()
    versions = state.of_model(MODEL)
    fresh = [v for v in versions if v.stage is None]
    staging = [v for v in versions if v.stage == "staging"]
    ready = [v for v in staging if v.approvals.get("production") and v.variant != "ort-fp32"]
    if step % 8 and step % 2 and (ready or fresh):
        target = (ready or fresh)[-1].version
        return "promote", lambda: registry.promote(project, ref(target))
    approvable = [v for v in staging if v.variant != "ort-fp32"] or fresh
    if step % 8 and approvable:
        target = approvable[-1].version
        return "approve", lambda: registry.approve(project, ref(target), key=keys["alice"])
    variant = ("ort-int8", "olive-int8", "ort-fp32")[step % 3]
    return "register", lambda: registry.register(project, model=MODEL, variant=variant)


def stale_ref_locks(project: Path) -> int:
    git_dir = project / ".git"
    return len(list((git_dir / "refs").rglob("*.lock"))) + (git_dir / "packed-refs.lock").exists()


def kill_points(points: int, template: Path, folder: Path, keys: dict[str, Path]) -> dict[str, Any]:
    """``points`` writes killed at a random time; after each the registry must open and verify."""
    seed = int(os.environ.get("EDGEKIT_KILL_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    errors = folder / "child-error.txt"
    durations: dict[str, float] = {}
    streak: Counter = Counter()   # kills in a row, per kind
    stats: Counter = Counter()
    project, events, exclusive = None, [], frozenset()
    # A fresh copy of the project every 25 points keeps the log short, so that verifying after every
    # point (every approval's signature is checked again) stays cheap.
    for step in range(points):
        if step % 25 == 0:
            if project is not None:
                finish_segment(project, keys, step, seed)
            project = copy(template, folder / f"project-{step}")
            exclusive, events = Registry.open(project).lifecycle().exclusive, []
        kind, operation = next_operation(project, step, keys, fold(events, exclusive))
        while kind not in durations:  # each kind measured once, run to completion
            started = time.perf_counter()
            operation()
            durations[kind] = time.perf_counter() - started
            events = Registry.open(project).log.events()
            kind, operation = next_operation(project, step, keys, fold(events, exclusive))
        before = len(events)
        # Over 1.25 times the measured duration: on an idle machine the operations run faster than when they were
        # measured, and once in CI all 200 kills landed before the append; some must land in and after it.
        delay = 0.0 if rng.random() < 0.1 else rng.uniform(0, 1.25 * durations[kind])
        killed = run_and_kill(operation, delay, errors)
        stats[f"{kind} {'killed' if killed else 'finished'}"] += 1
        # A duration measured short (once in CI a registration measured 0.056 s ran 0.2 s in the children) would kill
        # every write before its end, and killed registrations leave nothing to approve or promote: after 5 kills in
        # a row, a kind's delays are drawn over twice the time.
        streak[kind] = streak[kind] + 1 if killed else 0
        if streak[kind] >= 5:
            durations[kind], streak[kind] = durations[kind] * 2, 0
        stats["stale ref locks left"] += stale_ref_locks(project)
        context = f"seed {seed} (EDGEKIT_KILL_SEED={seed} reproduces it), point {step}, {kind} killed after {delay:.3f}s"
        events = Registry.open(project).log.events()
        assert len(events) in (before, before + 1), context
        if len(events) == before + 1:
            assert events[-1]["type"] == kind, context
            stats["written"] += 1
        assert registry.show(project)["head"]["seq"] == len(events), context
        report = verify(project, raise_on_problem=False)
        assert report["ok"], f"{context}: {report['problems']}"
        if report["tags_pending"]:  # only the last event's, which the next write makes
            assert set(report["tags_pending"]) <= {t["name"] for t in events[-1].get("tags", [])}, context
            stats["tags pending"] += 1
    finish_segment(project, keys, points, seed)
    return {"seed": seed, "durations": durations, **stats}


def finish_segment(project: Path, keys: dict[str, Path], step: int, seed: int) -> None:
    """One more write, run to completion, succeeds after the kills and leaves no tag pending."""
    kind, operation = next_operation(project, step + 1, keys)
    operation()
    report = verify(project)
    assert report["tags_pending"] == [], f"seed {seed}: {kind} did not repair the tags: {report['tags_pending']}"


@pytest.mark.parametrize("points", [200, pytest.param(1000, marks=pytest.mark.slow)])
def test_kill_9_at_any_point_leaves_a_registry_that_verifies(points, request, registry_template, registry_keys, tmp_path, monkeypatch):
    if points > 200 and "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("1,000 kill points run with -m slow")
    # The kills are about the writes; registration's read-only `dvc status` (a second of each registration,
    # tested in test_registry.py) is taken as clean, so more of the 200 points land inside writes.
    monkeypatch.setattr("edgekit.registry.record.dvc_status", lambda project: {})
    started = time.perf_counter()
    stats = kill_points(points, registry_template, tmp_path, registry_keys)
    save_stats(f"kill {points}", {**stats, "seconds": round(time.perf_counter() - started, 1)})
    killed = sum(v for k, v in stats.items() if k.endswith(" killed"))
    assert killed >= points // 4, stats  # delays are drawn over durations measured once, under varying load
    assert stats.get("written", 0) > 0 and killed > stats.get("written", 0) // 2, stats


# --- 3. 32 processes writing one clone ---------------------------------------------------------------

VERSIONS = ("v1.0.0", "v1.1.0", "v1.2.0")


def random_writer(args: tuple[str, int, int]) -> list[tuple[str, str]]:
    """``operations`` promotions and rollbacks, each chosen valid for the state the writer just read, so what
    decides its outcome is the race: ``("ok", event hash)``, ``("conflict", "")``, ``("refused", error class)``
    (another writer moved the version first) or ``("error", traceback)``."""
    project, seed, operations = args
    rng, outcomes = random.Random(seed), []
    for _ in range(operations):
        try:
            movable = [v.version for v in Registry.open(project).state().of_model(MODEL) if v.stage in (None, "staging")]
            if movable and rng.random() < 0.6:
                done = registry.promote(project, ref(rng.choice(movable)))
            else:
                done = registry.rollback(project, MODEL, reason="race")
            outcomes.append(("ok", done["event"]["hash"]))
        except ConflictError:
            outcomes.append(("conflict", ""))
        except RegistryError as exc:
            outcomes.append(("refused", type(exc).__name__))
        except Exception:
            outcomes.append(("error", traceback.format_exc()))
    return outcomes


def warn_only_policy(project: Path) -> None:
    """The same policy with every gate a warning, committed: every version can reach production, so the
    writers keep promoting and rolling back instead of all being refused."""
    policy = project / "policy.yaml"
    text = policy.read_text().replace("action: block", "action: warn").replace("version: 1.2.0", "version: 1.2.1-race")
    assert "action: warn" in text and "action: block" not in text
    policy.write_text(text)
    commit_all(project, "policy: gates warn only (concurrency test)")


def test_32_concurrent_writers_lose_nothing_and_keep_exclusive_stages(registry_project, registry_keys):
    project = registry_project
    warn_only_policy(project)
    for variant in ("ort-int8", "olive-int8", "ort-fp32"):
        registry.register(project, model=MODEL, variant=variant)
    for version in VERSIONS:
        registry.approve(project, ref(version), stage="production", key=registry_keys["alice"])
    initial = len(Registry.open(project).log.stored())
    seed = random.SystemRandom().randrange(2**32)

    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(32) as pool:
        results = pool.map(random_writer, [(str(project), seed + worker, 50) for worker in range(32)], chunksize=1)
    elapsed = time.perf_counter() - started
    outcomes = [o for worker in results for o in worker]
    counts = Counter(kind for kind, _ in outcomes)
    context = f"seed {seed}, {dict(counts)}, {elapsed:.0f}s"
    assert len(outcomes) == 32 * 50
    assert counts["error"] == 0, f"{context}: {next(detail for kind, detail in outcomes if kind == 'error')}"
    assert counts["ok"] > 0 and counts["conflict"] > 0, f"{context}: the writers did not race"
    save_stats("concurrency", {**counts, "seconds": round(elapsed, 1)})

    events = Registry.open(project).log.events()
    hashes = Counter(event_hash(e) for e in events)
    written = [h for kind, h in outcomes if kind == "ok"]
    assert all(hashes[h] == 1 for h in written), context
    assert len(events) == initial + len(written), context
    report = verify(project, raise_on_problem=False)
    assert report["ok"], f"{context}: {report['problems'][:5]}"
    lifecycle = Registry.open(project).lifecycle()
    state = State()
    for event in events:
        apply(state, event, event_hash(event), lifecycle.exclusive)
        for stage in lifecycle.exclusive:
            holders = [v.version for v in state.versions.values() if v.stage == stage]
            assert len(holders) <= 1, f"{context}: after event {event['seq']} {stage} holds {holders}"
