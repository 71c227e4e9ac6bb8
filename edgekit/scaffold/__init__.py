"""``edgekit init``: the edgekit pipeline in a data scientist's own git repository.

It writes what this repository runs, taken from the installed package (``edgekit/scaffold/project``, links to
this repository's own files, so the two cannot drift; DVC ignores that folder, see ``.dvcignore``): ``dvc.yaml``, ``params.yaml`` pointing at her model,
``policy.yaml``, the report, model card and lifecycle notebooks, a sample evaluation set (unless she names
her own), an empty allowed-signers file, ``requirements/lock.txt`` pinning the environment it ran in, and DVC
(``dvc init`` unless the repository has it). ``dvc repro`` then runs there.

Her ``dvc.yaml`` differs from ours in one way: our stages list edgekit's own source files as deps, because
the code lives in our repository; in hers edgekit is an installed package, pinned with the rest of the
environment in ``requirements/lock.txt``, which every stage depends on.

Example:
    $ cd my-model-repo && edgekit init --model ./models/my-encoder && git add -A && git commit -m edgekit && dvc repro
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from edgekit import __version__
from edgekit.errors import EdgekitError
from edgekit.fsutil import write_bytes

NOTEBOOKS = ("report.ipynb", "model_card.ipynb", "lifecycle.ipynb")
SAMPLE_DATA = ("README.md", "calibration_sentences.txt", "sts_pairs.tsv", "fairness/README.md", "fairness/groups.yaml",
               "fairness/templates.tsv")
SIGNERS = """\
# Who may sign registry approvals (policy.yaml lifecycle.allowed_signers), in ssh-keygen's allowed_signers format:
#   <principal> <key type> <public key>
# for example the line `echo "$(git config user.email) $(cat ~/.ssh/id_ed25519.pub)"` prints. Review it like code.
"""
_HEADER = """\
# The edgekit pipeline, written by `edgekit init` (edgekit {version}). Each stage is one `edgekit` verb; parameters
# come from params.yaml. Run `dvc repro` (everything) or `dvc repro benchmark@ort-int8` (one variant).
#
# Every stage depends on requirements/lock.txt, which pins edgekit and the rest of the environment: after an
# upgrade, write it again (`pip freeze > requirements/lock.txt`) and the stages run again.
"""


@dataclass
class Scaffolded:
    written: list[Path] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def template(name: str) -> str:
    """One of this repository's files as the installed package carries it (``dvc.yaml``, ``notebooks/report.ipynb``).

    ``dvc.yaml`` is carried as ``dvc.yaml.in``: DVC reads every file named dvc.yaml in a repository as a pipeline, and
    would otherwise run ours twice.
    """
    stored = "dvc.yaml.in" if name == "dvc.yaml" else name
    return files("edgekit.scaffold").joinpath("project", *stored.split("/")).read_text(encoding="utf-8")


def user_pipeline(ours: str) -> str:
    """Our dvc.yaml for a project where edgekit is an installed package: edgekit's source files and our Dockerfile
    leave the deps (requirements/lock.txt, which pins edgekit, stays), and the header explains that."""
    kept = [line for line in ours.splitlines() if not re.fullmatch(r"\s+- (edgekit/\S+|Dockerfile)\s*(#.*)?", line)]
    body = "\n".join(kept)
    return _HEADER.format(version=__version__) + body[body.index("stages:"):] + "\n"


def user_params(ours: str, model: str | None, data: str | None) -> str:
    """Our params.yaml with ``model.source`` and ``data.source_dir`` set (comments kept)."""
    text = ours
    for key, value in (("source", model), ("source_dir", data)):
        if value is None:
            continue
        pattern = re.compile(rf"^(  {key}: )(\S+)", re.MULTILINE)
        if not pattern.search(text):
            raise AssertionError(f"params.yaml template has no '  {key}:' line")
        text = pattern.sub(lambda m, v=value: m.group(1) + json.dumps(v), text, count=1)
    return text


def locked_environment() -> str:
    """``pip freeze`` of this interpreter, with edgekit pinned by version even when it is an editable install."""
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True)
    if frozen.returncode != 0:
        raise EdgekitError(f"pip freeze failed: {frozen.stderr.strip()[-500:]}", "run edgekit init from the environment edgekit is installed in")
    pins = [line for line in frozen.stdout.splitlines() if line and not line.startswith(("-e ", "edgekit=="))]
    header = (f"# The environment `edgekit init` ran in (pip freeze, Python {sys.version.split()[0]}); every pipeline stage\n"
              "# depends on this file. Install with: pip install -r requirements/lock.txt\n")
    return header + "\n".join([f"edgekit=={__version__}", *pins]) + "\n"


def _git_root(project: Path) -> Path:
    found = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=project, capture_output=True, text=True)
    if found.returncode != 0:
        raise EdgekitError(f"{project} is not in a git repository", f"git init {project}, then run edgekit init again")
    return Path(found.stdout.strip())


def _inside(project: Path, path: Path, what: str) -> str:
    resolved = (project / path).resolve()  # an absolute path stays itself
    try:
        return resolved.relative_to(project).as_posix()
    except ValueError:
        raise EdgekitError(f"{what} {path} is outside the project {project}",
                           "copy or `dvc import` it into the project (DVC tracks only what is inside), then pass that path") from None


def init(project: str | Path = ".", model: str | None = None, data: str | Path | None = None, force: bool = False) -> Scaffolded:
    """Write the pipeline into ``project`` (a git repository); see the module.

    Args:
        model: ``model.source``: a local folder (inside the project, so DVC sees it), an installed model package or
            a Hugging Face id in the local cache; default: ours, all-MiniLM-L6-v2.
        data: a folder inside the project laid out like ``data/source``; default: a copy of edgekit's sample set.
        force: overwrite the files edgekit init writes; without it, any of them existing is an error and nothing is
            written.

    Raises:
        EdgekitError: not a git repository, a path outside the project, files that exist, a model that is not found.
    """
    project = Path(project).resolve()
    if not project.is_dir():
        raise EdgekitError(f"project folder {project} does not exist", f"mkdir -p {project} && git init {project}")
    root = _git_root(project)
    if model and (model.startswith((".", "/")) or (project / model).is_dir()):
        folder = Path(model)
        if not (project / folder).is_dir():
            raise EdgekitError(f"--model {model}: no such folder", "give a folder holding config.json and the weights, "
                                                                   "an installed model package or a Hugging Face id")
        model = "./" + _inside(project, folder, "--model")
    data_dir = _inside(project, Path(data), "--data") if data else None
    if data_dir and not (project / data_dir / "sts_pairs.tsv").is_file():
        raise EdgekitError(f"--data {data}: {data_dir}/sts_pairs.tsv does not exist",
                           "lay it out like edgekit's data/source (sts_pairs.tsv, calibration_sentences.txt, fairness/)")

    planned: dict[str, bytes] = {
        "dvc.yaml": user_pipeline(template("dvc.yaml")).encode(),
        "params.yaml": user_params(template("params.yaml"), model, data_dir).encode(),
        "policy.yaml": template("policy.yaml").encode(),
        ".edgekit/allowed_signers": SIGNERS.encode(),
        "requirements/lock.txt": locked_environment().encode(),
        **{f"notebooks/{name}": template(f"notebooks/{name}").encode() for name in NOTEBOOKS},
    }
    if data_dir is None:
        planned.update({f"data/source/{name}": template(f"data/source/{name}").encode() for name in SAMPLE_DATA})
    existing = [name for name in planned if (project / name).exists()]
    if existing and not force:
        raise EdgekitError(f"{', '.join(existing)} already exist(s) in {project}", "pass --force to overwrite them (nothing was written)")

    result = Scaffolded()
    for name, content in planned.items():
        write_bytes(project / name, content)
        result.written.append(Path(name))
    if not (project / ".dvc").is_dir():
        _dvc(project, "init", *(["--subdir"] if root != project else []))
        result.written.append(Path(".dvc"))
    _dvc(project, "config", "core.autostage", "true")

    from edgekit import api

    params = api.check(project)  # the model and the data, as `dvc repro` will see them
    result.next_steps = [
        f"model {params.model.source}, {len(params.variants)} variants, data {params.data.source_dir}",
        "next: git add -A && git commit -m 'edgekit pipeline' && dvc repro",
        "then: edgekit gate; open notebooks/lifecycle.ipynb in JupyterLab to register and promote; "
        "add approvers' keys to .edgekit/allowed_signers",
    ]
    return result


def _dvc(project: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        raise EdgekitError(f"dvc {' '.join(args)} failed in {project}: {done.stderr.strip()[-500:]}",
                           "install DVC: pip install 'edgekit[pipeline]'")


__all__ = ["Scaffolded", "init", "template", "user_params", "user_pipeline"]
