"""Reproduce a registered version: check its commit out in a temporary worktree, take every pinned input
from the project's DVC cache, re-run only the stages that make and measure the variant (and ``select``,
which turns measurements into the metrics the record holds), then compare file digests and metrics.

Metrics are judged within the confidence intervals recorded with them (``speedup`` against
``speedup_ci95``, ``retention`` against its interval); a figure with no interval is shown with its
relative change and judged by ``tolerance`` only when it is deterministic (sizes, digests, quality).

Example:
    >>> result = reproduce(".", "all-minilm-l6-v2@v1.0.0")
    >>> result["ok"], result["lines"][0]
    (True, 'files: 9 of 9 identical')
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from edgekit.fsutil import read_json
from edgekit.registry.api import load_record, parse_ref
from edgekit.registry.core import Registry
from edgekit.registry.errors import RegistryError

# Figures that do not depend on the machine's noise: a difference beyond rounding is a reproduction failure.
DETERMINISTIC = ("size_mb", "retention", "cosine_mean", "cosine_min", "spearman", "fairness_score")
# Timing figures with the interval they are judged against.
WITH_INTERVAL = {"speedup": "speedup_ci95", "model_memory_mb": "model_memory_mb_range"}
TIMED = ("p50_ms", "p99_ms", "peak_rss_mb", "load_s")
# A decoder version's (``kind: generation``): quality is deterministic on one ISA path; speed has its CI.
DECODER_DETERMINISTIC = ("size_mb", "perplexity", "perplexity_delta", "kl_mean", "top1_agreement", "greedy_identical")
DECODER_WITH_INTERVAL = {"decode_speedup": "decode_speedup_ci95", "prefill_speedup": "prefill_speedup_ci95",
                         "decode_tokens_per_s": "decode_tokens_per_s_ci95"}
DECODER_TIMED = ("ttft_ms", "decode_ms_p99", "peak_rss_mb", "model_memory_mb", "load_s")


def reproduce(project: str | Path, ref: str, tolerance: float = 1e-4, keep: bool = False) -> dict[str, Any]:
    """Re-run the pinned pipeline for one version and compare.

    Raises:
        RegistryError: the version is unknown, or a stage fails (its output is in the message).
    """
    registry = Registry.open(project)
    model, version = parse_ref(ref)
    entry = registry.state().version(model, version)
    record = load_record(registry, entry)
    with tempfile.TemporaryDirectory(prefix="edgekit-reproduce-") as folder:
        worktree = Path(folder) / "worktree"
        registry.repo.git("worktree", "add", "--detach", str(worktree), record["code"]["commit"])
        try:
            here = worktree / registry.prefix
            # The recorded commit's own edgekit, when the project is edgekit's repository; else the installed one.
            code = worktree if (worktree / "edgekit" / "__init__.py").is_file() else None
            stages = _rerun(here, registry.project, record, code)
            result = _compare(here, record, tolerance)
        finally:
            if not keep:
                registry.repo.git("worktree", "remove", "--force", str(worktree), check=False)
    return {"ref": ref, "commit": record["code"]["commit"], "stages": stages, **result}


def _dvc(args: list[str], cwd: Path, code: Path | None = None) -> None:
    """Run DVC in the worktree; ``code``: a checkout whose edgekit package the stages must import."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code) if code else "", os.environ.get("PYTHONPATH", "")]))}
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RegistryError(f"`dvc {' '.join(args)}` failed in the reproduction worktree: {done.stderr.strip()[-800:]}",
                            "run it in a checkout of the recorded commit to see the whole output")


def _rerun(here: Path, project: Path, record: dict[str, Any], code: Path | None) -> list[str]:
    """Pinned inputs from the shared cache, then the variant's own stages and select, forced, one by one."""
    (here / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {project / '.dvc' / 'cache'}\n")
    _dvc(["checkout", "--quiet"], here)
    stages = _variant_stages(here / "dvc.lock", record["variant"], _folder(record), decoder=_decoder(record))
    for stage in stages:
        _dvc(["repro", "--force", "--single-item", "--quiet", stage], here, code)
    return stages


def _decoder(record: dict[str, Any]) -> bool:
    return record.get("kind") == "generation"


def _folder(record: dict[str, Any]) -> str:
    return str(Path("models") / ("decoder_variants" if _decoder(record) else "variants") / record["variant"])


def _variant_stages(lock: Path, variant: str, folder: str, decoder: bool = False) -> list[str]:
    """Stages named for the variant (the decoder's, or the encoder's: their names may repeat) or writing its folder,
    in dvc.lock's order, then the stage that summarizes them (``select``, or ``decoder_select``)."""
    stages = yaml.safe_load(lock.read_text())["stages"]
    mine = [name for name, entry in stages.items()
            if (name.endswith(f"@{variant}") and name.startswith("decoder_") == decoder)
            or any(out["path"] == folder for out in entry.get("outs", []))]
    final = "decoder_select" if decoder else "select"
    return mine + ([final] if final in stages and final not in mine else [])


def _compare(here: Path, record: dict[str, Any], tolerance: float) -> dict[str, Any]:
    from edgekit.registry.record import files_differing

    folder = here / _folder(record)
    expected = record["files"]
    files = [f"{name}: {recorded[:12]} → {actual[:12]}" for name, recorded, actual in files_differing(folder, record)]
    if _decoder(record):
        rows = {r["variant"]: r for r in read_json(here / "metrics" / "decoder_summary.json")["variants"]}
        figures = (DECODER_DETERMINISTIC, DECODER_WITH_INTERVAL, DECODER_TIMED)
    else:
        rows = read_json(here / "metrics" / "summary.json")["variants"]
        figures = (DETERMINISTIC, WITH_INTERVAL, TIMED)
    metrics = _metric_differences(record["metrics"], rows.get(record["variant"], {}), tolerance, *figures)
    lines = [f"files: {len(expected) - len(files)} of {len(expected)} identical" + (f"; differ: {'; '.join(files)}" if files else "")]
    lines += [m["line"] for m in metrics]
    ok = not files and all(m["ok"] for m in metrics)
    return {"ok": ok, "files_differing": files, "metrics": metrics, "lines": lines}


def _metric_differences(recorded: dict[str, Any], new: dict[str, Any], tolerance: float, deterministic=DETERMINISTIC,
                        with_interval=WITH_INTERVAL, timed=TIMED) -> list[dict[str, Any]]:
    out = []
    for name in (*deterministic, *with_interval, *timed):
        old, now = recorded.get(name), new.get(name)
        if not isinstance(old, (int, float)) or not isinstance(now, (int, float)):
            continue
        change = (now - old) / old if old else 0.0
        if name in with_interval and recorded.get(with_interval[name]):
            low, high = recorded[with_interval[name]]
            ok, how = low <= now <= high, f"recorded 95% CI {low}–{high}"
        elif name in deterministic:
            ok, how = abs(change) <= tolerance, f"deterministic, tolerance {tolerance:g}"
        else:
            ok, how = True, "timing without an interval: shown, not judged"
        verdict = "within" if ok else "OUTSIDE"
        out.append({"metric": name, "recorded": old, "reproduced": now, "change": round(change, 6), "ok": ok,
                    "line": f"{name}: {old} → {now} ({change:+.2%}; {how}): {verdict}"})
    return out
