"""``RegistryPanel`` without a browser: real ipywidgets on the test project's real registry, buttons clicked
from Python. Each action asks first and writes nothing until confirmed; confirmed, it leaves the events the
CLI leaves; refused, it shows the registry's reason and writes nothing."""

from __future__ import annotations

import pytest
from registry_project import MODEL as M

from edgekit import registry as reg
from edgekit.fsutil import read_json
from edgekit.notebook import RegistryPanel


@pytest.fixture
def project(registry_project, monkeypatch):
    monkeypatch.setattr("edgekit.registry.record.dvc_status", lambda folder: {})  # `dvc status` (2 s) is tested elsewhere
    return registry_project


def act(panel: RegistryPanel, action: str) -> str:
    """Click ``action``, then Confirm; the status line's text."""
    panel.buttons[action].click()
    assert panel.confirmation.layout.display == "flex", panel.status.value
    panel.confirm.click()
    return panel.status.value


def events(project) -> list[tuple[str, str | None]]:
    return [(e["type"], e.get("stage")) for e in reg.history(project)]


def test_from_registration_to_a_signed_production_promotion(project, registry_keys):
    panel = RegistryPanel(project, key=registry_keys["alice"])
    summary = read_json(project / "metrics" / "summary.json")
    assert panel.variant.options[0] == summary["recommendation"]["variant"]
    assert "no version registered yet" in panel.detail.value

    panel.variant.value = "ort-int8"
    panel.buttons["Register"].click()
    assert "register ort-int8 as a new version" in panel.question.value and events(project) == []  # asked, not written
    panel.confirm.click()
    assert f"registered {M}@v1.0.0 (ort-int8)" in panel.status.value
    assert panel.versions.value == "v1.0.0" and "v1.0.0 · ort-int8 · registered" in panel.versions.options[0][0]

    assert "→ staging" in act(panel, "Promote")
    refused = act(panel, "Promote")
    assert "refused:" in refused and "needs 1 signed approval(s) for production, has 0" in refused
    assert events(project) == [("register", None), ("promote", "staging")]  # the refusal wrote nothing

    assert "approved for production" in act(panel, "Approve")
    assert "→ production" in act(panel, "Promote")
    assert events(project) == [("register", None), ("promote", "staging"), ("approve", "production"), ("promote", "production")]
    assert reg.show(project)["models"][M]["stages"]["production"] == "v1.0.0"
    approve = reg.history(project)[2]
    assert approve["signed"] and approve["signer"]["principal"] == "alice@example.com"
    assert "production: alice@example.com" in panel.detail.value and "audit trail" in panel.detail.value
    assert reg.verify(project)["ok"]


def test_a_failing_gate_is_shown_and_nothing_is_written(project, registry_keys):
    reg.register(project, variant="ort-fp32")  # passes staging, fails production's memory and size gates
    reg.promote(project, f"{M}@v1.0.0")
    reg.approve(project, f"{M}@v1.0.0", key=registry_keys["alice"])
    before = events(project)

    panel = RegistryPanel(project, key=registry_keys["alice"])
    refused = act(panel, "Promote")
    assert "refused:" in refused and "fails the production gates" in refused and "memory_reduction" in refused
    assert events(project) == before and "v1.0.0 · ort-fp32 · staging" in panel.versions.options[0][0]


def test_cancel_writes_nothing_and_an_approval_needs_a_key(project, tmp_path):
    reg.register(project, variant="ort-int8")
    panel = RegistryPanel(project, key=tmp_path / "no-such-key")
    panel.buttons["Archive"].click()
    panel.cancel.click()
    assert panel.confirmation.layout.display == "none" and "cancelled" in panel.status.value
    assert events(project) == [("register", None)]

    panel.key.value = ""
    panel.buttons["Approve"].click()
    assert panel.confirmation.layout.display == "none" and "give the path of your SSH private key" in panel.status.value

    panel.key.value = str(tmp_path / "no-such-key")
    refused = act(panel, "Approve")
    assert "refused:" in refused and events(project) == [("register", None)]


def test_when_the_policy_signs_every_event_the_panel_signs_with_its_key(project, registry_keys):
    import yaml
    from registry_project import commit_all

    policy = yaml.safe_load((project / "policy.yaml").read_text())
    policy["lifecycle"]["sign"] = "all"
    (project / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    commit_all(project, "policy: sign every event")

    panel = RegistryPanel(project, key=registry_keys["bob"])
    panel.variant.value = "ort-int8"
    assert "registered" in act(panel, "Register") and "→ staging" in act(panel, "Promote")
    assert [e.get("signer", {}).get("principal") for e in reg.history(project)] == ["bob@example.com"] * 2
    assert reg.verify(project)["ok"]
