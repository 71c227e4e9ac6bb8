"""The ``edgekit`` command as a user runs it: a real subprocess in a project folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, make_project, small_params, uncomment_more_variants
from edgekit.runtimes import runtime_names


def edgekit(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE")}
    env["COLUMNS"] = "60"  # narrower than the error lines: they must still not wrap
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "edgekit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project", small_params())


def break_params(project, change) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    change(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_version(tmp_path):
    result = edgekit("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "edgekit 0.1.0"


def test_doctor_json(repo, tmp_path):
    result = edgekit("doctor", "--json", "-C", str(repo), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert isinstance(record["cpu"]["isa"], list)
    assert all(isinstance(flag, str) for flag in record["cpu"]["isa"])
    assert record["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(record["lock_sha256"], str) and len(record["lock_sha256"]) == 64
    ort = record["runtimes"]["onnxruntime"]
    assert {"available", "versions", "install"} <= set(ort)
    assert isinstance(ort["available"], bool)
    assert isinstance(ort["versions"], dict)
    if ort["available"]:
        assert ort["install"] is None
        assert "onnxruntime" in ort["versions"]
    else:
        assert ort["install"] == 'pip install -c requirements/lock.txt -e ".[onnxruntime]"'
    assert "pytorch" in record["runtimes"]


def test_doctor_json_without_a_lock_file(tmp_path):
    result = edgekit("doctor", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["lock_sha256"] is None


def test_check_passes_on_a_valid_project(project):
    result = edgekit("check", cwd=project)
    assert result.returncode == 0, result.stderr
    variants = yaml.safe_load((project / "params.yaml").read_text())["variants"]
    assert f"params valid: {len(variants)} variants" in result.stdout


def test_check_with_unknown_runtime_prints_one_error_line(project):
    break_params(project, lambda p: p["variants"]["ort-int8"].update(runtime="onnxrt"))
    result = edgekit("check", cwd=project)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "variants.ort-int8.runtime = 'onnxrt'" in lines[0]
    assert ", ".join(runtime_names()) in lines[0]
    assert "Traceback" not in result.stderr


def test_check_validates_the_policy_file_too(project):
    policy = yaml.safe_load((project / "policy.yaml").read_text())
    policy["stages"]["production"]["speedupp"] = policy["stages"]["production"].pop("speedup")
    (project / "policy.yaml").write_text(yaml.safe_dump(policy))
    result = edgekit("check", cwd=project)
    assert result.returncode == 1
    assert "policy.yaml" in result.stderr and "speedupp" in result.stderr and "speedup" in result.stderr.replace("speedupp", "")


def test_check_names_a_target_stage_the_policy_lacks(project):
    policy = yaml.safe_load((project / "policy.yaml").read_text())
    del policy["stages"]["staging"]
    (project / "policy.yaml").write_text(yaml.safe_dump(policy))
    break_params(project, lambda p: p["policy"].update(stage="staging"))
    result = edgekit("check", cwd=project)
    assert result.returncode == 1
    assert "policy.stage = 'staging'" in result.stderr and "policy.yaml has gates for: production" in result.stderr


def test_check_with_project_option_from_elsewhere(project, tmp_path):
    break_params(project, lambda p: p.update(threads="two"))
    result = edgekit("check", "-C", str(project), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "threads = 'two'" in result.stderr


def test_traceback_option_shows_the_traceback(project):
    break_params(project, lambda p: p["variants"]["ort-int8"].update(runtime="onnxrt"))
    result = edgekit("--traceback", "check", cwd=project)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "UnknownNameError" in result.stderr
    assert "variants.ort-int8.runtime" in result.stderr


def test_optimize_unknown_variant_lists_the_known_ones(project):
    result = edgekit("optimize", "no-such-variant", cwd=project)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "'no-such-variant'" in lines[0]
    assert ", ".join(sorted(yaml.safe_load((project / "params.yaml").read_text())["variants"])) in lines[0]


def test_check_with_a_missing_model_folder_names_it(project):
    break_params(project, lambda p: p["model"].update(source="./does-not-exist"))
    result = edgekit("check", cwd=project)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "./does-not-exist" in lines[0]
    assert str(project.resolve() / "does-not-exist") in lines[0]


def test_check_without_params_names_the_file(tmp_path):
    result = edgekit("check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: params.yaml: ")
    assert "an existing params file" in result.stderr


@pytest.mark.parametrize(
    ("args", "pattern"),
    [(["optimise"], r"No such command 'optimise'"), (["optimize"], r"Missing (argument|parameter)")],
    ids=["unknown-command", "missing-argument"],
)
def test_usage_errors_are_short_and_exit_2(tmp_path, args, pattern):
    result = edgekit(*args, cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert re.search(pattern, result.stderr)
    assert result.returncode == 2


FIXTURE = REPO / "tests" / "fixtures" / "report_project"


def test_doctor_names_the_runtime_to_use_here(tmp_path):
    result = edgekit("doctor", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "recommended here:" in result.stdout
    prior = json.loads(edgekit("doctor", "--json", cwd=tmp_path).stdout)["recommendation"]
    assert prior["source"] == "prior" and prior["runtime"] in runtime_names()
    # with a project measured on some host: this host's measurements are used, another host's are not
    measured = json.loads(edgekit("doctor", "--json", "-C", str(FIXTURE), cwd=tmp_path).stdout)
    summary = json.loads((FIXTURE / "metrics" / "summary.json").read_text())
    if measured["cpu"]["model"] == summary["host"]["cpu_model"] and measured["cpu"]["vendor"] == summary["host"]["vendor"]:
        assert measured["recommendation"]["variant"] == summary["decision"]["recommended"]
    else:
        assert measured["recommendation"]["source"] == "prior" and summary["host"]["cpu_model"] in measured["recommendation"]["note"]


def test_gate_names_the_passing_variants_and_fails_when_none_pass(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(FIXTURE, project)
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())
    summary = json.loads((project / "metrics" / "summary.json").read_text())
    done = edgekit("gate", cwd=project)
    assert done.returncode == 0, done.stderr
    assert f"recommended: {summary['decision']['recommended']}" in done.stdout
    gates = json.loads((project / "outputs" / "gates.json").read_text())
    for stages in gates["variants"].values():
        for gate in stages["production"]["gates"]:
            if gate["gate"] == "speedup":
                gate.update(threshold=1000.0, result="fail")
        if stages["production"]["verdict"] != "not measured":
            stages["production"]["verdict"] = "fail"
    (project / "outputs" / "gates.json").write_text(json.dumps(gates))
    done = edgekit("gate", cwd=project)
    assert done.returncode == 1
    assert "no variant passes the blocking gates of stage 'production'" in done.stderr
    assert re.search(r"ort-int8: [^\n]*speedup [\d.]+ < 1000", done.stderr), done.stderr
    assert "mlx-int8: not measured (mlx not installed)" in done.stderr
    done = edgekit("gate", "--stage", "canary", cwd=project)
    assert done.returncode == 1 and "no gates for stage 'canary'" in done.stderr
    # what `dvc repro` runs: the same finding, said plainly, and the pipeline stays green
    done = edgekit("gate", "--advisory", cwd=project)
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    assert "no variant passes the blocking gates of stage 'production'" in flat
    assert "nothing qualifies for production on this host" in flat and "outputs/gates.json" in flat
    assert "`edgekit gate --stage production` fails on this" in flat


def test_gate_also_judges_the_decoder_variants(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(FIXTURE, project)
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())

    def row(name: str, kl: float, passed: bool) -> dict:
        gates = [{"gate": "kl_mean", "max": 0.05, "value": kl, "estimate": "ci", "passed": kl <= 0.05, "action": "block"}]
        return {"variant": name, "status": "ok", "verdicts": {"production": {"passed": passed, "gates": gates}}}

    decoders = {"baseline": "llama-fp32", "stage": "production",
                "variants": [row("llama-fp32", 0.0, False), row("gguf-q4_k_m", 0.001, True), row("ort-int4", 0.2, False),
                             {"variant": "mlx-int4", "status": "skipped", "reason": "mlx not installed"}],
                "recommendation": {"variant": "gguf-q4_k_m", "stage": "production", "why": "highest decode speed-up"}}
    (project / "metrics" / "decoder_summary.json").write_text(json.dumps(decoders))
    done = edgekit("gate", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "1 decoder variant(s) pass the blocking decoder gates of production: gguf-q4_k_m" in " ".join(done.stdout.split())
    assert "recommended decoder: gguf-q4_k_m" in done.stdout and "ort-int4: kl_mean 0.2 (95% CI end) > 0.05" in done.stdout
    decoders["variants"][1] = row("gguf-q4_k_m", 0.09, False)
    decoders["recommendation"] = {"variant": None, "stage": "production", "why": "none passes"}
    (project / "metrics" / "decoder_summary.json").write_text(json.dumps(decoders))
    done = edgekit("gate", cwd=project)
    assert done.returncode == 1
    assert "no decoder variant passes the blocking decoder gates of stage 'production'" in done.stderr
    assert "gguf-q4_k_m: kl_mean 0.09 (95% CI end) > 0.05" in done.stderr and "mlx-int4: not measured (mlx not installed)" in done.stderr
    done = edgekit("gate", "--advisory", cwd=project)
    assert done.returncode == 0 and "no decoder variant passes" in " ".join(done.stdout.split())


def test_gates_lists_every_gate():
    done = edgekit("gates", cwd=REPO)
    assert done.returncode == 0
    for name in ("accuracy_retention", "speedup", "memory_reduction", "fairness", "latency_p99_ms"):
        assert name in done.stdout


def test_the_commented_out_variants_in_params_yaml_are_valid(project):
    """The variants params.yaml offers below the default sweep pass `edgekit check` once uncommented."""
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())["variants"]
    more = yaml.safe_load(uncomment_more_variants((REPO / "params.yaml").read_text()))["variants"]
    assert set(yaml.safe_load((project / "params.yaml").read_text())["variants"]) == set(more)  # what small_params gives
    offered = set(more) - set(shipped)
    assert {"pytorch-compile", "ov-int8-accuracy", "gguf-q5_k_m", "mlx-fp32"} <= offered
    for runtime in runtime_names():  # the default sweep itself keeps every runtime
        assert any(variant["runtime"] == runtime for variant in shipped.values()), runtime
    result = edgekit("check", cwd=project)
    assert result.returncode == 0, result.stderr
    assert f"params valid: {len(shipped) + len(offered)} variants" in result.stdout
