"""The registry's event log: one git commit per event on ``refs/edgekit/registry``, each event a JSON
object with a sequence number and the sha256 of the event before it. Order is the chain, never a clock.

A write is a compare-and-swap of the ref (``git update-ref <ref> <new> <old>``) under the clone's lock, so
of two writers who read the same head one appends and the other gets a ``ConflictError``; a git push of
the ref is the same compare-and-swap on the remote (a rejected non-fast-forward).

Example:
    >>> log = EventLog(GitRepo.find(Path(".")))
    >>> head = log.head()
    >>> log.append({"type": "register", "model": "minilm", ...}, expected=head)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from edgekit.registry.errors import ConflictError, RegistryError
from edgekit.registry.gitrepo import EMPTY_TREE, GitRepo

REF = "refs/edgekit/registry"
GENESIS = "0" * 64
_SEPARATOR = "\x1e"
_CACHE = "edgekit-registry-events.marshal"


def canonical(payload: dict[str, Any]) -> bytes:
    """The bytes an event is hashed and signed as: sorted keys, no spaces, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def signed_payload(event: dict[str, Any]) -> bytes:
    """What a signature covers: the whole event (its place in the chain too) but the signature and the signer,
    which is found from the signature."""
    return canonical({k: v for k, v in event.items() if k not in ("signature", "signer")})


def load_cache(repo: GitRepo, name: str) -> Any:
    """A cache file in the git dir, or None when it is missing or unreadable (a cache is only ever a shortcut)."""
    try:
        return marshal.loads((repo.git_dir / name).read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None


def save_cache(repo: GitRepo, name: str, data: Any) -> None:
    """Atomically (temporary file, then rename); a cache that cannot be written is only a slower next read."""
    with contextlib.suppress(OSError, ValueError):
        fd, tmp = tempfile.mkstemp(dir=repo.git_dir, prefix=name + ".")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(marshal.dumps(data))
            os.replace(tmp, repo.git_dir / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


@dataclass(frozen=True)
class Head:
    """The log's last event as a writer saw it: its commit, sequence number and hash (None: empty log)."""

    commit: str | None
    seq: int
    hash: str


@dataclass(frozen=True)
class StoredEvent:
    commit: str
    event: dict[str, Any] | None  # None: the commit's message is not an event (a tampered log)
    raw: str


class EventLog:
    """Read and append the events of one clone's registry."""

    def __init__(self, repo: GitRepo, ref: str = REF):
        self.repo, self.ref = repo, ref
        self.hashes: list[str] = []  # event_hash of each event the last events() returned
        self.read_commit: str | None = None  # the head commit the last events() read up to

    def stored(self, since: str | None = None, head: str | None = None) -> list[StoredEvent]:
        """Every commit of the log (after ``since``, up to ``head``), oldest first, with its parsed event."""
        head = head or self.repo.resolve(self.ref)
        if head is None:
            return []
        text = self.repo.out("log", "--reverse", f"--format=%H%n%B{_SEPARATOR}", f"{since}..{head}" if since else head)
        return [_parse(chunk) for chunk in text.split(_SEPARATOR) if chunk.strip()]

    def events(self) -> list[dict[str, Any]]:
        """The events, oldest first. Parsed events are cached in the git dir keyed by the log's head commit
        (a commit names its whole history, so the cache holds for that head); only commits after the cached
        head are read. ``verify`` reads ``stored()``, never the cache."""
        head = self.read_commit = self.repo.resolve(self.ref)
        if head is None:
            self.hashes = []
            return []
        cached = self._load_cache()
        if cached and cached["head"] == head:
            events, self.hashes = cached["events"], cached["hashes"]
            return events
        since = cached["head"] if cached and self._is_ancestor(cached["head"], head) else None
        new = self._checked(self.stored(since, head))
        events = (cached["events"] if since else []) + new
        hashes = (cached["hashes"] if since else []) + [event_hash(e) for e in new]
        self._save_cache(head, events, hashes)
        self.hashes = hashes
        return events

    def _checked(self, stored: list[StoredEvent]) -> list[dict[str, Any]]:
        broken = [s for s in stored if s.event is None]
        if broken:
            raise RegistryError(f"the registry log holds a commit that is not an event: {broken[0].commit[:12]}",
                                "run `edgekit registry verify` to see what was changed")
        return [s.event for s in stored]

    def _is_ancestor(self, older: str, newer: str) -> bool:
        return self.repo.git("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def _load_cache(self) -> dict[str, Any] | None:
        data = load_cache(self.repo, _CACHE)
        ok = isinstance(data, dict) and data.get("ref") == self.ref and len(data.get("events", ())) == len(data.get("hashes", ()))
        return data if ok else None

    def _save_cache(self, head: str, events: list[dict[str, Any]], hashes: list[str]) -> None:
        save_cache(self.repo, _CACHE, {"ref": self.ref, "head": head, "events": events, "hashes": hashes})

    def events_at(self, head: Head, seqs: list[int]) -> dict[int, dict[str, Any]]:
        """The events numbered ``seqs`` in the log ending at ``head``, read as ``head.commit~k`` (the log is one
        commit per event on a line), without reading the rest of the log."""
        names = [f"{head.commit}~{head.seq - seq}" for seq in seqs if 0 < seq <= head.seq]
        found = {}
        for data in self.repo.objects(names) if head.commit else []:
            message = data.split(b"\n\n", 1)[-1] if data is not None else b""  # a commit: headers, a blank line, the message
            with contextlib.suppress(ValueError):
                event = json.loads(message)
                if isinstance(event, dict):
                    found[event.get("seq")] = event
        return found

    def head(self, events: list[dict[str, Any]] | None = None) -> Head:
        """The last event with the commit it was read from. ``events`` must be what ``events()`` just returned:
        the commit is the one that read used, never a second look at the ref (with 32 writers, another one
        appended in between, and a new event was chained to a commit whose event it had not seen)."""
        if events is None:
            events = self.events()
        if not events:
            return Head(None, 0, GENESIS) if self.read_commit is None else Head(self.read_commit, 0, GENESIS)
        return Head(self.read_commit, events[-1]["seq"], event_hash(events[-1]))

    def next_event(self, head: Head, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` placed after ``head``: its sequence number and the previous event's hash added."""
        return {**fields, "seq": head.seq + 1, "prev": head.hash}

    def append(self, event: dict[str, Any], expected: Head) -> Head:
        """Write ``event`` after ``expected``; the caller holds ``repo.lock()``.

        Raises:
            ConflictError: the log's head is no longer ``expected`` (another writer was first).
        """
        if event["seq"] != expected.seq + 1 or event["prev"] != expected.hash:
            raise RegistryError(f"event {event['seq']} does not follow event {expected.seq}", "build it with next_event()")
        parents = ["-p", expected.commit] if expected.commit else []
        commit = self.repo.out("commit-tree", EMPTY_TREE, *parents, input=canonical(event).decode())
        done = self.repo.git("update-ref", self.ref, commit, expected.commit or "0" * 40, check=False)
        if done.returncode:
            raise ConflictError(f"the registry changed while this {event['type']} was prepared (it expected event {expected.seq} last)",
                                "nothing was written; look at `edgekit registry history` and run the command again")
        return Head(commit, event["seq"], event_hash(event))


def _parse(chunk: str) -> StoredEvent:
    commit, _, body = chunk.strip("\n").partition("\n")
    body = body.strip()
    try:
        event = json.loads(body)
    except json.JSONDecodeError:
        event = None
    return StoredEvent(commit, event if isinstance(event, dict) else None, body)
