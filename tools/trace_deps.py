"""Print the edgekit source files each DVC stage imported, from an import trace, as dvc.yaml deps.

Per-variant stages (``optimize@ort-int8``) are folded into one list per stage family: files under the
variant's own runtime folder become ``edgekit/runtimes/${item.runtime}``, the rest must be common to
every variant of that family (a file that only some variants import is reported, since one template
cannot list it).

Run:
    EDGEKIT_IMPORT_TRACE=/tmp/trace dvc repro
    python tools/trace_deps.py /tmp/trace
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


def fold(files: dict[str, set[str]], runtimes: dict[str, str]) -> dict[str, list[str]]:
    families: dict[str, list[set[str]]] = defaultdict(list)
    for stage, imported in files.items():
        family, _, variant = stage.partition("@")
        own = runtimes.get(variant)
        generic = {("edgekit/runtimes/${item.runtime}" if own and RUNTIME_FILE.match(f) and RUNTIME_FILE.match(f)[1] == own
                    else f) for f in imported}
        families[family].append(generic)
    result = {}
    for family, sets in families.items():
        common, every = set.intersection(*sets), set.union(*sets)
        for odd in sorted(every - common):
            print(f"# {family}: only some variants import {odd}", file=sys.stderr)
        result[family] = sorted(every)
    return result


def main(trace: Path, params: Path = Path("params.yaml")) -> None:
    import yaml

    variants = yaml.safe_load(params.read_text())["variants"]
    runtimes = {name: spec["runtime"] for name, spec in variants.items()}
    for family, deps in sorted(fold(stage_files(trace), runtimes).items()):
        print(f"{family}:")
        for dep in deps:
            print(f"  - {dep}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path("params.yaml"))
