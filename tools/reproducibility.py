"""Run the deterministic stages again with ``dvc repro --force`` and say which outputs came out bit-identical.

Deterministic by design: data (seeded split), baseline, every optimizer, every evaluation. Timing stages
(calibrate, benchmark) and what reads them (select, report, model card, gate) measure the machine, so
they are left out. For a variant folder whose DVC digest changed, the files that differ are listed from
its manifest (``files``).

Run in a project after `dvc repro` (it re-runs about a third of the pipeline):
    python tools/reproducibility.py [--stages data baseline optimize evaluate]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

FAMILIES = ("data", "baseline", "optimize", "evaluate")


def lock_outs(root: Path) -> dict[str, dict[str, str]]:
    """Per stage, each output path and its DVC md5."""
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {name: {out["path"]: out["md5"] for out in stage.get("outs", [])} for name, stage in stages.items()}


def manifests(root: Path) -> dict[str, dict[str, str]]:
    found = {}
    for path in sorted((root / "models" / "variants").glob("*/manifest.json")):
        found[path.parent.name] = {f: d["sha256"] for f, d in json.loads(path.read_text()).get("files", {}).items()}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--stages", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    args = parser.parse_args()
    root = args.project
    before, files_before = lock_outs(root), manifests(root)
    chosen = [name for name in before if name.partition("@")[0] in args.stages]
    for name in chosen:
        print(f"dvc repro --force --single-item {name}", file=sys.stderr, flush=True)
        subprocess.run(["dvc", "repro", "--force", "--single-item", name], cwd=root, check=True, capture_output=True)
    after, files_after = lock_outs(root), manifests(root)
    identical, differing = [], []
    for name in chosen:
        for path, md5 in before[name].items():
            (identical if after[name].get(path) == md5 else differing).append((name, path))
    print(f"{len(identical)} of {len(identical) + len(differing)} outputs bit-identical after `dvc repro --force`")
    for name, path in differing:
        variant = name.partition("@")[2]
        changed = sorted(f for f, digest in files_after.get(variant, {}).items()
                         if files_before.get(variant, {}).get(f) != digest) if name.startswith("optimize@") else []
        print(f"  differs: {name} {path}" + (f" (files: {', '.join(changed)})" if changed else ""))
    for name, path in identical:
        print(f"  same:    {name} {path}")


if __name__ == "__main__":
    main()
