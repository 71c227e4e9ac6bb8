"""Verify a registry: the hash chain, every event against the state before it, every signature, every
record digest, every GTO tag against the event it stands for, and the tail against a checkpoint.

What each check catches (the tamper corpus in tests/test_registry_robustness.py mutates every event each way):
an edited event breaks the next event's ``prev`` (or, for the last one, its tags' event hash, its
signature, or the checkpoint); a deleted, inserted, duplicated or reordered event breaks the sequence and
the chain; a forged signature fails ``ssh-keygen -Y verify``; a truncated tail leaves tags naming events
the log no longer has, and misses the checkpoint, which a writer cannot rewrite when it is kept outside
its reach (a protected tag on the remote, or CI's artifact: README, "The audit log").

Example:
    >>> verify(".", checkpoint={"seq": 12, "hash": "3f2a…"})["events"]
    12
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from edgekit.registry import signing
from edgekit.registry.core import Registry, tag_message
from edgekit.registry.errors import RegistryError, SignatureError, TamperError
from edgekit.registry.events import GENESIS, event_hash, signed_payload
from edgekit.registry.gitobjects import existing_tags
from edgekit.registry.lifecycle import Lifecycle
from edgekit.registry.state import OBSERVATIONS, State, apply

_COMMON = {"seq", "prev", "type", "model", "time", "actor"}
_FIELDS = {"register": {"version", "variant", "commit", "tag_commit", "record_sha256", "tags"},
           "promote": {"version", "stage", "moves", "tags"}, "rollback": {"version", "stage", "moves", "tags"},
           "archive": {"version", "stage", "moves", "tags"}, "approve": {"version", "stage", "record_sha256", "signature", "signer"},
           "ramp": {"version", "against", "outcome", "record_sha256", "evidence"}, "telemetry": {"version", "record_sha256", "summary"}}


def verify(project: str | Path = ".", checkpoint: dict[str, Any] | None = None, raise_on_problem: bool = True) -> dict[str, Any]:
    """Check the whole log; return what was checked, or raise naming every problem.

    Args:
        checkpoint: ``{"seq": N, "hash": H}`` of an event kept outside the writer's reach.

    Raises:
        TamperError: with ``problems``, one per failing event (sequence number, hash and what is wrong).
    """
    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    stored = registry.log.stored()
    problems: list[dict[str, Any]] = []
    events = _chain(stored, problems)
    state = _replay(registry, lifecycle, events, problems)
    pending = _tags(registry, state, events, problems)
    if checkpoint:
        _checkpoint(events, checkpoint, problems)
    report = {"events": len(stored), "head": {"seq": events[-1]["seq"], "hash": event_hash(events[-1])} if events else None,
              "signatures": sum("signature" in e for e in events), "tags": len(state.tags), "tags_pending": pending,
              "checkpoint": checkpoint, "problems": problems, "ok": not problems}
    if problems and raise_on_problem:
        raise TamperError(problems)
    return report


def _problem(problems: list, seq: Any, hash_: str | None, text: str) -> None:
    problems.append({"seq": seq, "hash": hash_, "problem": text})


def _chain(stored: list, problems: list) -> list[dict[str, Any]]:
    """The events whose place in the chain holds: sequence numbers 1, 2, … and each ``prev`` the hash before."""
    events, previous = [], GENESIS
    for position, item in enumerate(stored, start=1):
        event = item.event
        if event is None:
            _problem(problems, position, None, f"commit {item.commit[:12]} is not an event (edited or inserted)")
            continue
        hash_ = event_hash(event)
        if event.get("seq") != position:
            kind = "duplicated" if any(event_hash(e) == hash_ for e in events) else "deleted, inserted or reordered around it"
            _problem(problems, event.get("seq"), hash_, f"is at position {position} of the log: an event was {kind}")
        elif event.get("prev") != previous:
            _problem(problems, position - 1, previous, f"event {position - 1} was edited: event {position} follows hash {str(event.get('prev'))[:12]}…, "
                                                        f"event {position - 1} hashes to {previous[:12]}…")
        missing = (_COMMON | _FIELDS.get(event.get("type"), set())) - set(event)
        if missing or event.get("type") not in _FIELDS:
            _problem(problems, event.get("seq"), hash_, f"type {event.get('type')!r} or fields {sorted(missing)} missing: edited")
            previous = hash_
            continue
        events.append(event)
        previous = hash_
    return events


def _replay(registry: Registry, lifecycle: Lifecycle, events: list[dict[str, Any]], problems: list) -> State:
    """Apply each event to the state before it, refusing what the registry itself would have refused."""
    state, records = State(), _record_digests(registry, events)
    signers, holders, seen = registry.allowed_signers(lifecycle), {}, {}
    for event in events:
        hash_ = event_hash(event)
        seen[event["seq"]] = event
        try:
            _check_event(state, event, lifecycle, records)
            _check_approvals(state, event, seen)
            _check_signature(event, signers)
            apply(state, event, hash_, lifecycle.exclusive)
        except (RegistryError, KeyError, TypeError) as exc:
            _problem(problems, event["seq"], hash_, f"{event['type']} {event['model']}@{event.get('version')}: {exc}")
            continue
        _check_exclusive(holders, event, lifecycle, problems, hash_)
        if lifecycle.sign == "all" and "signature" not in event:  # a breach of policy, not of the state: replayed
            _problem(problems, event["seq"], hash_, f"{event['type']} {event['model']}@{event.get('version')}: "
                                                    "is not signed, and the policy's lifecycle.sign is all")
    return state


def _check_event(state: State, event: dict[str, Any], lifecycle: Lifecycle, records: dict[str, str | None]) -> None:
    model, version = event["model"], event["version"]
    for tag in event.get("tags", []):
        if "date" in tag and not (isinstance(tag["date"], int) and tag["date"] > state.tag_dates.get(model, 0)):
            raise RegistryError(f"tag {tag['name']} is dated {tag['date']!r}, not after {model}'s previous tags "
                                f"({state.tag_dates.get(model, 0)}): GTO would read the stages out of order")
    if event["type"] == "register":
        if (model, version) in state.versions:
            raise RegistryError(f"{model}@{version} registered twice")
        if records.get(event["tag_commit"]) != event["record_sha256"]:
            raise RegistryError("the record in its declaration commit does not match record_sha256")
        return
    entry = state.version(model, version)
    if event["type"] == "approve":
        if event["record_sha256"] != entry.record_sha256:
            raise RegistryError("approves a record the version does not have")
        return
    if event["type"] in OBSERVATIONS:
        if event["record_sha256"] != entry.record_sha256:
            raise RegistryError(f"records a {event['type']} of a record the version does not have")
        return
    for move in event["moves"]:
        moved = state.version(model, move["version"])
        if move["from"] != moved.stage:
            raise RegistryError(f"moves {move['version']} from {move['from']} but it is in {moved.stage}")
    if event["type"] == "promote" and lifecycle.next_stage(entry.stage) != event["stage"]:
        raise RegistryError(f"promotes from {entry.stage} to {event['stage']}, out of the lifecycle's order")


def _check_approvals(state: State, event: dict[str, Any], seen: dict[int, dict[str, Any]]) -> None:
    """A promotion names the approvals it counted: each must be an earlier signed approval of this very record
    for this stage, and there must be as many distinct signers as the promotion said the policy required."""
    if event["type"] != "promote":
        return
    entry, principals = state.version(event["model"], event["version"]), set()
    for approval in event.get("approvals", []):
        found = seen.get(approval.get("seq"))
        if (not found or found["type"] != "approve" or found["seq"] >= event["seq"] or found["version"] != event["version"]
                or found["stage"] != event["stage"] or found["record_sha256"] != entry.record_sha256):
            raise RegistryError(f"counts approval {approval.get('seq')}, which is not a signed approval of this version for {event['stage']}")
        principals.add(found["signer"]["principal"])
    if len(principals) < int(event.get("approvals_required", 0)):
        raise RegistryError(f"was promoted with {len(principals)} signed approval(s); it required {event['approvals_required']}")


def _check_signature(event: dict[str, Any], signers: Path) -> None:
    if "signature" not in event:
        return
    try:
        found = signing.verify(signed_payload(event), event["signature"], signers)
    except SignatureError as exc:
        raise RegistryError(f"signature: {exc.message}") from exc
    if found != event.get("signer"):
        raise RegistryError(f"signer {event.get('signer')} is not the key's principal {found}")


def _check_exclusive(holders: dict[tuple[str, str], set[str]], event: dict[str, Any], lifecycle: Lifecycle, problems: list,
                     hash_: str) -> None:
    """Track who holds each exclusive stage move by move; more than one holder after an event is a problem."""
    for move in event.get("moves", []):
        holders.get((event["model"], move["from"]), set()).discard(move["version"])
        if move["to"] in lifecycle.exclusive:
            holders.setdefault((event["model"], move["to"]), set()).add(move["version"])
    for stage in {move["to"] for move in event.get("moves", [])} & lifecycle.exclusive:
        versions = holders[event["model"], stage]
        if len(versions) > 1:
            _problem(problems, event["seq"], hash_, f"leaves {len(versions)} versions in exclusive stage {stage}: {', '.join(sorted(versions))}")


def _record_digests(registry: Registry, events: list[dict[str, Any]]) -> dict[str, str | None]:
    """sha256 of each registration's record, read in one ``git cat-file --batch``."""
    from edgekit.registry.gitobjects import record_path

    wanted = {e["tag_commit"]: f"{e['tag_commit']}:{record_path(registry.prefix, e['model'], e['version'])}"
              for e in events if e.get("type") == "register" and isinstance(e.get("tag_commit"), str)}
    contents = registry.repo.objects(list(wanted.values()))
    return {commit: hashlib.sha256(data).hexdigest() if data is not None else None for commit, data in zip(wanted, contents, strict=True)}


def _tags(registry: Registry, state: State, events: list[dict[str, Any]], problems: list) -> list[str]:
    """Every tag the log made must point where its event says and name that event; a GTO tag of a
    registered model that the log does not know means the log lost events. Missing tags are pending (a
    writer killed between its append and its tags; the next write makes them)."""
    present = existing_tags(registry.repo)
    by_seq = {e["seq"]: e for e in events}
    pending = []
    for name, (target, seq, hash_) in state.tags.items():
        if name not in present:
            pending.append(name)
            continue
        actual, message = present[name]
        tag = next(t for t in by_seq[seq]["tags"] if t["name"] == name)
        if actual != target or message.strip() != tag_message(by_seq[seq], tag, hash_).strip():
            _problem(problems, seq, hash_, f"tag {name} does not match its event (edited event or moved tag)")
    models = set(state.models())
    for name, (_, message) in present.items():
        if name not in state.tags and _tag_model(name) in models:
            _problem(problems, _event_seq(message), None, f"tag {name} names an event the log does not have: the log was truncated or edited")
    return pending


def _tag_model(name: str) -> str:
    return name.split("@", 1)[0].split("#", 1)[0]


def _event_seq(message: str) -> int | None:
    for line in message.splitlines():
        if line.startswith("edgekit-event: "):
            return int(line.split()[1])
    return None


def _checkpoint(events: list[dict[str, Any]], checkpoint: dict[str, Any], problems: list) -> None:
    seq, expected = int(checkpoint["seq"]), checkpoint["hash"]
    if seq > len(events):
        _problem(problems, seq, expected, f"the checkpoint names event {seq}, the log ends at {len(events)}: its tail was truncated")
    elif seq > 0 and event_hash(events[seq - 1]) != expected:
        _problem(problems, seq, expected, f"event {seq} is not the one the checkpoint holds: the log was rewritten up to it")
