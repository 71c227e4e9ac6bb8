"""``notebooks/lifecycle.ipynb`` headless, as CI runs it (papermill, a real kernel, no widget frontend), on the
registry test project: a signed production promotion recorded in the executed notebook, a refusal that fails the
run with the registry's reason, and a look-only run that writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from registry_project import MODEL as M

from edgekit import registry as reg

pytestmark = [pytest.mark.notebook, pytest.mark.slow]
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "lifecycle.ipynb"


def execute(out: Path, **parameters):
    import papermill

    return papermill.execute_notebook(str(NOTEBOOK), str(out), parameters=parameters, kernel_name="python3", progress_bar=False)


def outputs(notebook: dict, mime: str) -> str:
    """Every output of type ``mime``, as text (JSON outputs serialised)."""
    found = [o["data"][mime] for cell in notebook["cells"] for o in cell.get("outputs", []) if mime in o.get("data", {})]
    return "\n".join("".join(d) if isinstance(d, list) else d if isinstance(d, str) else json.dumps(d) for d in found)


def events(project: Path) -> list[tuple[str, str | None, bool]]:
    return [(e["type"], e.get("stage"), e["signed"]) for e in reg.history(project)]


def test_a_headless_run_promotes_to_production_with_a_signed_approval_and_records_it(registry_project, registry_keys, tmp_path):
    out = tmp_path / "lifecycle-production.ipynb"
    done = execute(out, project_dir=str(registry_project), variant="ort-int8", target_stage="production",
                   key=str(registry_keys["alice"]), act=True)
    assert events(registry_project) == [("register", None, False), ("promote", "staging", False),
                                        ("approve", "production", True), ("promote", "production", False)]
    shown = reg.show(registry_project)["models"][M]
    assert shown["stages"]["production"] == "v1.0.0" and shown["versions"][0]["variant"] == "ort-int8"
    page = outputs(done, "text/html")
    assert f"{M}: 4 registry event(s) written" in page and "alice@example.com" in page
    assert f"{M}@v1.0.0 (ort-int8) · production" in page and "ort-int8 · production: pass" in page
    # no widget frontend: the explorer and the panel are kept as static HTML beside their widget views
    assert '<img alt="Pareto plot" src="data:image/png;base64,' in page and "audit trail" in page
    assert outputs(done, "application/vnd.jupyter.widget-view+json").count("model_id") == 2
    assert "**verify**: ok, 4 event(s)" in outputs(done, "text/markdown")
    # a second run of the same target finds the version at this commit and writes nothing
    execute(tmp_path / "again.ipynb", project_dir=str(registry_project), variant="ort-int8", target_stage="production",
            key=str(registry_keys["alice"]), act=True)
    assert len(reg.history(registry_project)) == 4


def test_a_refused_promotion_fails_the_run_and_the_notebook_keeps_the_reason(registry_project, registry_keys, tmp_path):
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / "refused.ipynb"
    with pytest.raises(PapermillExecutionError, match="PromotionRefused"):
        execute(out, project_dir=str(registry_project), variant="ort-fp32", target_stage="production",
                key=str(registry_keys["alice"]), act=True)
    # staging passed; production's memory and size gates refused, and nothing of that promotion was written
    assert [(t, s) for t, s, _ in events(registry_project)] == [("register", None), ("promote", "staging"), ("approve", "production")]
    assert reg.show(registry_project)["models"][M]["stages"]["production"] is None
    error = next(o for cell in json.loads(out.read_text())["cells"] for o in cell.get("outputs", []) if o["output_type"] == "error")
    assert "memory_reduction" in error["evalue"] and "size_mb" in error["evalue"]


def test_a_look_only_run_writes_nothing(registry_project, tmp_path):
    done = execute(tmp_path / "look.ipynb", project_dir=str(registry_project))
    assert reg.history(registry_project) == []
    assert "`act=False`: nothing is written here" in outputs(done, "text/markdown")
