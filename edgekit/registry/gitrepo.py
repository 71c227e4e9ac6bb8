"""Git plumbing for the registry: one subprocess per call, no porcelain that reads the user's config
for anything but an identity to write tags with, and an exclusive lock per clone.

Example:
    >>> repo = GitRepo.find(Path("."))
    >>> repo.head()
    '0fef91b…'
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgekit.registry.errors import RegistryError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True)
class GitRepo:
    root: Path
    git_dir: Path

    @classmethod
    def find(cls, path: Path) -> GitRepo:
        """The git repository holding ``path``.

        Raises:
            RegistryError: ``path`` is not a folder inside a git work tree.
        """
        if not Path(path).is_dir():
            raise RegistryError(f"project folder {path} does not exist", "pass the project's folder with -C/--project")
        done = subprocess.run(["git", "rev-parse", "--show-toplevel", "--git-common-dir"], cwd=path,
                              capture_output=True, text=True)
        if done.returncode:
            raise RegistryError(f"{path} is not inside a git repository", "the registry lives in git: run `git init` and commit the project")
        top, common = done.stdout.splitlines()
        return cls(Path(top), (Path(path) / common).resolve() if not os.path.isabs(common) else Path(common))

    def git(self, *args: str, input: str | bytes | None = None, check: bool = True, env: dict[str, str] | None = None,
            text: bool = True) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **_identity_env(self.root), **(env or {})}
        done = subprocess.run(["git", *args], cwd=self.root, input=input, capture_output=True, text=text, env=full_env)
        if check and done.returncode:
            stderr = done.stderr if text else done.stderr.decode(errors="replace")
            raise RegistryError(f"git {' '.join(args[:3])} failed: {stderr.strip()}", "check the repository with `git status`")
        return done

    def out(self, *args: str, **kwargs) -> str:
        return self.git(*args, **kwargs).stdout.strip()

    def head(self) -> str:
        return self.out("rev-parse", "HEAD")

    def resolve(self, ref: str) -> str | None:
        """The object a ref names, or None when it does not exist."""
        done = self.git("rev-parse", "--verify", "--quiet", ref, check=False)
        return done.stdout.strip() or None

    def dirty(self) -> list[str]:
        """Tracked files changed and untracked files not ignored, as `git status --porcelain` lines."""
        # Not out(): its strip() would eat the first line's leading status column (" M policy.yaml").
        done = self.git("status", "--porcelain", "--untracked-files=normal")
        return [line for line in done.stdout.splitlines() if line]

    def objects(self, names: list[str]) -> list[bytes | None]:
        """Each object's content (None: missing), ``names`` as `git rev-parse` reads them, in one `cat-file --batch`."""
        if not names:
            return []
        data, position, found = self.git("cat-file", "--batch", input="".join(f"{n}\n" for n in names).encode(), text=False).stdout, 0, []
        for _ in names:
            header_end = data.index(b"\n", position)
            header = data[position:header_end].split()
            if header[-1] == b"missing" or header[-1] == b"ambiguous":
                found.append(None)
                position = header_end + 1
                continue
            size = int(header[2])
            found.append(data[header_end + 1:header_end + 1 + size])
            position = header_end + 1 + size + 1
        return found

    def show(self, rev: str, path: str) -> bytes | None:
        done = self.git("show", f"{rev}:{path}", check=False, text=False)
        return done.stdout if done.returncode == 0 else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across the processes of this clone; the kernel releases it when the holder dies.

        While it is held, a git ``.lock`` file of a ref only the registry writes (its log, packed-refs as
        `update-ref` may take it, and, through ``remove_stale_locks``, the tags it is about to make) can only
        be one a killed writer left, so it is removed (git itself would refuse every later update with
        "Unable to create ... File exists").
        """
        with open(self.git_dir / "edgekit-registry.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._unlink([self.git_dir / "packed-refs.lock", *(self.git_dir / "refs" / "edgekit").glob("*.lock")])
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def remove_stale_locks(self, refs: list[str]) -> None:
        """Remove the ``.lock`` files of ``refs`` (``refs/tags/x``); the caller holds ``lock()``."""
        self._unlink([self.git_dir / f"{ref}.lock" for ref in refs])

    @staticmethod
    def _unlink(paths: list[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _identity_env(root: Path) -> dict[str, str]:
    """A committer identity for the registry's own commits and tags when git has none configured.

    Who acted is never read from here: approvals carry their signer, taken from the signature.
    """
    env = {}
    for role in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{role}_NAME", os.environ.get(f"GIT_{role}_NAME") or configured(root, "user.name") or "edgekit registry")
        env.setdefault(f"GIT_{role}_EMAIL", os.environ.get(f"GIT_{role}_EMAIL") or configured(root, "user.email") or "registry@edgekit.invalid")
    return env


_CONFIG: dict[tuple[Path, str], str | None] = {}


def configured(root: Path, key: str) -> str | None:
    if (root, key) not in _CONFIG:
        done = subprocess.run(["git", "config", key], cwd=root, capture_output=True, text=True)
        _CONFIG[root, key] = done.stdout.strip() or None
    return _CONFIG[root, key]
