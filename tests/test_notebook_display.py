"""The rich displays of ``edgekit.notebook`` on the test project's real pipeline outputs and registry: the
HTML a notebook shows, the text a terminal shows and the data they were made from."""

from __future__ import annotations

import html
import json
import re

import pytest
from registry_project import MODEL as M

from edgekit import notebook
from edgekit import registry as reg
from edgekit.errors import EdgekitError
from edgekit.fsutil import read_json


def cells(html: str) -> list[list[str]]:
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html) if "<td>" in row]


def test_results_lists_every_variant_the_recommended_first_and_skipped_ones_with_their_install(registry_project):
    summary = read_json(registry_project / "metrics" / "summary.json")
    view = notebook.results(registry_project)
    rows = cells(view._repr_html_())
    recommended = summary["recommendation"]["variant"]
    assert len(rows) == len(summary["variants"]) and rows[0][0] == f"{recommended} ★"
    for row in rows:
        name = row[0].removesuffix(" ★")
        expected = summary["variants"][name]
        assert row[3] == expected["status"]
        if expected["status"] == "ok":
            assert row[4] == expected["verdicts"][view.stage] and float(row[5]) == pytest.approx(expected["speedup"], rel=1e-3)
        else:
            assert (expected.get("install") or expected["error"]) in html.unescape(row[4])
    bundle = view._repr_mimebundle_()
    assert bundle["application/json"] == json.loads(json.dumps(summary)) and recommended in bundle["text/plain"]


def test_a_variant_shows_every_stage_s_gates_with_their_results(registry_project):
    gates = read_json(registry_project / "outputs" / "gates.json")["variants"]["ort-int8"]
    page = notebook.variant("ort-int8", registry_project)._repr_html_()
    for stage, verdict in gates.items():
        assert f"ort-int8 · {stage}: {verdict['verdict']}" in page
    shown = {(row[0], re.sub("<.*?>", "", row[1])) for row in cells(page) if len(row) == 8}
    assert shown == {(g["gate"], g["result"]) for verdict in gates.values() for g in verdict["gates"]}
    with pytest.raises(EdgekitError, match="variant 'nope' is not in .*variants: "):
        notebook.variant("nope", registry_project)


def test_verdict_defaults_to_the_pipeline_s_target_stage(registry_project):
    gates = read_json(registry_project / "outputs" / "gates.json")
    view = notebook.verdict("ort-int8", project=registry_project)
    assert view.data == gates["variants"]["ort-int8"][gates["target_stage"]]
    assert view.text().splitlines()[0].split() == ["gate", "result", "value", "op", "threshold", "action", "detail", "evidence"]


def test_registry_and_version_views_show_what_the_registry_holds(registry_project, monkeypatch, registry_keys):
    monkeypatch.setattr("edgekit.registry.record.dvc_status", lambda folder: {})
    reg.register(registry_project, variant="ort-int8")
    reg.promote(registry_project, f"{M}@v1.0.0")
    reg.approve(registry_project, f"{M}@v1.0.0", key=registry_keys["alice"])
    reg.promote(registry_project, f"{M}@v1.0.0")

    listed = notebook.registry(registry_project)
    assert cells(listed._repr_html_())[0][:4] == ["v1.0.0", "ort-int8", "production", "production: alice@example.com"]
    assert f"{M} · latest v1.0.0 · staging: -, production: v1.0.0" in repr(listed)
    version = notebook.version(registry_project, f"{M}@v1.0.0")
    facts = dict(row for row in cells(version._repr_html_()) if len(row) == 2)
    assert facts["stage"] == "production" and facts["record sha256"] == reg.describe(registry_project, f"{M}@v1.0.0")["record_sha256"]


def test_a_missing_output_names_the_stage_that_makes_it(tmp_path):
    with pytest.raises(EdgekitError, match=r"summary.json does not exist; run `dvc repro select`"):
        notebook.results(tmp_path)
