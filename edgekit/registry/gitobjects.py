"""What the registry writes into git besides its log: the declaration commit a version's tags point at,
and the tags in GTO's format (``model@v1.0.0``, ``model#production#3``, ``model#production!#4``).

The declaration commit is the measured commit plus three files: the artifact declared in ``dvc.yaml``
(``artifacts:``, which ``dvc artifacts get`` reads) and in ``artifacts.yaml`` (which GTO reads), and the
reproduction record under ``.edgekit/records/``. It is on no branch: the tags keep it, and the branch
the team works on never gets a registry commit to merge.

Example:
    >>> commit = declaration_commit(repo, project, "minilm", "v1.0.0", "models/variants/ort-int8", record)
    >>> write_tags(repo, [{"name": "minilm@v1.0.0", "target": commit, "message": "..."}], present=set())
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

from edgekit.registry.gitrepo import GitRepo

RECORDS = ".edgekit/records"


def record_path(project_prefix: str, model: str, version: str) -> str:
    return _join(project_prefix, f"{RECORDS}/{model}/{version}.json")


def _join(prefix: str, path: str) -> str:
    return path if prefix in ("", ".") else f"{prefix}/{path}"


def declaration_commit(repo: GitRepo, prefix: str, model: str, version: str, artifact_path: str,
                       meta: dict[str, Any], record: bytes) -> str:
    """HEAD plus the artifact declarations and the record, as a commit on no branch."""
    files = {
        _join(prefix, "dvc.yaml"): _declare(repo.show("HEAD", _join(prefix, "dvc.yaml")), model, artifact_path, meta, dvc=True),
        _join(prefix, "artifacts.yaml"): _declare(repo.show("HEAD", _join(prefix, "artifacts.yaml")), model, artifact_path, meta, dvc=False),
        record_path(prefix, model, version): record,
    }
    with tempfile.TemporaryDirectory() as folder:
        env = {"GIT_INDEX_FILE": os.path.join(folder, "index")}
        repo.git("read-tree", "HEAD", env=env)
        for path, data in files.items():
            blob = repo.git("hash-object", "-w", "--stdin", input=data, text=False).stdout.decode().strip()
            repo.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = repo.out("write-tree", env=env)
    return repo.out("commit-tree", tree, "-p", repo.head(), input=f"registry: {model} {version} ({meta['variant']})\n")


def _declare(current: bytes | None, model: str, path: str, meta: dict[str, Any], dvc: bool) -> bytes:
    """The YAML file with ``model`` declared; comments and other entries kept (ruamel round trip)."""
    from ruamel.yaml import YAML  # only when registering: reading the registry does not pay for it

    yaml = YAML()
    yaml.width = 4096
    data = yaml.load(current) if current else None
    data = data if data is not None else {}
    entry = {"path": path, "type": "model", "desc": f"{model}: edgekit variant {meta['variant']}", "meta": meta}
    if dvc:
        data.setdefault("artifacts", {})
        data["artifacts"][model] = entry
    else:
        data[model] = {**{k: v for k, v in entry.items() if k != "desc"}, "description": entry["desc"]}
    out = io.BytesIO()
    yaml.dump(data, out)
    return out.getvalue()


def existing_tags(repo: GitRepo) -> dict[str, tuple[str, str]]:
    """Every tag: name → (the commit it points at, its message's first lines)."""
    text = repo.out("for-each-ref", "refs/tags", "--format=%(refname:strip=2)%00%(*objectname)%00%(objectname)%00%(contents)%1e")
    tags = {}
    for chunk in text.split("\x1e"):
        if chunk.strip():
            name, peeled, direct, message = chunk.strip("\n").split("\x00", 3)
            tags[name] = (peeled or direct, message)
    return tags


def tag_names(repo: GitRepo, names: list[str] | None = None) -> set[str]:
    """The names of the tags that exist, of all or of ``names``. ``names`` are looked up one by one (one
    `cat-file --batch`: 3 ms), since `for-each-ref` with patterns lists every loose tag (0.15 s at 13,000)."""
    if names is None:
        return set(repo.out("for-each-ref", "--format=%(refname:strip=2)", "refs/tags").splitlines())
    found = repo.objects([f"refs/tags/{name}" for name in names])
    return {name for name, data in zip(names, found, strict=True) if data is not None}


def write_tags(repo: GitRepo, tags: list[dict[str, Any]], present: set[str]) -> list[str]:
    """Create the annotated tags not in ``present``, dated as their event says (logs written before tags
    carried a date: now); return their names."""
    made = []
    for tag in tags:
        if tag["name"] not in present:
            env = {"GIT_COMMITTER_DATE": f"@{tag['date']} +0000"} if "date" in tag else None
            repo.git("tag", "-a", "-m", tag["message"], tag["name"], tag["target"], env=env)
            made.append(tag["name"])
    return made


def delete_tags(repo: GitRepo, names: list[str]) -> None:
    if names:
        repo.git("tag", "-d", *names)
