"""What runs after a promotion: reproducing a version, fetching it with DVC, and CI's deploy script."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from registry_project import MODEL, REPO, commit_all, run

from edgekit import registry

V1 = f"{MODEL}@v1.0.0"


def edgekit(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run([sys.executable, "-m", "edgekit", *args], cwd=project, capture_output=True, text=True, env=full)


def to_production(project: Path, key: Path, variant: str = "ort-int8") -> str:
    ref = f"{MODEL}@{registry.register(project, variant=variant)['version']}"
    registry.promote(project, ref)
    registry.approve(project, ref, key=key)
    registry.promote(project, ref)
    return ref


@pytest.fixture
def remote_project(registry_project, tmp_path) -> Path:
    """The test project with a local DVC remote holding its outputs."""
    run([sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(tmp_path / "dvc-remote")], registry_project)
    commit_all(registry_project, "a DVC remote")
    run([sys.executable, "-m", "dvc", "push", "-q"], registry_project)
    return registry_project


def test_reproduce_reruns_the_pinned_stage_and_finds_the_same_files_and_metrics(registry_project):
    registry.register(registry_project, variant="ort-int8")
    result = registry.reproduce(registry_project, V1)
    assert result["ok"], result["lines"]
    assert result["stages"] == ["measure"]
    assert result["lines"][0] == "files: 4 of 4 identical"
    assert any(m["metric"] == "speedup" and "CI" in m["line"] for m in result["metrics"])


def test_reproduce_names_a_file_that_comes_out_different_and_the_cli_exits_1(registry_project):
    registry.register(registry_project, variant="ort-int8")
    done = edgekit(registry_project, "registry", "reproduce", V1, "--json", EDGEKIT_TEST_PERTURB="0.5")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert not result["ok"]
    assert [line.split(":")[0] for line in result["files_differing"]] == ["manifest.json", "model.onnx"]


def test_fetch_downloads_the_production_version_and_checks_it_against_the_record(remote_project, registry_keys, tmp_path):
    to_production(remote_project, registry_keys["alice"])
    fetched = registry.fetch(remote_project, MODEL, out=tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (fetched["version"], fetched["variant"], fetched["files"]) == ("v1.0.0", "ort-int8", 4)
    assert manifest["variant"] == "ort-int8"


def test_fetch_refuses_files_that_differ_from_the_record(remote_project, registry_keys, tmp_path):
    """A DVC store whose object was replaced: what arrives is not what was registered. (`dvc artifacts get` from
    a local repository reads its cache before the remote, so both are changed.)"""
    to_production(remote_project, registry_keys["alice"])
    stores = [tmp_path / "dvc-remote", remote_project / ".dvc" / "cache"]
    for path in (p for store in stores for p in store.rglob("*")):
        if path.is_file() and path.read_bytes().startswith(b"\x08"):  # the ONNX model's object (protobuf field 1)
            path.chmod(0o644)
            path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(Exception, match="does not match its registry record: model.onnx"):
        registry.fetch(remote_project, MODEL, out=tmp_path / "out")


def test_ci_deploys_what_the_latest_production_tag_names_and_refuses_an_old_one(remote_project, registry_keys, tmp_path):
    to_production(remote_project, registry_keys["alice"])
    first_tag = registry.history(remote_project)[-1]["tags"][-1]["name"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DEPLOY_COMMAND": "ls"}
    script = str(REPO / "tools" / "deploy_from_tag.sh")
    done = subprocess.run(["bash", script, first_tag, str(tmp_path / "d1")], cwd=remote_project, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "model.onnx" in done.stdout  # DEPLOY_COMMAND got the fetched folder
    assert json.loads((tmp_path / "d1" / "checkpoint.json").read_text())["seq"] == 4
    to_production(remote_project, registry_keys["alice"], variant="olive-int8")
    again = subprocess.run(["bash", script, first_tag, str(tmp_path / "d2")], cwd=remote_project, capture_output=True, text=True, env=env)
    assert again.returncode == 1 and "not the latest production assignment" in again.stderr


def test_the_deploy_workflow_runs_on_production_tags_only():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "deploy-production.yml").read_text())
    patterns = workflow[True]["push"]["tags"]  # YAML 1.1 reads the key `on` as True
    matches = lambda tag: any(fnmatch.fnmatchcase(tag, p) for p in patterns)  # noqa: E731
    assert matches(f"{MODEL}#production#7")
    assert not matches(f"{MODEL}#staging#6") and not matches(f"{MODEL}#production!#8") and not matches(f"{MODEL}@v1.0.0")
    assert "tools/deploy_from_tag.sh" in json.dumps(workflow)
