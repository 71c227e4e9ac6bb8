"""The gate registry: what each policy gate measures, from which pipeline output, and in which direction.

A gate reads one number from a variant's evidence (the ``select`` stage's row plus the raw latency
samples) and compares it with the policy's bound: ``min`` gates pass when value ≥ bound, ``max`` gates
when value ≤ bound. A value that is missing (no fairness data, a scenario not measured) fails: no
evidence, no pass. Plug-ins add gates through the ``edgekit.gates`` entry-point group.

Example:
    >>> gate = get_gate("speedup")
    >>> gate.measure(evidence, {"confidence": 0.95})
    Measurement(value=4.546, detail='point 4.646×, 95% CI 4.546–4.724', sources=[...])
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from edgekit.bench.stats import ratio_ci
from edgekit.errors import UnknownNameError

ENTRY_POINT_GROUP = "edgekit.gates"


@dataclass(frozen=True)
class Evidence:
    """Everything a gate may read about one variant, with the DVC outputs it came from.

    Attributes:
        variant: the variant's name.
        row: its row of metrics/summary.json (status, latency, memory, size, quality, fairness).
        baseline_row: the baseline's row.
        samples: raw latency samples (ms) per scenario key, pooled over the repeats.
        baseline_samples: the baseline's, likewise.
        headline: the scenario every variant is compared at, e.g. ``b1_s32``.
        sources: DVC output paths by kind (``benchmark``, ``samples``, ``evaluate``, ...).
        seed: for the bootstrap.
    """

    variant: str
    row: dict[str, Any]
    baseline_row: dict[str, Any]
    samples: dict[str, np.ndarray]
    baseline_samples: dict[str, np.ndarray]
    headline: str
    sources: dict[str, str]
    seed: int = 0


@dataclass(frozen=True)
class Measurement:
    value: float | None
    detail: str
    sources: list[str] = field(default_factory=list)


class Gate:
    """Base of every gate.

    Attributes:
        name: the key in the policy file.
        direction: ``min`` (value must be at least the bound) or ``max`` (at most).
        description: what is measured, for the report and the model card.
        options: the gate's own policy keys with their defaults.
    """

    name = ""
    direction = "min"
    description = ""
    options: dict[str, Any] = {}

    def check_options(self, options: dict[str, Any]) -> str | None:
        """Return what is wrong with ``options`` (validated by the policy loader), or None."""
        return None

    def measure(self, evidence: Evidence, options: dict[str, Any]) -> Measurement:
        raise NotImplementedError


def _scenario(options: dict[str, Any], evidence: Evidence) -> str:
    return options.get("scenario") or evidence.headline


class AccuracyRetention(Gate):
    name, direction = "accuracy_retention", "min"
    description = "the variant's task metric ÷ the baseline's (Spearman of STS similarity for the default model)"

    def measure(self, evidence, options):
        row = evidence.row
        return Measurement(row.get("retention"), f"Spearman {row.get('spearman')} vs baseline {evidence.baseline_row.get('spearman')}",
                           [evidence.sources["evaluate"]])


class Fidelity(Gate):
    name, direction = "fidelity", "min"
    description = "cosine between each sentence's variant embedding and the baseline's (statistic: mean, min or p05)"
    options = {"statistic": "mean"}

    def check_options(self, options):
        if options.get("statistic", "mean") not in ("mean", "min", "p05"):
            return "statistic must be one of: mean, min, p05"
        return None

    def measure(self, evidence, options):
        statistic = options.get("statistic", "mean")
        value = evidence.row.get("quality", {}).get(f"cosine_{statistic}")
        return Measurement(value, f"{statistic} cosine over {evidence.row.get('quality', {}).get('sentences')} sentences",
                           [evidence.sources["evaluate"]])


class Speedup(Gate):
    name, direction = "speedup", "min"
    description = ("baseline p50 ÷ variant p50, taken at the lower end of its bootstrap confidence interval, "
                   "so '≥ 2× at 95%' means the whole interval clears 2×")
    options = {"confidence": 0.95, "scenario": None}

    def check_options(self, options):
        confidence = options.get("confidence", 0.95)
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
            return f"confidence must be a number in [0.5, 1), got {confidence!r}"
        return None

    def measure(self, evidence, options):
        key, confidence = _scenario(options, evidence), float(options.get("confidence", 0.95))
        if key not in evidence.samples or key not in evidence.baseline_samples:
            return Measurement(None, f"scenario {key} was not measured for both", [evidence.sources["samples"]])
        base, own = evidence.baseline_samples[key], evidence.samples[key]
        low, high = ratio_ci(base, own, confidence=confidence, seed=evidence.seed)
        point = float(np.median(base) / np.median(own))
        return Measurement(round(low, 3), f"{point:.3f}× at {key}, {confidence:.0%} CI {low:.3f}–{high:.3f}",
                           [evidence.sources["samples"], evidence.sources["baseline_samples"]])


class MemoryReduction(Gate):
    name, direction = "memory_reduction", "min"
    description = ("1 − variant ÷ baseline, for peak RSS of the timing process (the least reduction the repeats "
                   "allow), model size on disk, or both (the smaller of the two)")
    options = {"measure": "both"}

    def check_options(self, options):
        if options.get("measure", "both") not in ("peak_rss", "size", "both"):
            return "measure must be one of: peak_rss, size, both"
        return None

    def measure(self, evidence, options):
        row, measure = evidence.row, options.get("measure", "both")
        rss = (row.get("memory_reduction_range") or [None])[0]
        size = row.get("size_reduction")
        values = {"peak_rss": rss, "size": size}
        chosen = [values[k] for k in (("peak_rss", "size") if measure == "both" else (measure,))]
        value = None if None in chosen else min(chosen)
        return Measurement(value, f"peak RSS {row.get('peak_rss_mb')} MB (reduction {rss}), size {row.get('size_mb')} MB "
                           f"(reduction {size}); measure: {measure}", [evidence.sources["benchmark"]])


class Fairness(Gate):
    name, direction = "fairness", "min"
    description = ("share of counterfactual pairs whose similarity to a neutral probe moves by at most the tolerance "
                   "(measure: score), or that share ÷ the baseline's (measure: retention, so optimizing must not make "
                   "the model less fair than it was)")
    options = {"measure": "score"}

    def check_options(self, options):
        if options.get("measure", "score") not in ("score", "retention"):
            return "measure must be one of: score, retention"
        return None

    def measure(self, evidence, options):
        own, base = evidence.row.get("fairness") or {}, evidence.baseline_row.get("fairness") or {}
        sources = [evidence.sources["evaluate"]]
        if "score" not in own or "score" not in base:
            return Measurement(None, "no fairness result (run `dvc repro evaluate`)", sources)
        detail = (f"{own['within_tolerance']} of {own['pairs']} pairs within ±{own['tolerance']} ({own['check']}), "
                  f"score {own['score']} vs baseline {base['score']}")
        if options.get("measure", "score") == "score":
            return Measurement(own["score"], detail, sources)
        value = round(own["score"] / base["score"], 4) if base["score"] else None
        return Measurement(value, detail, sources + [evidence.sources["baseline_evaluate"]])


class LatencyP99(Gate):
    name, direction = "latency_p99_ms", "max"
    description = "99th percentile latency of one call (ms) at a scenario, the headline one by default"
    options = {"scenario": None}

    def measure(self, evidence, options):
        key = _scenario(options, evidence)
        if key not in evidence.samples:
            return Measurement(None, f"scenario {key} was not measured", [evidence.sources["samples"]])
        value = float(np.percentile(evidence.samples[key], 99))
        return Measurement(round(value, 4), f"p99 at {key} over {evidence.samples[key].size} calls", [evidence.sources["samples"]])


class SizeBudget(Gate):
    name, direction = "size_mb", "max"
    description = "the variant's files on disk (MiB)"

    def measure(self, evidence, options):
        return Measurement(evidence.row.get("size_mb"), "model files as recorded in the variant's manifest",
                           [evidence.sources["benchmark"]])


class StableMeasurement(Gate):
    name, direction = "unstable_scenarios", "max"
    description = "how many scenarios were flagged unstable (busy machine or no convergence within the budget)"

    def measure(self, evidence, options):
        flagged = evidence.row.get("unstable_scenarios")
        if flagged is None:
            return Measurement(None, "no stability record", [evidence.sources["benchmark"]])
        return Measurement(len(flagged), ", ".join(flagged) or "none flagged", [evidence.sources["benchmark"]])


_BUILTINS: tuple[type[Gate], ...] = (AccuracyRetention, Fidelity, Speedup, MemoryReduction, Fairness, LatencyP99,
                                     SizeBudget, StableMeasurement)


@cache
def gates() -> dict[str, Gate]:
    """Every known gate by name: built-ins, then the ``edgekit.gates`` entry points (which cannot shadow them)."""
    table = {gate.name: gate() for gate in _BUILTINS}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        table.setdefault(entry.name, entry.load()())
    return table


def get_gate(name: str, field: str = "gate", source: str = "policy.yaml") -> Gate:
    """The gate called ``name``; an unknown name lists the known ones."""
    table = gates()
    if name not in table:
        raise UnknownNameError(field, name, list(table), source)
    return table[name]
