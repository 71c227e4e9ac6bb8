"""A version's reproduction record: how the variant was made and measured, pinned by digests.

It holds the code commit, the ``dvc.lock`` entries of the stages the variant depends on (data, params and
output digests), the environment fingerprint and host, every model file's digest and format (the scan),
the variant's metrics and gate verdicts, the policy and model card digests, and the evidence the gates
read (its summary row, the baseline's, and both latency samples) so a promotion re-evaluates the gates on
exactly these numbers.

Example:
    >>> record = build_record(RegistryProject.open(Path(".")), "all-minilm-l6-v2", "v1.0.0", "ort-int8")
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from edgekit.fsutil import read_json, sha256_file
from edgekit.layout import Layout
from edgekit.registry.errors import RegistryError, WorkspaceError
from edgekit.registry.gitrepo import GitRepo

SCHEMA_VERSION = 1


def check_workspace(repo: GitRepo, project: Path) -> None:
    """Refuse uncommitted changes and a pipeline whose outputs are not what dvc.lock pins.

    Raises:
        WorkspaceError: naming the files or stages, with the command that fixes it.
    """
    dirty = repo.dirty()
    if dirty:
        shown = ", ".join(line[3:] for line in dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise WorkspaceError(f"the workspace has uncommitted changes: {shown}",
                             "commit them (git add -A && git commit) or stash them (git stash -u), then register")
    stale = dvc_status(project)
    if stale:
        first = next(iter(stale.items()))
        raise WorkspaceError(f"the pipeline is not what dvc.lock pins: {len(stale)} stage(s) changed, e.g. {first[0]}: {_describe(first[1])}",
                             "run `dvc repro`, then commit dvc.lock (`dvc status` shows every change)")


def dvc_status(project: Path) -> dict[str, Any]:
    """``dvc status --json`` without the stages that are only marked always-changed."""
    done = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=project, capture_output=True, text=True)
    if done.returncode:
        raise WorkspaceError(f"`dvc status` failed: {done.stderr.strip()[-400:]}", "run `dvc status` in the project and fix what it says")
    status = json.loads(done.stdout or "{}")
    return {stage: changes for stage, changes in status.items() if changes != ["always changed"]}


def _describe(changes: Any) -> str:
    return json.dumps(changes, sort_keys=True)[:300]


def build_record(repo: GitRepo, project: Path, model: str, version: str, variant: str, scan: dict[str, Any]) -> dict[str, Any]:
    """The reproduction record of ``variant`` as registered at HEAD (the workspace already checked clean)."""
    layout = Layout(project)
    summary, gates = read_json(layout.summary), read_json(layout.gates)
    row = summary["variants"].get(variant)
    if row is None or row.get("status") != "ok":
        raise RegistryError(f"variant {variant!r} has no measurements in {layout.summary.relative_to(project)} "
                            f"(status {row.get('status') if row else 'absent'})",
                            f"measured variants: {', '.join(n for n, r in summary['variants'].items() if r.get('status') == 'ok')}")
    lock_path = project / "dvc.lock"
    return {
        "schema_version": SCHEMA_VERSION, "model": model, "version": version, "variant": variant,
        "runtime": row["runtime"], "precision": row["precision"],
        "code": {"commit": repo.head(), "project": str(project.relative_to(repo.root)) if project != repo.root else "."},
        "dvc_lock": {"sha256": sha256_file(lock_path), "stages": _lock_stages(lock_path, variant, summary["baseline"])},
        "params_sha256": sha256_file(project / "params.yaml"),
        "environment": _environment(layout),
        "files": scan["files"], "scan": scan["scanner"],
        "metrics": row, "baseline": summary["baseline"],
        "gates": {"policy": gates["policy"], "verdicts": gates["variants"].get(variant, {})},
        "model_card": _digest_if_present(layout.reports_dir / "model_card.html", project),
        "report": _digest_if_present(layout.reports_dir / "report.html", project),
        "hardware": summary["host"],
        "evidence": _evidence(layout, summary, variant),
    }


def build_decoder_record(repo: GitRepo, project: Path, model: str, version: str, variant: str, scan: dict[str, Any]) -> dict[str, Any]:
    """The reproduction record of a decoder variant (``decoder.variants`` in params.yaml): its row of
    metrics/decoder_summary.json, the baseline's, and both sides' timing samples, from which a promotion
    recomputes the speed-up CIs before it checks the policy's ``decoder_stages`` gates."""
    layout = Layout(project)
    summary = read_json(layout.decoder_summary)
    rows = {row["variant"]: row for row in summary["variants"]}
    row, baseline = rows.get(variant), summary["baseline"]
    if row is None or row.get("status") != "ok":
        raise RegistryError(f"decoder variant {variant!r} has no measurements in {layout.decoder_summary.relative_to(project)} "
                            f"(status {row.get('status') if row else 'absent'})",
                            f"measured decoder variants: {', '.join(n for n, r in rows.items() if r.get('status') == 'ok')}")
    lock_path = project / "dvc.lock"
    seed = yaml.safe_load((project / "params.yaml").read_text()).get("seed", 0)
    host = read_json(layout.summary).get("host") if layout.summary.is_file() else None
    return {
        "schema_version": SCHEMA_VERSION, "kind": "generation", "model": model, "version": version, "variant": variant,
        "runtime": row["runtime"], "precision": row["precision"],
        "code": {"commit": repo.head(), "project": str(project.relative_to(repo.root)) if project != repo.root else "."},
        "dvc_lock": {"sha256": sha256_file(lock_path), "stages": _lock_stages(lock_path, variant, baseline, decoder=True)},
        "params_sha256": sha256_file(project / "params.yaml"),
        "environment": _environment(layout),
        "files": scan["files"], "scan": scan["scanner"],
        "metrics": {k: v for k, v in row.items() if k != "verdicts"}, "baseline": baseline,
        "gates": {"policy": summary["policy"], "verdicts": row.get("verdicts", {})},
        "model_card": _digest_if_present(layout.reports_dir / "model_card.html", project),
        "report": _digest_if_present(layout.reports_dir / "report.html", project),
        "hardware": host or {"cpu_model": read_json(layout.environment).get("cpu")},
        "evidence": {"row": {k: v for k, v in row.items() if k != "verdicts"},
                     "baseline_row": {k: v for k, v in rows[baseline].items() if k != "verdicts"},
                     "samples": read_json(layout.decoder_benchmark_samples(variant)),
                     "baseline_samples": read_json(layout.decoder_benchmark_samples(baseline)), "seed": seed,
                     "sources": {"benchmark": f"metrics/decoder_benchmark/{variant}.json",
                                 "samples": f"outputs/decoder_benchmark/{variant}.json",
                                 "evaluate": f"metrics/decoder_evaluate/{variant}.json",
                                 "baseline_samples": f"outputs/decoder_benchmark/{baseline}.json"}},
    }


def _lock_stages(lock_path: Path, variant: str, baseline: str, decoder: bool = False) -> dict[str, Any]:
    """The dvc.lock entries this variant's figures came from: every shared stage, its own and the baseline's
    (``decoder``: the decoder's foreach stages, whose variant names may repeat the encoder's)."""
    stages = yaml.safe_load(lock_path.read_text())["stages"]
    keep = {name: entry for name, entry in stages.items()
            if "@" not in name or (name.split("@", 1)[1] in (variant, baseline) and name.startswith("decoder_") == decoder)}
    return keep


def _environment(layout: Layout) -> dict[str, Any]:
    environment = read_json(layout.environment)
    return {"sha256": sha256_file(layout.environment), "cpu": environment.get("cpu"), "lock_sha256": environment.get("lock_sha256"),
            "python": environment.get("python"), "platform": environment.get("os") or environment.get("platform")}


def _digest_if_present(path: Path, project: Path) -> dict[str, Any] | None:
    return {"path": str(path.relative_to(project)), "sha256": sha256_file(path)} if path.is_file() else None


def _evidence(layout: Layout, summary: dict[str, Any], variant: str) -> dict[str, Any]:
    """What the gates read (see edgekit.decide.gates.Evidence), as recorded: rows and raw samples."""
    baseline = summary["baseline"]
    return {"row": summary["variants"][variant], "baseline_row": summary["variants"][baseline],
            "samples": read_json(layout.benchmark_samples(variant)), "baseline_samples": read_json(layout.benchmark_samples(baseline)),
            "headline": summary["headline_scenario"], "seed": summary.get("bootstrap", {}).get("seed", 0),
            "sources": {"benchmark": f"metrics/benchmark/{variant}.json", "samples": f"outputs/benchmark/{variant}.json",
                        "evaluate": f"metrics/evaluate/{variant}.json", "baseline_samples": f"outputs/benchmark/{baseline}.json",
                        "baseline_evaluate": f"metrics/evaluate/{baseline}.json"}}


def files_differing(folder: Path, record: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Files of ``folder`` whose sha256 differs from the record's (or that only one side has):
    ``(name, recorded, actual)``, sorted, "absent" for a missing side."""
    from edgekit.fsutil import file_digests

    actual = {name: d["sha256"] for name, d in file_digests(folder).items()}
    expected = {name: d["sha256"] for name, d in record["files"].items()}
    return [(name, expected.get(name, "absent"), actual.get(name, "absent"))
            for name in sorted(set(actual) | set(expected)) if actual.get(name) != expected.get(name)]


def record_bytes(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def record_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
