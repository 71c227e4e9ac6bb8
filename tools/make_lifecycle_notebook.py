"""Regenerate notebooks/lifecycle.ipynb from the cell sources below (reviewable diffs).

Run: python tools/make_lifecycle_notebook.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """\
# edgekit lifecycle: from the benchmark to a promotion
**Interactively**, in JupyterLab: explore the variants, then register, approve (signed with your SSH key) and promote
in the registry panel at the end. **Headless**, as the auditable record of a promotion (CI):

```
papermill notebooks/lifecycle.ipynb reports/lifecycle-production.ipynb \\
    -p variant ort-int8 -p target_stage production -p key ~/.ssh/id_ed25519 -p act True
```

Every action is a call of `edgekit.registry`, the API behind `edgekit registry`, so it leaves the same events, signed
the same way; a refusal (a failing gate, a missing signature, a dirty workspace) stops the run with the registry's
reason. Without a widget frontend, the explorer and the panel keep a static copy of what they show."""),
    ("params", """\
project_dir = "."         # the DVC project (a git repository): its pipeline outputs and its registry
model = ""                # the model name in the registry; empty: from model.source in params.yaml
variant = ""              # the variant to register; empty: the recommended one
target_stage = "staging"  # how far act promotes: staging or production
key = ""                  # SSH private key that signs; empty: git user.signingkey, else ~/.ssh/id_ed25519
act = False               # True: register (unless this commit has it), approve, promote; False: look only"""),
    ("code", """\
%load_ext edgekit
from pathlib import Path

from IPython.display import Markdown, display

from edgekit import notebook, registry
from edgekit.notebook.lifecycle import promote_to
from edgekit.notebook.panel import default_key

project = Path(project_dir).resolve()
key = key or default_key(project)
notebook.results(project)"""),
    ("md", "## The variants\nThe table sorts and filters; a click on a point of the Pareto plot shows that variant's "
           "latency in each scenario, its gates with their evidence, its roofline and diagnosis."),
    ("code", "notebook.BenchmarkExplorer(project)"),
    ("md", "## The promotion\nWith `act=True`: the steps this run wrote to the registry, then the version's record and gates."),
    ("code", """\
if act:
    steps = promote_to(project, target_stage, model=model or None, variant=variant or None, key=key or None)
    display(steps)
    shown = registry.show(project)
    name = model or next(iter(shown["models"]))
    version = shown["models"][name]["stages"].get(target_stage) or shown["models"][name]["latest"]
    display(notebook.version(project, f"{name}@{version}"))
else:
    display(Markdown("`act=False`: nothing is written here; use the registry panel below."))"""),
    ("md", "## The registry\nEvery event is verified again from the log (hash chain, signatures, gates re-evaluated on the "
           "pinned metrics); the panel's buttons write through the same API."),
    ("code", """\
if registry.show(project)["models"]:
    checked = registry.verify(project)
    display(Markdown(f"**verify**: {'ok' if checked['ok'] else 'FAILED'}, {checked['events']} event(s)"))
    if not checked["ok"]:
        raise RuntimeError(f"registry verify failed: {checked['problems']}")
%edgekit registry history -C {project}"""),
    ("code", "notebook.RegistryPanel(project, key=key or None)"),
]


def build() -> nbformat.NotebookNode:
    cells = []
    for kind, source in CELLS:
        if kind == "md":
            cells.append(new_markdown_cell(source))
        else:
            cell = new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
            cells.append(cell)
    notebook = new_notebook(cells=cells)
    notebook.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}}
    return notebook


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "notebooks" / "lifecycle.ipynb"
    nbformat.write(build(), target)
    print(f"wrote {target}")
