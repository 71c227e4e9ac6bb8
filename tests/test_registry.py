"""The model registry's behaviour, as a user of `edgekit registry` meets it: versions and their records,
stage order, gates read from the record, signed approvals, exclusive stages and rollback, expiry,
deploy hooks, concurrent writers, verification, and agreement with GTO and `dvc artifacts get`.

Every test works on a fresh copy of tests/registry_project.py's project (ort-int8 and olive-int8 pass
both stages' gates; ort-fp32 fails production).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from registry_project import MODEL, commit_all, run

from edgekit import registry as reg
from edgekit.errors import ConfigError
from edgekit.registry.core import Registry
from edgekit.registry.events import REF
from edgekit.registry.state import fold

M = MODEL
BIN = Path(sys.executable).parent


# -- helpers -----------------------------------------------------------------------------------------
def ref(version: str) -> str:
    return f"{M}@{version}"


def git(project: Path, *args: str) -> str:
    return run(["git", *args], project).stdout.strip()


def registry_ref(project: Path) -> str | None:
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", REF], cwd=project, capture_output=True, text=True)
    return done.stdout.strip() or None


def tags(project: Path) -> list[str]:
    return git(project, "tag", "--list").splitlines()


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    """The real command line: `edgekit registry <args>`, in the project."""
    return subprocess.run([sys.executable, "-m", "edgekit", "registry", *args], cwd=project, capture_output=True, text=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_digests(project: Path, variant: str) -> dict[str, str]:
    manifest = json.loads((project / "models" / "variants" / variant / "manifest.json").read_text())
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


def change_policy(project: Path, **lifecycle) -> None:
    """Commit policy.yaml with ``lifecycle`` keys replaced (the registry reads the policy at HEAD)."""
    path = project / "policy.yaml"
    data = yaml.safe_load(path.read_text())
    data["lifecycle"].update(lifecycle)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    commit_all(project, "policy: lifecycle")


def to_production(project: Path, version: str, approver: Path) -> dict:
    """staging, a signed approval, production."""
    reg.promote(project, ref(version))
    reg.approve(project, ref(version), stage="production", key=approver)
    return reg.promote(project, ref(version))


def stages(project: Path) -> dict[str, str | None]:
    return reg.show(project)["models"][M]["stages"]


def gto_view(project: Path) -> tuple[str, dict[str, str]]:
    """`gto show`'s latest version and holders of each stage; a displaced version shows in `archived`,
    which must be one the registry archived."""
    shown = json.loads(run([str(BIN / "gto"), "show", "--json"], project).stdout)[M]
    holders = dict(shown["stage"])
    archived = holders.pop("archived", None)
    if archived:
        assert reg.describe(project, ref(archived))["stage"] == "archived"
    return shown["version"], holders


def registry_view(project: Path) -> tuple[str, dict[str, str]]:
    model = reg.show(project)["models"][M]
    return model["latest"], {stage: version for stage, version in model["stages"].items() if version}


@pytest.fixture
def project(registry_project, monkeypatch):
    """The test project where registering is only set-up: `dvc status` (~2 s a call) is taken as clean.
    The workspace checks it feeds have their own tests above, on the real `dvc status`."""
    monkeypatch.setattr("edgekit.registry.record.dvc_status", lambda folder: {})
    return registry_project


# -- register ----------------------------------------------------------------------------------------
def test_register_numbers_versions_from_v1_0_0(project):
    first = reg.register(project, variant="ort-int8")
    second = reg.register(project, variant="olive-int8")
    chosen = reg.register(project, variant="ort-int8", version="v3.0.0")

    assert [first["version"], second["version"], chosen["version"]] == ["v1.0.0", "v1.1.0", "v3.0.0"]
    assert first["model"] == M
    assert set(tags(project)) == {ref(v) for v in ("v1.0.0", "v1.1.0", "v3.0.0")}


def test_cli_register_prints_the_new_version(registry_project):
    done = cli(registry_project, "register", "--variant", "ort-int8", "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == "v1.0.0"
    assert reg.show(registry_project)["models"][M]["latest"] == "v1.0.0"


@pytest.mark.parametrize("name, edit", [("policy.yaml", "append"), ("notes.txt", "create")])
def test_register_refuses_a_dirty_workspace_and_writes_nothing(registry_project, name, edit):
    path = registry_project / name
    path.write_text((path.read_text() if edit == "append" else "") + "\n# edited\n")

    with pytest.raises(reg.WorkspaceError, match=f"uncommitted changes: .*{name}") as caught:
        reg.register(registry_project, variant="ort-int8")
    assert "git" in caught.value.hint
    assert registry_ref(registry_project) is None
    assert tags(registry_project) == []


def test_register_refuses_a_stale_pipeline(registry_project):
    with (registry_project / "make_outputs.py").open("a") as handle:
        handle.write("# a changed stage command\n")
    commit_all(registry_project, "edit the stage")

    with pytest.raises(reg.WorkspaceError, match="measure") as caught:
        reg.register(registry_project, variant="ort-int8")
    assert "dvc repro" in caught.value.hint
    assert registry_ref(registry_project) is None


def test_register_refuses_an_output_changed_after_repro(registry_project):
    (registry_project / "models" / "variants" / "ort-int8" / "vocab.txt").write_text("tampered\n")

    with pytest.raises(reg.RegistryError, match="measure|vocab.txt"):
        reg.register(registry_project, variant="ort-int8")
    assert registry_ref(registry_project) is None
    assert tags(registry_project) == []


@pytest.mark.parametrize("kwargs, message, hint", [
    ({"variant": "no-such-variant"}, "variant 'no-such-variant' has no measurements", "measured variants: "),
    ({"variant": "ort-int8", "model": "Bad_Name"}, "model name 'Bad_Name' is not valid", "lower-case"),
    ({"variant": "ort-int8", "version": "1.0"}, "version '1.0' is not valid", "v<major>"),
])
def test_register_refuses_bad_input(project, kwargs, message, hint):
    with pytest.raises(reg.RegistryError, match=message) as caught:
        reg.register(project, **kwargs)
    assert hint in caught.value.hint
    assert registry_ref(project) is None


def test_register_refuses_a_version_that_exists(project):
    reg.register(project, variant="ort-int8")
    before = registry_ref(project)

    with pytest.raises(reg.RegistryError, match=r"v1\.0\.0 is already registered"):
        reg.register(project, variant="olive-int8", version="v1.0.0")
    assert registry_ref(project) == before


def test_record_pins_code_lock_files_scanner_policy_and_hardware(registry_project):
    reg.register(registry_project, variant="ort-int8")

    record = reg.describe(registry_project, ref("v1.0.0"))["record"]
    assert record["code"]["commit"] == git(registry_project, "rev-parse", "HEAD")
    assert record["dvc_lock"]["sha256"] == sha256(registry_project / "dvc.lock")
    recorded = {name: entry["sha256"] for name, entry in record["files"].items() if name != "manifest.json"}
    assert recorded == manifest_digests(registry_project, "ort-int8")
    assert record["scan"]["picklescan"]
    assert len(record["gates"]["policy"]["sha256"]) == 64
    assert record["hardware"]["cpu_model"]
    assert record["variant"] == "ort-int8"


# -- GTO and DVC interop ------------------------------------------------------------------------------
def test_gto_agrees_after_promotions_and_rollback(project, registry_keys, monkeypatch):
    """All in one second, as on a fast machine: GTO orders a model's tags by their date to the second, so
    the registry dates each event's tags after the previous ones (with git's clock, this failed in CI)."""
    frozen = 1_790_000_000
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{frozen} +0000")
    monkeypatch.setattr("edgekit.registry.core.now_epoch", lambda: frozen, raising=False)
    reg.register(project, variant="ort-int8")
    reg.register(project, variant="olive-int8")
    to_production(project, "v1.0.0", registry_keys["alice"])
    assert gto_view(project) == registry_view(project) == ("v1.1.0", {"production": "v1.0.0"})

    to_production(project, "v1.1.0", registry_keys["alice"])
    assert gto_view(project) == registry_view(project) == ("v1.1.0", {"production": "v1.1.0"})

    reg.rollback(project, M)
    assert gto_view(project) == registry_view(project) == ("v1.1.0", {"production": "v1.0.0"})
    assert reg.verify(project)["ok"]


def test_dvc_artifacts_get_fetches_the_production_variant(project, registry_keys, tmp_path):
    run([sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")], project)
    commit_all(project, "dvc remote")
    run([sys.executable, "-m", "dvc", "push", "-q"], project)
    reg.register(project, variant="ort-int8")
    to_production(project, "v1.0.0", registry_keys["alice"])

    fetched = tmp_path / "fetched"
    run([sys.executable, "-m", "dvc", "artifacts", "get", ".", M, "--stage", "production", "-o", str(fetched)], project)

    got = {p.name: sha256(p) for p in fetched.iterdir() if p.name != "manifest.json"}
    assert got == manifest_digests(project, "ort-int8")


# -- promote -----------------------------------------------------------------------------------------
def test_promote_goes_in_order(project):
    reg.register(project, variant="ort-int8")

    with pytest.raises(reg.RegistryError, match="its next one is staging, not production"):
        reg.promote(project, ref("v1.0.0"), stage="production")
    assert reg.promote(project, ref("v1.0.0"))["stage"] == "staging"
    assert stages(project)["staging"] == "v1.0.0"


def test_strict_policy_refuses_promotion_naming_the_gate_and_writes_nothing(project, registry_keys):
    reg.register(project, variant="ort-int8")
    reg.promote(project, ref("v1.0.0"))
    reg.approve(project, ref("v1.0.0"), stage="production", key=registry_keys["alice"])
    policy = yaml.safe_load((project / "policy.yaml").read_text())
    policy["stages"]["production"]["speedup"]["min"] = 50
    (project / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    commit_all(project, "strict policy")
    before, tags_before = registry_ref(project), tags(project)

    with pytest.raises(reg.PromotionRefused, match=r"speedup \d+(\.\d+)? < 50") as caught:
        reg.promote(project, ref("v1.0.0"))
    assert any("speedup" in failing for failing in caught.value.failing)
    assert registry_ref(project) == before
    assert tags(project) == tags_before
    assert stages(project) == {"staging": "v1.0.0", "production": None}


def _garbage(value):
    if isinstance(value, dict):
        return {k: _garbage(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_garbage(v) for v in value]
    return 1e-6 if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def test_gates_read_the_record_not_the_workspace(project):
    reg.register(project, variant="ort-int8")
    reg.register(project, variant="ort-int8")
    clean = reg.promote(project, ref("v1.0.0"))["gates"]
    summary = project / "metrics" / "summary.json"
    summary.write_text(json.dumps(_garbage(json.loads(summary.read_text()))))

    after = reg.promote(project, ref("v1.1.0"))["gates"]

    assert after["verdict"] == clean["verdict"]
    assert after["values"] == clean["values"]


def test_production_needs_a_signed_approval(project, registry_keys):
    reg.register(project, variant="ort-int8")
    reg.promote(project, ref("v1.0.0"))

    with pytest.raises(reg.PromotionRefused, match="needs 1 signed approval.*has 0"):
        reg.promote(project, ref("v1.0.0"))
    reg.approve(project, ref("v1.0.0"), key=registry_keys["alice"])
    result = reg.promote(project, ref("v1.0.0"))

    assert result["stage"] == "production"
    assert [a["principal"] for a in result["approvals"]] == ["alice@example.com"]


def test_approval_by_a_key_not_allowed_is_refused(project, registry_keys):
    reg.register(project, variant="ort-int8")
    before = registry_ref(project)

    with pytest.raises(reg.SignatureError, match="allowed_signers"):
        reg.approve(project, ref("v1.0.0"), stage="production", key=registry_keys["mallory"])
    assert registry_ref(project) == before


def test_two_approvals_need_two_distinct_signers(project, registry_keys):
    reg.register(project, variant="ort-int8")
    reg.promote(project, ref("v1.0.0"))
    reg.approve(project, ref("v1.0.0"), stage="production", key=registry_keys["alice"])
    change_policy(project, approvals={"production": 2})

    with pytest.raises(reg.PromotionRefused, match=r"needs 2 signed approval\(s\) for production, has 1"):
        reg.promote(project, ref("v1.0.0"))
    reg.approve(project, ref("v1.0.0"), stage="production", key=registry_keys["alice"])
    with pytest.raises(reg.PromotionRefused, match=r"has 1 \(alice@example.com\)"):
        reg.promote(project, ref("v1.0.0"))
    reg.approve(project, ref("v1.0.0"), stage="production", key=registry_keys["bob"])

    result = reg.promote(project, ref("v1.0.0"))
    assert [a["principal"] for a in result["approvals"]] == ["alice@example.com", "bob@example.com"]


# -- exclusive stages, rollback, history ---------------------------------------------------------------
def test_a_new_production_version_archives_the_previous_one(project, registry_keys):
    reg.register(project, variant="ort-int8")
    reg.register(project, variant="olive-int8")
    to_production(project, "v1.0.0", registry_keys["alice"])

    result = to_production(project, "v1.1.0", registry_keys["bob"])

    assert result["displaced"] == "v1.0.0"
    versions = {v["version"]: v["stage"] for v in reg.show(project)["models"][M]["versions"]}
    assert versions == {"v1.0.0": "archived", "v1.1.0": "production"}
    last = reg.history(project)[-1]
    assert last["moves"] == [{"version": "v1.1.0", "from": "staging", "to": "production"},
                             {"version": "v1.0.0", "from": "production", "to": "archived"}]


def test_rollback_restores_the_previous_production_version_as_a_new_event(project, registry_keys):
    reg.register(project, variant="ort-int8")
    reg.register(project, variant="olive-int8")
    to_production(project, "v1.0.0", registry_keys["alice"])
    to_production(project, "v1.1.0", registry_keys["alice"])
    before = reg.history(project)

    done = cli(project, "rollback", M, "--reason", "latency regression", "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == "v1.0.0"
    versions = {v["version"]: v["stage"] for v in reg.show(project)["models"][M]["versions"]}
    assert versions == {"v1.0.0": "production", "v1.1.0": "archived"}
    after = reg.history(project)
    assert after[:-1] == before
    assert (after[-1]["type"], after[-1]["replaces"], after[-1]["reason"]) == ("rollback", "v1.1.0", "latency regression")
    assert [e["seq"] for e in after] == list(range(1, len(after) + 1))
    assert all(e["prev"] == p["hash"] for p, e in zip(after[:-1], after[1:], strict=True))


def test_rollback_without_an_earlier_production_version_is_refused(project):
    reg.register(project, variant="ort-int8")

    with pytest.raises(reg.RegistryError, match="no earlier production version"):
        reg.rollback(project, M)


# -- archive and review-by dates ----------------------------------------------------------------------
def test_archive_retires_a_version_once(project):
    reg.register(project, variant="ort-int8")
    reg.promote(project, ref("v1.0.0"))

    reg.archive(project, ref("v1.0.0"), reason="superseded")

    assert stages(project) == {"staging": None, "production": None}
    assert reg.describe(project, ref("v1.0.0"))["stage"] == "archived"
    with pytest.raises(reg.RegistryError, match="already archived"):
        reg.archive(project, ref("v1.0.0"))


def _in_production(project: Path, keys: dict) -> dt.datetime:
    reg.register(project, variant="ort-int8")
    to_production(project, "v1.0.0", keys["alice"])
    return dt.datetime.fromisoformat(reg.describe(project, ref("v1.0.0"))["entered_time"])


def test_check_reports_expired_and_expiring_versions(project, registry_keys):
    entered = _in_production(project, registry_keys)
    expired_at = (entered + dt.timedelta(days=181)).isoformat()
    expiring_at = (entered + dt.timedelta(days=170)).isoformat()
    fine_at = (entered + dt.timedelta(days=10)).isoformat()

    assert [i["ref"] for i in reg.check(project, now=expired_at)["expired"]] == [ref("v1.0.0")]
    soon = reg.check(project, now=expiring_at)
    assert (soon["expired"], [i["ref"] for i in soon["expiring"]]) == ([], [ref("v1.0.0")])
    assert cli(project, "check", "--now", expired_at, "--json").returncode == 1
    assert cli(project, "check", "--now", expiring_at, "--json").returncode == 1
    assert cli(project, "check", "--now", fine_at, "--json").returncode == 0


def test_check_archives_expired_versions_as_signed_events(project, registry_keys):
    entered = _in_production(project, registry_keys)
    expired_at = (entered + dt.timedelta(days=181)).isoformat()

    with pytest.raises(reg.RegistryError, match="--key"):
        reg.check(project, now=expired_at, archive_expired=True)
    result = reg.check(project, now=expired_at, archive_expired=True, key=registry_keys["alice"])

    assert [a["version"] for a in result["archived"]] == ["v1.0.0"]
    last = reg.history(project)[-1]
    assert (last["type"], last["signed"], last["signer"]["principal"]) == ("archive", True, "alice@example.com")
    assert stages(project)["production"] is None


# -- deploy hook -------------------------------------------------------------------------------------
def test_deploy_hook_runs_once_with_the_promoted_version(project, registry_keys, tmp_path):
    log = tmp_path / "deployed.txt"
    change_policy(project, deploy={"production": f'echo "$EDGEKIT_MODEL $EDGEKIT_VERSION $EDGEKIT_TAG" >> {log}'})
    reg.register(project, variant="ort-int8")
    reg.promote(project, ref("v1.0.0"))
    assert not log.exists()  # no hook for staging

    reg.approve(project, ref("v1.0.0"), key=registry_keys["alice"])
    result = reg.promote(project, ref("v1.0.0"))

    tag = ",".join(result["event"]["tags"])
    assert f"{M}#production#" in tag
    assert log.read_text().splitlines() == [f"{M} v1.0.0 {tag}"]
    assert result["deploy"]["returncode"] == 0


def test_failing_deploy_hook_exits_1_but_the_promotion_stays(project, registry_keys):
    change_policy(project, deploy={"production": "echo deploy target unreachable >&2; exit 3"})
    reg.register(project, variant="ort-int8")
    reg.promote(project, ref("v1.0.0"))
    reg.approve(project, ref("v1.0.0"), key=registry_keys["alice"])

    done = cli(project, "promote", ref("v1.0.0"))

    assert done.returncode == 1
    assert "deploy hook failed" in done.stdout and "unreachable" in done.stdout
    assert stages(project)["production"] == "v1.0.0"


# -- concurrent writers --------------------------------------------------------------------------------
def test_a_write_from_a_stale_head_is_a_conflict_and_changes_nothing(project):
    reg.register(project, variant="ort-int8")
    registry = Registry.open(project)
    stale = registry.snapshot()
    reg.promote(project, ref("v1.0.0"))  # the other writer is first
    log_before, tags_before = reg.history(project), tags(project)

    with pytest.raises(reg.ConflictError, match="expected event 1 last"):
        reg.archive(project, ref("v1.0.0"), _snapshot=stale, _registry=registry)
    assert reg.history(project) == log_before
    assert tags(project) == tags_before


def _clone(remote: Path, destination: Path) -> Path:
    run(["git", "clone", "-q", "-b", "main", str(remote), str(destination)], remote.parent)
    return destination


def test_two_clones_conflict_on_push_and_the_loser_is_rolled_back(project, tmp_path):
    remote = tmp_path / "remote.git"
    run(["git", "init", "-q", "--bare", str(remote)], tmp_path)
    git(project, "remote", "add", "origin", str(remote))
    git(project, "push", "-q", "origin", "main")
    reg.register(project, variant="ort-int8", push="origin")
    reg.register(project, variant="olive-int8", push="origin")
    clone_b = _clone(remote, tmp_path / "clone-b")
    Registry.open(clone_b).pull("origin")
    assert reg.show(clone_b) == reg.show(project)
    head_b = registry_ref(clone_b)

    reg.promote(project, ref("v1.0.0"), push="origin")
    with pytest.raises(reg.ConflictError) as caught:
        reg.promote(clone_b, ref("v1.1.0"), push="origin")

    assert "edgekit registry pull" in caught.value.hint
    assert registry_ref(clone_b) == head_b
    assert not any("#staging#" in t for t in tags(clone_b))
    Registry.open(clone_b).pull("origin")
    assert registry_ref(clone_b) == registry_ref(project)
    assert stages(clone_b) == {"staging": "v1.0.0", "production": None}


# -- verify and the CLI's errors ------------------------------------------------------------------------
def test_verify_passes_on_a_clean_log_and_against_its_checkpoint(project, registry_keys):
    reg.register(project, variant="ort-int8")
    reg.promote(project, ref("v1.0.0"))
    reg.approve(project, ref("v1.0.0"), key=registry_keys["alice"])
    point = reg.checkpoint(project)

    assert reg.verify(project)["events"] == 3
    assert reg.verify(project, checkpoint=point)["ok"]
    with pytest.raises(reg.TamperError):
        reg.verify(project, checkpoint={"seq": point["seq"], "hash": "0" * 64})
    done = cli(project, "verify", "--checkpoint", f"{point['seq']}:{point['hash']}", "--json")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["ok"] is True


def test_cli_error_is_one_line_naming_the_fix(project):
    done = cli(project, "promote", "nonsense")

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "'nonsense' is not a version reference" in lines[0] and "<model>@v<major>.<minor>.<patch>" in lines[0]


def test_cli_prints_for_people_on_a_terminal_and_for_programs_in_a_pipe(project, registry_keys):
    reg.register(project, variant="ort-int8")
    reg.promote(project, ref("v1.0.0"))

    shown = cli(project, "show")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == ["model\tlatest\t#staging\t#production\tversions", f"{M}\tv1.0.0\tv1.0.0\t-\t1"]
    events = cli(project, "history").stdout.splitlines()
    assert events[0].split("\t")[:2] == ["seq", "event"] and [line.split("\t")[1] for line in events[1:]] == ["register", "promote"]
    piped = cli(project, "show", "--json").stdout
    assert piped.count("\n") == 1 and json.loads(piped) == reg.show(project)

    primary, secondary = pty.openpty()  # a terminal: indented JSON
    with subprocess.Popen([sys.executable, "-m", "edgekit", "registry", "show", "--json"], cwd=project, stdout=secondary,
                          stderr=subprocess.PIPE) as process:
        os.close(secondary)
        seen = b""
        while chunk := _read_pty(primary):
            seen += chunk
    os.close(primary)
    assert process.returncode == 0
    text = seen.decode().replace("\r\n", "\n")
    assert '\n  "models": {' in text and json.loads(text) == reg.show(project)


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child closed the terminal
        return b""


def test_cli_traceback_option_reaches_the_registry_through_the_main_cli(project):
    done = subprocess.run([sys.executable, "-m", "edgekit", "--traceback", "registry", "promote", "nonsense"], cwd=project,
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "RegistryError: 'nonsense' is not a version reference" in done.stderr
    listed = subprocess.run([sys.executable, "-m", "edgekit", "--help"], capture_output=True, text=True).stdout
    assert "registry" in listed


def test_the_state_cache_is_the_fold_of_the_events_and_is_used_only_for_its_head(project, registry_keys):
    def folded():
        registry = Registry.open(project)
        return fold(registry.log.events(), registry.lifecycle().exclusive)

    reg.register(project, variant="ort-int8")
    reg.register(project, variant="olive-int8")
    to_production(project, "v1.0.0", registry_keys["alice"])
    to_production(project, "v1.1.0", registry_keys["alice"])
    reg.rollback(project, M)
    cache = project / ".git" / "edgekit-registry-state.marshal"
    written = cache.read_bytes()  # by the last write, from the state it read and its event
    assert Registry.open(project).snapshot().state == folded()
    assert cache.read_bytes() == written  # the read used it
    registry = Registry.open(project)  # the approvals a promotion re-verifies are read by number, not with the log
    events = registry.log.events()
    assert registry.log.events_at(registry.snapshot().head, [e["seq"] for e in events]) == {e["seq"]: e for e in events}

    older = git(project, "rev-parse", f"{REF}~1")  # the log moved under the cache: it is not used
    git(project, "update-ref", REF, older)
    snap = Registry.open(project).snapshot()
    assert snap.head.seq == len(Registry.open(project).log.events()) and snap.state == folded()
    assert snap.state.occupant(M, "production") == "v1.1.0"

    cache.write_bytes(b"not marshal")  # unreadable: folded again, and rewritten
    assert Registry.open(project).snapshot().state == folded() and cache.read_bytes() != b"not marshal"


def test_cli_names_a_project_folder_that_does_not_exist(tmp_path):
    done = cli(tmp_path, "show", "-C", str(tmp_path / "nowhere"))
    assert done.returncode == 1 and done.stderr.startswith("error: project folder") and "-C/--project" in done.stderr


def test_sign_all_refuses_an_unsigned_write_and_verify_names_every_unsigned_event(project, registry_keys):
    reg.register(project, variant="ort-int8")  # before the policy asked for it: unsigned
    change_policy(project, sign="all")
    before = reg.history(project)

    with pytest.raises(reg.SignatureError, match="lifecycle.sign: all.*pass --key"):
        reg.promote(project, ref("v1.0.0"))
    assert reg.history(project) == before and cli(project, "promote", ref("v1.0.0")).returncode == 1

    promoted = reg.promote(project, ref("v1.0.0"), key=registry_keys["bob"])
    assert reg.history(project)[-1]["signer"]["principal"] == "bob@example.com" and promoted["stage"] == "staging"
    report = reg.verify(project, raise_on_problem=False)
    assert [(p["seq"], p["problem"]) for p in report["problems"]] == [
        (1, f"register {M}@v1.0.0: is not signed, and the policy's lifecycle.sign is all")]

    change_policy(project, sign="everything")
    with pytest.raises(ConfigError, match="lifecycle.sign"):
        reg.show(project)
