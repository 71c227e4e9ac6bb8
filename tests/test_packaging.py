"""Static checks of the repository: one lock for every install path, and a consistent pipeline."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[([^\]]*)\])?")


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_lines(repo) -> list[str]:
    lines = (repo / "requirements" / "lock.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def lock_pins(repo) -> dict[str, str]:
    pins = {}
    for line in lock_lines(repo):
        name, _, version = line.partition("==")
        pins[normalize(name)] = version.split(";")[0].strip()
    return pins


def test_lock_pins_every_line(repo):
    lines = lock_lines(repo)
    assert len(lines) > 50
    unpinned = [line for line in lines if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+(\s*;.*)?", line)]
    assert not unpinned, f"not pinned with ==: {unpinned}"
    names = [normalize(line.partition("==")[0]) for line in lines]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"pinned twice: {duplicates}"


def test_lock_has_cpu_torch_and_no_gpu_or_torchvision(repo):
    lines = lock_lines(repo)
    assert "torch==2.13.0+cpu" in lines
    names = {normalize(line.partition("==")[0]) for line in lines}
    assert "torchvision" not in names
    assert not [n for n in names if n.startswith("nvidia-")]


def _extras(repo) -> tuple[list[str], dict[str, list[str]]]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    return project["dependencies"], project["optional-dependencies"]


def _names(requirements: list[str], extras: dict[str, list[str]], seen: frozenset = frozenset()) -> set[str]:
    """Requirement names, with ``edgekit[...]`` self-references resolved recursively."""
    names = set()
    for requirement in requirements:
        match = NAME.match(requirement)
        assert match, f"cannot parse requirement {requirement!r}"
        name = normalize(match.group(1))
        if name == "edgekit":
            for extra in (e.strip() for e in (match.group(3) or "").split(",") if e.strip()):
                assert extra in extras, f"edgekit[{extra}] is not an extra"
                if extra not in seen:
                    names |= _names(extras[extra], extras, seen | {extra})
        else:
            names.add(name)
    return names


def test_every_extra_requirement_is_in_the_lock(repo):
    core, extras = _extras(repo)
    pins = lock_pins(repo)
    for extra, requirements in extras.items():
        missing = sorted(_names(requirements, extras, frozenset({extra})) - set(pins))
        assert not missing, f"extra {extra!r} needs {missing}, which requirements/lock.txt does not pin"
    missing = sorted(_names(core, extras) - set(pins))
    assert not missing, f"core dependencies {missing} are not pinned"
    assert {"torch", "onnxruntime", "dvc", "papermill", "llama-cpp-python", "mlx", "olive-ai"} <= _names(extras["all"], extras)


def test_torch_pin_in_pyproject_matches_the_lock(repo):
    _, extras = _extras(repo)
    pins = lock_pins(repo)
    torch = [r for r in extras["pytorch"] if normalize(NAME.match(r).group(1)) == "torch"]
    assert torch == [f"torch=={pins['torch'].split('+')[0]}"]
    assert not any("torchvision" in r for reqs in extras.values() for r in reqs)


def test_environment_yml_uses_python_311_and_the_lock(repo):
    env = yaml.safe_load((repo / "environment.yml").read_text())
    dependencies = env["dependencies"]
    pythons = [d for d in dependencies if isinstance(d, str) and re.match(r"python[=<>\s]", d)]
    assert len(pythons) == 1 and re.fullmatch(r"python=3\.11(\.\d+)?", pythons[0]), pythons
    pip = [d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1
    assert "-c requirements/lock.txt" in pip[0]
    assert any(line.startswith("-e .[") for line in pip[0])


def dockerfile_instructions(repo, name: str = "Dockerfile") -> list[str]:
    lines = (repo / name).read_text().splitlines()
    joined, current = [], ""
    for line in lines:
        if line.strip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                joined.append(current.strip())
            current = ""
    return joined


def test_dockerfile_is_pinned_and_uses_the_lock(repo):
    instructions = dockerfile_instructions(repo)
    assert re.fullmatch(r"FROM python:3\.11\.\d+(-[a-z0-9-]+)?", instructions[0]), instructions[0]
    copies = [i for i in instructions if i.startswith("COPY ")]
    assert any("requirements/lock.txt" in c for c in copies)
    installs = [i for i in instructions if i.startswith("RUN ") and "pip install" in i and "-e" in i]
    assert installs and all("-c requirements/lock.txt" in i for i in installs)
    copy_index = next(n for n, i in enumerate(instructions) if i.startswith("COPY ") and "requirements/lock.txt" in i)
    install_index = instructions.index(installs[0])
    assert copy_index < install_index
    assert "torchvision" not in (repo / "Dockerfile").read_text()


def test_the_serving_dockerfile_installs_the_serve_extra_from_the_lock_and_runs_edgekit_serve(repo):
    instructions = dockerfile_instructions(repo, "Dockerfile.serve")
    assert re.fullmatch(r"FROM python:3\.11\.\d+(-[a-z0-9-]+)?", instructions[0]), instructions[0]
    installs = [i for i in instructions if i.startswith("RUN ") and "pip install" in i and "-e" in i]
    assert installs and all("-c requirements/lock.txt" in i and "serve" in i for i in installs)
    assert any(i.startswith("ENTRYPOINT") and '"edgekit", "serve"' in i for i in instructions)
    # the pipeline's environment stage depends on ./Dockerfile; the serving recipe must not be one of its deps
    environment_deps = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["environment"]["deps"]
    assert "Dockerfile.serve" not in environment_deps


def test_readme_commands_are_what_ci_runs(repo):
    readme = repo / "README.md"
    if not readme.is_file():
        pytest.skip("README.md does not exist yet")
    blocks = re.findall(r"^```(bash|sh|shell|console)\s*\n(.*?)^```", readme.read_text(), flags=re.S | re.M)
    assert blocks, "README.md has no fenced shell block"
    commands = [line.strip() for line in blocks[0][1].splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(commands) == 2, commands
    ci = (repo / ".ci" / "run").read_text()
    ci_commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands[1] in ci_commands


def dvc_stages(repo) -> dict:
    return yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]


def test_dvc_has_every_stage(repo):
    stages = dvc_stages(repo)
    assert list(stages) == ["environment", "calibrate", "data", "baseline", "optimize", "benchmark", "evaluate",
                            "decoder_model", "decoder_baseline", "decoder_optimize", "decoder_benchmark", "decoder_evaluate",
                            "decoder_select", "select", "report", "model_card", "gate"]
    for name in ("optimize", "benchmark", "evaluate"):
        assert stages[name]["foreach"] == "${variants}", name
        assert "${key}" in stages[name]["do"]["cmd"]
        assert stages[f"decoder_{name}"]["foreach"] == "${decoder.variants}", name
        assert "${key}" in stages[f"decoder_{name}"]["do"]["cmd"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        assert body["cmd"].startswith(f"edgekit {name.replace('_', '-')}"), name


def _paths(body: dict, keys: tuple[str, ...], variants: dict[str, dict]) -> set[str]:
    paths = set()
    for key in keys:
        for entry in body.get(key, []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            if "${" in path:
                paths |= {path.replace("${key}", name).replace("${item.runtime}", spec["runtime"]) for name, spec in variants.items()}
            else:
                paths.add(path)
    return paths


def test_every_dvc_dependency_exists_or_is_produced(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    produced, deps = set(), set()
    for stage in dvc_stages(repo).values():
        body = stage.get("do", stage)
        variants = params["decoder"]["variants"] if stage.get("foreach") == "${decoder.variants}" else params["variants"]
        body = yaml.safe_load(yaml.safe_dump(body).replace("${decoder.corpus_dir}", params["decoder"]["corpus_dir"]))
        produced |= _paths(body, ("outs", "metrics", "plots"), variants)
        deps |= _paths(body, ("deps",), variants)

    def is_produced(dep: str) -> bool:
        return any(out == dep or out.startswith(dep.rstrip("/") + "/") or dep.startswith(out + "/") for out in produced)

    missing = sorted(dep for dep in deps if not is_produced(dep) and not (repo / dep).exists())
    assert not missing, f"dvc.yaml deps that no stage makes and the repo lacks: {missing}"
    assert "data/source" in deps and not is_produced("data/source")


def test_every_dvc_param_section_exists(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for name, stage in dvc_stages(repo).items():
        body = stage.get("do", stage)
        for entry in body.get("params", []):
            if isinstance(entry, dict):  # a whole other params file, e.g. `policy.yaml:`
                assert all((repo / file).is_file() for file in entry), f"{name}: params file {entry} is missing"
                continue
            head = entry.split(".")[0]
            assert head in params, f"{name}: param {entry!r} is not in params.yaml"


def test_jupyterlab_in_the_venv_shows_the_widgets_with_no_build_step():
    """`make setup` installs JupyterLab with the prebuilt extensions of ipywidgets, anywidget and plotly (the benchmark
    explorer's plot): nothing to build, nothing to fetch."""
    done = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True, check=True)
    listing = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    assert re.search(r"@jupyter-widgets/jupyterlab-manager v\S+ enabled OK \(python, jupyterlab_widgets\)", listing), listing
    assert re.search(r"anywidget v\S+ enabled OK", listing) and re.search(r"jupyterlab-plotly v\S+ enabled OK \(python, plotly\)", listing), listing
    assert "jupyter lab build" not in listing, listing  # JupyterLab's "build recommended" notice
