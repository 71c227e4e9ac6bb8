"""One clone's registry: its log, the policy's lifecycle as committed at HEAD, and the writes.

Every write reads the state, prepares its event (gates, signatures, the declaration commit: the slow
part, unlocked), then under the clone's lock appends it only if the log's head is still the one it read,
creates the event's GTO tags and, when asked, pushes the log and tags to the remote in one atomic push.

Example:
    >>> registry = Registry.open(Path("."))
    >>> registry.state().occupant("minilm", "production")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import ConfigError
from edgekit.registry import gitobjects, signing
from edgekit.registry.errors import ConflictError, RegistryError, SignatureError
from edgekit.registry.events import REF, EventLog, Head, event_hash, load_cache, save_cache, signed_payload
from edgekit.registry.gitrepo import GitRepo, configured
from edgekit.registry.lifecycle import Lifecycle, lifecycle_from_mapping
from edgekit.registry.state import State, apply, fold

if TYPE_CHECKING:
    from edgekit.decide.policy import Policy

PARAMS_FILE = "params.yaml"


def now_iso() -> str:
    """Event times are data for people and expiry dates; the log is ordered by sequence, never by these."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def now_epoch() -> int:
    return int(time.time())


def tag_date(state: State, model: str, now: int) -> int:
    """The date of an event's tags: GTO orders a model's tags by date, to the second, so each event's tags are
    dated one second after the model's previous tags at least (a promotion and a rollback in one second would
    otherwise read in either order)."""
    return max(now, state.tag_dates.get(model, 0) + 1)


def tag_message(event: dict[str, Any], tag: dict[str, Any], hash_: str) -> str:
    """GTO's wording on the first line; the event the tag stands for on the last, so a tag left behind by
    a truncated log still names its event."""
    what = {"register": f"Registering artifact {event['model']} version {event['version']}"}.get(
        event["type"], f"{event['type'].capitalize()}: artifact {event['model']} version {tag.get('version', event['version'])}, {tag['name']}")
    return f"{what}\n\nedgekit-event: {event['seq']} {hash_}\n"


_STATE_CACHE = "edgekit-registry-state.marshal"


@dataclass
class Snapshot:
    """The state as of ``head``, folded with the lifecycle's ``exclusive`` stages. The events it was folded
    from are kept when they were read (``_events``); from the state cache, they are not."""

    head: Head
    state: State
    exclusive: frozenset[str]
    log: EventLog
    _events: list[dict[str, Any]] | None = None

    def events_at(self, seqs: list[int]) -> dict[int, dict[str, Any]]:
        """The events numbered ``seqs``, without reading the whole log when it has not been read."""
        if self._events is not None:
            return {seq: self._events[seq - 1] for seq in seqs if 0 < seq <= len(self._events)}
        return self.log.events_at(self.head, seqs)


class Registry:
    """The registry of the git repository holding ``project``."""

    def __init__(self, project: Path, repo: GitRepo):
        self.project, self.repo = project, repo
        self.log = EventLog(repo)
        self.prefix = "." if project == repo.root else str(project.relative_to(repo.root))
        self._policies: dict[str, tuple[str, bytes]] = {}
        self._parsed: dict[str, Any] = {}

    @classmethod
    def open(cls, project: str | Path = ".") -> Registry:
        project = Path(project).resolve()
        return cls(project, GitRepo.find(project))

    # -- what is committed -------------------------------------------------------------------------
    def policy_file(self) -> str:
        """params.yaml's ``policy.file`` (read without validating the rest: listing the registry needs no runtime)."""
        import yaml

        try:
            raw = _load_yaml((self.project / PARAMS_FILE).read_bytes()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RegistryError(f"cannot read {self.project / PARAMS_FILE}: {exc}", "run `edgekit check` in the project") from exc
        name = (raw.get("policy") or {}).get("file", "policy.yaml") if isinstance(raw, dict) else "policy.yaml"
        if not isinstance(name, str) or not name:
            raise ConfigError("policy.file", name, "the path of the policy file, e.g. policy.yaml")
        return name

    def policy_bytes(self, rev: str = "HEAD") -> tuple[str, bytes]:
        """The policy file as committed at ``rev`` (never the workspace's copy), read once per instance."""
        if rev not in self._policies:
            name = self.policy_file()
            data = self.repo.show(rev, gitobjects._join(self.prefix, name))
            if data is None:
                raise RegistryError(f"{name} is not committed at {rev}", "commit the policy file: the registry reads it from git")
            self._policies[rev] = (name, data)
        return self._policies[rev]

    def policy_mapping(self, rev: str = "HEAD") -> Any:
        """The committed policy file, parsed (with libyaml) once per instance."""
        import yaml

        name, data = self.policy_bytes(rev)
        if rev not in self._parsed:
            try:
                self._parsed[rev] = _load_yaml(data)
            except yaml.YAMLError as exc:
                raise ConfigError("<file>", name, f"valid YAML ({exc})".replace("\n", " "), name) from exc
        return self._parsed[rev]

    def policy(self, rev: str = "HEAD") -> Policy:
        """The gates, parsed from the mapping ``lifecycle()`` read too; identified by the file's sha256."""
        import hashlib

        from edgekit.decide.policy import parse_policy

        name, data = self.policy_bytes(rev)
        return parse_policy(self.policy_mapping(rev), name, hashlib.sha256(data).hexdigest())

    def lifecycle(self) -> Lifecycle:
        """The policy's ``lifecycle:`` section; its gates are parsed only when a promotion needs them."""
        raw = self.policy_mapping()
        return lifecycle_from_mapping(raw.get("lifecycle") if isinstance(raw, dict) else None, self.policy_bytes()[0])

    def allowed_signers(self, lifecycle: Lifecycle) -> Path:
        return self.project / lifecycle.allowed_signers

    # -- reading ---------------------------------------------------------------------------------
    def snapshot(self, lifecycle: Lifecycle | None = None) -> Snapshot:
        """The state at the log's head: from the state cache when it was saved for that head commit (a commit
        names its whole history) and the same exclusive stages, else folded from the events and cached."""
        exclusive = (lifecycle or self.lifecycle()).exclusive
        cached = load_cache(self.repo, _STATE_CACHE)
        if isinstance(cached, dict) and cached.get("ref") == REF and cached.get("exclusive") == sorted(exclusive):
            with contextlib.suppress(KeyError, TypeError, ValueError, IndexError):
                commit, seq, hash_ = cached["head"]
                if commit == self.repo.resolve(REF):
                    return Snapshot(Head(commit, seq, hash_), State.from_plain(cached["state"]), exclusive, self.log)
        events = self.log.events()
        snap = Snapshot(self.log.head(events), fold(events, exclusive, self.log.hashes), exclusive, self.log, events)
        self._cache_state(snap.head, snap.state, exclusive)
        return snap

    def _cache_state(self, head: Head, state: State, exclusive: frozenset[str]) -> None:
        if head.commit is not None:
            save_cache(self.repo, _STATE_CACHE, {"ref": REF, "exclusive": sorted(exclusive),
                                                 "head": [head.commit, head.seq, head.hash], "state": state.to_plain()})

    def state(self) -> State:
        return self.snapshot().state

    def record(self, tag_commit: str, model: str, version: str) -> bytes:
        data = self.repo.show(tag_commit, gitobjects.record_path(self.prefix, model, version))
        if data is None:
            raise RegistryError(f"the record of {model}@{version} is missing from commit {tag_commit[:12]}",
                                "fetch the registry's tags (git fetch --tags) or run `edgekit registry verify`")
        return data

    # -- writing ---------------------------------------------------------------------------------
    def new_event(self, snap: Snapshot, fields: dict[str, Any]) -> dict[str, Any]:
        """The event after ``snap``'s head; its tags carry their date (``tag_date``)."""
        if fields.get("tags"):
            date = tag_date(snap.state, fields["model"], now_epoch())
            fields = {**fields, "tags": [{**tag, "date": date} for tag in fields["tags"]]}
        return self.log.next_event(snap.head, {**fields, "time": now_iso(), "actor": _actor(self.repo)})

    def signed(self, event: dict[str, Any], key: str | Path | None, lifecycle: Lifecycle) -> dict[str, Any]:
        """``event`` signed with ``key`` when one is given; without one, refused if the policy signs every event."""
        if key:
            return self.sign(event, Path(key), lifecycle)
        if lifecycle.sign == "all":
            raise SignatureError(f"{self.policy_bytes()[0]} has lifecycle.sign: all, so every registry event is signed",
                                 "pass --key with your SSH private key (its public key in the allowed signers)")
        return event

    def sign(self, event: dict[str, Any], key: Path, lifecycle: Lifecycle) -> dict[str, Any]:
        """``event`` with its signature and the signer the allowed signers file names for the key."""
        payload = signed_payload(event)
        signature = signing.sign(payload, Path(key).expanduser())
        signer = signing.verify(payload, signature, self.allowed_signers(lifecycle))
        return {**event, "signature": signature, "signer": signer}

    def write(self, event: dict[str, Any], snap: Snapshot, push: str | None = None) -> dict[str, Any]:
        """Append ``event`` after ``snap``'s head, make its tags, push when ``push`` names a remote; then cache
        the state after it (``snap.state`` itself is left as it was).

        Raises:
            ConflictError: the log moved since ``snap`` was read, here or on the remote.
        """
        hash_, expected = event_hash(event), snap.head
        with self.repo.lock():
            self._repair_tags()
            written = self.log.append(event, expected)
            made = self._make_tags(event, hash_)
            if push:
                self._push(push, expected, written, made)
        after = snap.state.copy()
        apply(after, event, hash_, snap.exclusive)
        self._cache_state(written, after, snap.exclusive)
        return {"seq": event["seq"], "hash": hash_, "tags": [t["name"] for t in event.get("tags", [])]}

    def _make_tags(self, event: dict[str, Any], hash_: str) -> list[str]:
        """The event's GTO tags that do not exist yet; their names."""
        tags = [{**t, "message": tag_message(event, t, hash_)} for t in event.get("tags", [])]
        names = [t["name"] for t in tags]
        self.repo.remove_stale_locks([f"refs/tags/{name}" for name in names])
        return gitobjects.write_tags(self.repo, tags, gitobjects.tag_names(self.repo, names))

    def _repair_tags(self) -> None:
        """The last event's tags, if a writer was killed between its append and its tags. Every write repairs
        the last event before it appends, so no earlier event can lack one (and ``pull`` fetches tags with
        events); reading one commit keeps this O(1) at any size of log."""
        import json

        done = self.repo.git("log", "-1", "--format=%B", self.log.ref, check=False)
        try:
            event = json.loads(done.stdout) if done.returncode == 0 else None
        except json.JSONDecodeError:
            return  # not an event: `verify` reports it; tags are not made from it
        if isinstance(event, dict) and event.get("tags"):
            self._make_tags(event, event_hash(event))

    def _push(self, remote: str, expected: Head, written: Head, made: list[str]) -> None:
        refs = [f"{REF}:{REF}", *(f"refs/tags/{name}:refs/tags/{name}" for name in made)]
        done = self.repo.git("push", "--atomic", "--quiet", remote, *refs, check=False)
        if done.returncode == 0:
            return
        # Not published: undo the local append, so the clone matches the remote again and nothing is lost
        # from the shared history (the event never reached it).
        if expected.commit:
            self.repo.git("update-ref", REF, expected.commit, written.commit or "", check=False)
        else:
            self.repo.git("update-ref", "-d", REF, check=False)
        gitobjects.delete_tags(self.repo, made)
        rejected = "rejected" in done.stderr or "fetch first" in done.stderr or "non-fast-forward" in done.stderr
        if rejected:
            raise ConflictError(f"{remote} has registry events this clone does not (the push was rejected)",
                                f"nothing was written; run `edgekit registry pull --remote {remote}` and the command again")
        raise RegistryError(f"git push to {remote} failed: {done.stderr.strip()[-300:]}", "nothing was written; check the remote and retry")

    def pull(self, remote: str) -> dict[str, Any]:
        """Fetch the remote's log (fast-forward only) and tags."""
        with self.repo.lock():
            done = self.repo.git("fetch", "--quiet", remote, f"{REF}:{REF}", "refs/tags/*:refs/tags/*", check=False)
        if done.returncode:
            raise ConflictError(f"cannot fast-forward the registry from {remote}: {done.stderr.strip()[-300:]}",
                                "this clone has events the remote lacks: push them, or run `edgekit registry verify` on both")
        head = self.log.head()
        return {"remote": remote, "seq": head.seq, "hash": head.hash}

    def run_hook(self, stage: str, lifecycle: Lifecycle, env: dict[str, str]) -> dict[str, Any] | None:
        """The policy's deploy command for ``stage``, with the promoted version in EDGEKIT_* variables."""
        command = lifecycle.deploy.get(stage, "")
        if not command:
            return None
        import os

        done = subprocess.run(["bash", "-c", command], cwd=self.project, env={**os.environ, **env}, capture_output=True, text=True)
        return {"command": command, "returncode": done.returncode, "stdout": done.stdout[-2000:], "stderr": done.stderr[-2000:]}


def _load_yaml(data: bytes) -> Any:
    """Safe YAML, with libyaml's loader when PyYAML has it (ten times faster on params.yaml)."""
    import yaml

    return yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def _actor(repo: GitRepo) -> str:
    """Who ran the command, as git is configured: shown in history, never trusted (signatures are)."""
    return configured(repo.root, "user.email") or "unknown"
