"""The registry's state, folded from its events in sequence order: versions, the stage each is in, who
approved what, and the GTO tags each event stands for.

Example:
    >>> state = fold(EventLog(repo).events(), lifecycle)
    >>> state.occupant("minilm", "production")
    'v1.1.0'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekit.registry.errors import RegistryError


@dataclass
class Version:
    model: str
    version: str
    variant: str
    commit: str          # the project commit the version was measured at
    tag_commit: str      # that commit plus the artifact declarations and the record; GTO's tags point here
    record_sha256: str
    registered_seq: int
    stage: str | None = None
    entered_seq: int = 0
    entered_time: str = ""
    approvals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "variant": self.variant, "stage": self.stage,
                "commit": self.commit, "tag_commit": self.tag_commit, "record_sha256": self.record_sha256,
                "registered_seq": self.registered_seq, "entered_seq": self.entered_seq, "entered_time": self.entered_time,
                "approvals": {stage: [a["principal"] for a in approvals] for stage, approvals in self.approvals.items()}}


@dataclass
class State:
    versions: dict[tuple[str, str], Version] = field(default_factory=dict)
    stages: dict[tuple[str, str], str] = field(default_factory=dict)       # (model, exclusive stage) → version
    entries: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (model, stage) → versions in the order they entered it
    tags: dict[str, tuple[str, int, str]] = field(default_factory=dict)    # GTO tag → (target commit, seq, event hash)
    counters: dict[str, int] = field(default_factory=dict)                 # model → highest GTO tag counter
    tag_dates: dict[str, int] = field(default_factory=dict)                # model → latest date of its tags (epoch s)

    def version(self, model: str, version: str) -> Version:
        found = self.versions.get((model, version))
        if found is None:
            known = sorted(v for m, v in self.versions if m == model)
            raise RegistryError(f"{model}@{version} is not registered",
                                f"registered versions of {model}: {', '.join(known)}" if known else
                                f"register it first: edgekit registry register --model {model}")
        return found

    def occupant(self, model: str, stage: str) -> str | None:
        return self.stages.get((model, stage))

    def models(self) -> list[str]:
        return sorted({m for m, _ in self.versions})

    def of_model(self, model: str) -> list[Version]:
        return sorted((v for (m, _), v in self.versions.items() if m == model), key=lambda v: v.registered_seq)


def apply(state: State, event: dict[str, Any], hash_: str, exclusive: frozenset[str]) -> None:
    """Change ``state`` by one event (already checked when it was written; ``verify`` re-checks)."""
    kind, model = event["type"], event["model"]
    if kind == "register":
        state.versions[model, event["version"]] = Version(model, event["version"], event["variant"], event["commit"],
                                                          event["tag_commit"], event["record_sha256"], event["seq"])
    elif kind == "approve":
        entry = {"principal": event["signer"]["principal"], "key": event["signer"]["key"], "seq": event["seq"]}
        state.version(model, event["version"]).approvals.setdefault(event["stage"], []).append(entry)
    elif kind in ("promote", "rollback", "archive"):
        for moved in event.get("moves", []):
            _move(state, model, moved["version"], moved["to"], event, exclusive)
    else:
        raise RegistryError(f"event {event['seq']} has an unknown type {kind!r}", "run `edgekit registry verify`")
    for tag in event.get("tags", []):
        state.tags[tag["name"]] = (tag["target"], event["seq"], hash_)
        state.counters[model] = max(state.counters.get(model, 0), tag.get("counter", 0))
        state.tag_dates[model] = max(state.tag_dates.get(model, 0), tag.get("date", 0))


def _move(state: State, model: str, version: str, to: str, event: dict[str, Any], exclusive: frozenset[str]) -> None:
    entry = state.version(model, version)
    if entry.stage in exclusive and state.stages.get((model, entry.stage)) == version:
        del state.stages[model, entry.stage]
    entry.stage, entry.entered_seq, entry.entered_time = to, event["seq"], event["time"]
    if to in exclusive:
        state.stages[model, to] = version
    state.entries.setdefault((model, to), []).append(version)


def fold(events: list[dict[str, Any]], exclusive: frozenset[str], hashes: list[str] | None = None) -> State:
    """``hashes``: each event's hash when the caller has them (the log's cache), else computed here."""
    from edgekit.registry.events import event_hash

    state = State()
    hashes = hashes if hashes is not None and len(hashes) == len(events) else [event_hash(e) for e in events]
    for event, hash_ in zip(events, hashes, strict=True):
        apply(state, event, hash_, exclusive)
    return state
