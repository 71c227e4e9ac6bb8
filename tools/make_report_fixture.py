"""Refresh tests/fixtures/report_project from a finished pipeline run (samples trimmed, one skipped
variant added so the report's "not measured" path runs too).

Run: python tools/make_report_fixture.py PROJECT_DIR
"""

import json
import shutil
import sys
from pathlib import Path

KEEP_SAMPLES = 40
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "report_project"
SKIPPED = {"variant": "mlx-int8", "runtime": "mlx", "precision": "int8", "status": "skipped",
           "reason": "mlx not installed", "install": 'pip install -c requirements/lock.txt -e ".[mlx]"'}


def _dump(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def main(project: Path) -> None:
    shutil.rmtree(FIXTURE, ignore_errors=True)
    for rel in ("outputs/environment.json", "outputs/roofline.json", "metrics/baseline.json"):
        _dump(FIXTURE / rel, json.loads((project / rel).read_text()))
    summary = json.loads((project / "metrics/summary.json").read_text())
    for name in summary["variants"]:
        raw = json.loads((project / "outputs/benchmark" / f"{name}.json").read_text())
        for scenario in raw["scenarios"]:
            for run in scenario["runs"]:
                run["samples_ms"] = [round(x, 4) for x in run["samples_ms"][:KEEP_SAMPLES]]
        _dump(FIXTURE / "outputs/benchmark" / f"{name}.json", raw)
        _dump(FIXTURE / "metrics/benchmark" / f"{name}.json", json.loads((project / "metrics/benchmark" / f"{name}.json").read_text()))
    gates = json.loads((project / "outputs/gates.json").read_text())
    stages = {stage: {"verdict": "not measured", "reason": SKIPPED["reason"], "gates": []}
              for stage in next(iter(gates["variants"].values()))}
    gates["variants"][SKIPPED["variant"]] = stages
    _dump(FIXTURE / "outputs/gates.json", gates)
    summary["variants"][SKIPPED["variant"]] = {**SKIPPED, "verdicts": {s: "not measured" for s in stages},
                                               "target_stage": summary["decision"]["target_stage"]}
    _dump(FIXTURE / "metrics/summary.json", summary)
    _dump(FIXTURE / "outputs/benchmark" / f"{SKIPPED['variant']}.json", {**SKIPPED, "scenarios": []})
    _dump(FIXTURE / "metrics/benchmark" / f"{SKIPPED['variant']}.json", SKIPPED)
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
