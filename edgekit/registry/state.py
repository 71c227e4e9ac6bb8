"""The registry's state, folded from its events in sequence order: versions, the stage each is in, who
approved what, and the GTO tags each event stands for.

Example:
    >>> state = fold(EventLog(repo).events(), lifecycle)
    >>> state.occupant("minilm", "production")
    'v1.1.0'
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from edgekit.registry.errors import RegistryError

# Events that record what was seen of a version and change no stage: a server's ramp of a candidate (rolled
# back, or completed and followed by its promotion) and telemetry summaries from `edgekit monitor`.
OBSERVATIONS = ("ramp", "telemetry")


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

    def copy(self) -> State:
        """A state that ``apply`` can change without changing this one (``apply`` replaces a Version and an
        entries list rather than changing them, so copying the dicts is enough)."""
        return State(dict(self.versions), dict(self.stages), dict(self.entries), dict(self.tags), dict(self.counters),
                     dict(self.tag_dates))

    def to_plain(self) -> dict[str, Any]:
        """Built-in types only, for ``marshal`` (the registry's state cache); ``from_plain`` reverses it."""
        return {"versions": [tuple(v.__dict__.values()) for v in self.versions.values()],  # each Version's fields, in order
                "stages": self.stages, "entries": self.entries, "tags": self.tags, "counters": self.counters,
                "tag_dates": self.tag_dates}

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> State:
        versions = {(row[0], row[1]): Version(*row) for row in data["versions"]}
        return cls(versions, data["stages"], data["entries"], data["tags"], data["counters"], data["tag_dates"])


def apply(state: State, event: dict[str, Any], hash_: str, exclusive: frozenset[str]) -> None:
    """Change ``state`` by one event (already checked when it was written; ``verify`` re-checks). A Version or
    an entries list the event changes is replaced, never changed, so a ``State.copy()`` taken before is kept."""
    kind, model = event["type"], event["model"]
    if kind == "register":
        state.versions[model, event["version"]] = Version(model, event["version"], event["variant"], event["commit"],
                                                          event["tag_commit"], event["record_sha256"], event["seq"])
    elif kind == "approve":
        approval = {"principal": event["signer"]["principal"], "key": event["signer"]["key"], "seq": event["seq"]}
        entry = state.version(model, event["version"])
        approvals = {**entry.approvals, event["stage"]: [*entry.approvals.get(event["stage"], []), approval]}
        state.versions[model, event["version"]] = replace(entry, approvals=approvals)
    elif kind in ("promote", "rollback", "archive"):
        for moved in event.get("moves", []):
            _move(state, model, moved["version"], moved["to"], event, exclusive)
    elif kind in OBSERVATIONS:
        state.version(model, event["version"])  # an observation of a version that must exist; it moves nothing
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
    state.versions[model, version] = replace(entry, stage=to, entered_seq=event["seq"], entered_time=event["time"])
    if to in exclusive:
        state.stages[model, to] = version
    state.entries[model, to] = [*state.entries.get((model, to), []), version]


def fold(events: list[dict[str, Any]], exclusive: frozenset[str], hashes: list[str] | None = None) -> State:
    """``hashes``: each event's hash when the caller has them (the log's cache), else computed here."""
    from edgekit.registry.events import event_hash

    state = State()
    hashes = hashes if hashes is not None and len(hashes) == len(events) else [event_hash(e) for e in events]
    for event, hash_ in zip(events, hashes, strict=True):
        apply(state, event, hash_, exclusive)
    return state
