"""The decoders' gates: what each reads from a decoder variant's row, and the bound's direction.

They live in policy.yaml under ``decoder_stages`` (staging, production), beside the encoder's ``stages``.
A missing value fails its gate (no evidence, no pass).

Example:
    >>> check_stage({"kl_mean": {"max": 0.05, "action": "block"}}, row)
    {'passed': True, 'gates': [...]}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.errors import ConfigError

# name: (direction, row field, description)
GATES: dict[str, tuple[str, str, str]] = {
    "perplexity_delta": ("max", "perplexity_delta", "held-out perplexity / baseline perplexity - 1 (0.03 = 3% worse)"),
    "kl_mean": ("max", "kl_mean", "mean KL(baseline ‖ variant) of next-token distributions on the held-out windows (nats)"),
    "top1_agreement": ("min", "top1_agreement", "share of held-out positions where variant and baseline rank the same token first"),
    "greedy_identical": ("min", "greedy_identical", "share of greedy continuations identical to the baseline's"),
    "decode_speedup": ("min", "decode_speedup_ci95_low", "lower end of the 95% CI of baseline / variant decode ms per token"),
    "prefill_speedup": ("min", "prefill_speedup_ci95_low", "lower end of the 95% CI of baseline / variant prefill ms (first prompt length)"),
    "memory_reduction": ("min", "memory_reduction", "1 - variant / baseline model memory (peak RSS of load and run over the runtime's)"),
    "size_mb": ("max", "size_mb", "variant files on disk, MiB"),
    "busy_processes": ("max", "busy_processes", "timing processes measured while other processes used the CPU"),
}
ACTIONS = ("block", "warn")
ESTIMATES = ("point", "ci")  # ci: the end of the row's 95% CI on the failing side (upper for max gates, lower for min)


def parse_stage(stage: str, raw: Any) -> dict[str, dict[str, Any]]:
    """Validate one stage's decoder gates; each is ``{min|max: bound, action: block|warn}``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"decoder_stages.{stage}", raw, "a mapping of gate names to {min|max: bound, action}")
    for name, spec in raw.items():
        where = f"decoder_stages.{stage}.{name}"
        if name not in GATES:
            raise ConfigError(where, spec, f"a decoder gate: {', '.join(GATES)}")
        direction = GATES[name][0]
        if not isinstance(spec, dict) or not isinstance(spec.get(direction), (int, float)) or isinstance(spec.get(direction), bool):
            raise ConfigError(where, spec, f"{{{direction}: a number, action: block|warn, estimate: point|ci}}")
        if spec.get("action", "block") not in ACTIONS:
            raise ConfigError(f"{where}.action", spec.get("action"), " or ".join(ACTIONS))
        if spec.get("estimate", "point") not in ESTIMATES:
            raise ConfigError(f"{where}.estimate", spec.get("estimate"), " or ".join(ESTIMATES))
        unknown = set(spec) - {direction, "action", "estimate"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", spec[sorted(unknown)[0]], f"known keys: {direction}, action, estimate")
    return raw


def check_stage(gates: dict[str, dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    """Every gate of a stage on one row; ``passed`` when no blocking gate fails."""
    results = []
    for name, spec in gates.items():
        direction, field, _ = GATES[name]
        bound, value = spec[direction], _value(row, field, direction, spec.get("estimate", "point"))
        passed = value is not None and (value >= bound if direction == "min" else value <= bound)
        results.append({"gate": name, direction: bound, "value": value, "estimate": spec.get("estimate", "point"),
                        "passed": passed, "action": spec.get("action", "block")})
    return {"passed": all(r["passed"] for r in results if r["action"] == "block"), "gates": results}


def _value(row: dict[str, Any], field: str, direction: str, estimate: str) -> float | None:
    if estimate == "point":
        return row.get(field)
    interval = row.get(f"{field}_ci95")
    return None if interval is None else interval[1] if direction == "max" else interval[0]


def speedups(baseline_runs: list[dict[str, Any]], runs: list[dict[str, Any]], prompt_length: int, seed: int) -> dict[str, Any]:
    """Decode and prefill speed-ups of a variant over the baseline from both sides' timing processes (the
    ``runs`` of outputs/decoder_benchmark/<variant>.json): the ratio of medians of process medians, with the
    hierarchical bootstrap 95% CI. The ``decoder_select`` stage and a registry promotion both compute them here."""
    from edgekit.bench.stats import ratio_ci

    figures: dict[str, Any] = {}
    for key, length, field in (("decode_ms", None, "decode"), ("prefill_ms", str(prompt_length), "prefill")):
        base = [np.array(run[key][length] if length else run[key]) for run in baseline_runs]
        own = [np.array(run[key][length] if length else run[key]) for run in runs]
        low, high = ratio_ci(base, own, seed=seed)
        figures[f"{field}_speedup"] = float(np.median([np.median(p) for p in base]) / np.median([np.median(p) for p in own]))
        figures[f"{field}_speedup_ci95"] = [low, high]
        figures[f"{field}_speedup_ci95_low"] = low
    return figures
