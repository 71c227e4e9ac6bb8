"""Where a stage's code lives: one module per DVC stage, and a decision layer that touches no file.

The DVC deps drifted while a stage's code was spread over modules named after something else; these
tests keep the names lined up and keep file handling out of ``edgekit.decide``.
"""

from __future__ import annotations

import ast
import inspect

import pytest
import yaml

from conftest import REPO
from edgekit import api
from edgekit.cli import app

STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
DECIDE = sorted((REPO / "edgekit" / "decide").glob("*.py"))
# what reading or writing a file, or knowing the project's paths and params, looks like
FORBIDDEN_MODULES = {"edgekit.fsutil", "edgekit.layout", "edgekit.params", "edgekit.policyfile", "pathlib", "os", "shutil",
                     "tempfile", "io"}
FORBIDDEN_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "read_json", "write_json", "unlink", "mkdir"}


def test_the_pipeline_has_the_stages_we_name():
    assert STAGES == ["environment", "calibrate", "data", "baseline", "optimize", "benchmark", "evaluate",
                      "decoder_model", "decoder_baseline", "decoder_optimize", "decoder_benchmark", "decoder_evaluate",
                      "decoder_select", "select", "report", "model_card", "gate"]


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_is_one_module_one_api_function_and_one_verb(stage):
    module = REPO / "edgekit" / "pipeline" / f"{stage}.py"
    assert module.is_file(), f"the {stage} stage's code belongs in {module.relative_to(REPO)}"
    tree = ast.parse(module.read_text())
    assert any(isinstance(node, ast.FunctionDef) and node.name == "run" for node in tree.body), f"{module.name} has no run()"
    assert inspect.isfunction(getattr(api, stage, None)), f"edgekit.api has no {stage}()"
    assert f"edgekit.pipeline.{stage} import run" in inspect.getsource(getattr(api, stage))
    verbs = {command.name or command.callback.__name__.replace("_", "-") for command in app.registered_commands}
    assert stage.replace("_", "-") in verbs
    command = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    cmd = command["do"]["cmd"] if "do" in command else command["cmd"]
    assert cmd.startswith(f"edgekit {stage.replace('_', '-')}")


@pytest.mark.parametrize("path", DECIDE, ids=lambda p: p.name)
def test_decide_touches_no_file(path):
    """``edgekit.decide`` takes measurements and a policy and returns verdicts; the stages read and write."""
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & FORBIDDEN_MODULES, f"{path.name} imports {sorted(imported & FORBIDDEN_MODULES)}"
    calls = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
             for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not calls & FORBIDDEN_CALLS, f"{path.name} calls {sorted(calls & FORBIDDEN_CALLS)}"


def test_the_forbidden_list_would_catch_a_file_read(tmp_path):
    """The check above can fail: a module that reads a file is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from edgekit.fsutil import read_json\n\ndef f(p):\n    return read_json(p)\n")
    with pytest.raises(AssertionError, match="imports"):
        test_decide_touches_no_file(bad)


def test_no_top_level_module_is_named_after_a_stage():
    """``evaluate.py`` that is not the evaluate stage is how deps drifted: stage names belong to edgekit/pipeline."""
    clashes = [stage for stage in STAGES if (REPO / "edgekit" / f"{stage}.py").exists()]
    assert clashes == []


def test_the_pipeline_modules_are_exactly_the_stages():
    modules = {p.stem for p in (REPO / "edgekit" / "pipeline").glob("*.py")} - {"__init__"}
    assert modules == set(STAGES)
