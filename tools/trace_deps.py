"""Print the edgekit source files each DVC stage imported, from an import trace, as dvc.yaml deps.

Per-variant stages (``optimize@ort-int8``) are folded into one list per stage family: files under the
variant's own runtime folder become ``edgekit/runtimes/${item.runtime}``, the rest must be common to
every variant of that family (a file that only some variants import is reported, since one template
cannot list it).

Run:
    EDGEKIT_IMPORT_TRACE=/tmp/trace dvc repro
    python tools/trace_deps.py /tmp/trace            # print
    python tools/trace_deps.py /tmp/trace --write    # replace the edgekit/ deps of each stage in dvc.yaml
"""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

RUNTIME_FILE = re.compile(r"^edgekit/runtimes/([^/]+)/")


def stage_files(trace: Path) -> dict[str, set[str]]:
    files: dict[str, set[str]] = defaultdict(set)
    for path in trace.glob("*.json"):
        record = json.loads(path.read_text())
        files[record["stage"]].update(record["files"])
    return files


def runs_on(runtime: str) -> tuple[str, ...]:
    from edgekit.runtimes import get_runtime

    return get_runtime(runtime).runs_on


def fold(files: dict[str, set[str]], runtimes: dict[str, str], decoders: dict[str, str] | None = None) -> dict[str, list[str]]:
    """``runtimes``: encoder variant → runtime; ``decoders``: the same for the ``decoder_*`` stage families."""
    families: dict[str, list[set[str]]] = defaultdict(list)
    for stage, imported in files.items():
        family, _, variant = stage.partition("@")
        own = (decoders or {}).get(variant) if family.startswith("decoder_") else runtimes.get(variant)
        # a runtime that runs on another (Olive's models run in ONNX Runtime) imports that one's folder too,
        # which one template cannot list; tests/test_pipeline.py allows exactly those (``runs_on``)
        borrowed = set(runs_on(own)) if own else set()
        generic = {("edgekit/runtimes/${item.runtime}" if own and RUNTIME_FILE.match(f) and RUNTIME_FILE.match(f)[1] == own
                    else f) for f in imported if not (RUNTIME_FILE.match(f) and RUNTIME_FILE.match(f)[1] in borrowed)}
        families[family].append(generic)
    result = {}
    for family, sets in families.items():
        common, every = set.intersection(*sets), set.union(*sets)
        for odd in sorted(every - common):
            print(f"# {family}: only some variants import {odd}", file=sys.stderr)
        result[family] = sorted(every)
    return result


STAGE = re.compile(r"^  ([a-z_]+):\s*$")
EDGEKIT_DEP = re.compile(r"^(\s+)- edgekit/\S+\s*$")


def rewrite(text: str, deps: dict[str, list[str]]) -> str:
    """``dvc.yaml`` with each traced stage's ``edgekit/`` deps replaced, in place of the old ones; other deps,
    comments and order untouched."""
    out, stage, written = [], None, set()
    for line in text.splitlines(keepends=True):
        if match := STAGE.match(line):
            stage = match[1]
        if (match := EDGEKIT_DEP.match(line)) and stage in deps:
            if stage not in written:
                out += [f"{match[1]}- {dep}\n" for dep in deps[stage]]
                written.add(stage)
            continue
        out.append(line)
    missing = set(deps) - written
    if missing:
        raise SystemExit(f"stages without edgekit/ deps to replace in dvc.yaml: {sorted(missing)}")
    return "".join(out)


def main(argv: list[str]) -> None:
    import yaml

    trace, write = Path(argv[0]), "--write" in argv
    params = yaml.safe_load(Path("params.yaml").read_text())
    runtimes = {name: spec["runtime"] for name, spec in params["variants"].items()}
    decoders = {name: spec["runtime"] for name, spec in (params.get("decoder") or {}).get("variants", {}).items()}
    deps = fold(stage_files(trace), runtimes, decoders)
    if write:
        Path("dvc.yaml").write_text(rewrite(Path("dvc.yaml").read_text(), deps))
        return
    for family, files in sorted(deps.items()):
        print(f"{family}:")
        for dep in files:
            print(f"  - {dep}")


if __name__ == "__main__":
    main(sys.argv[1:])
