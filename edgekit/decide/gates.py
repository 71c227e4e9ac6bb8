"""The gate registry: what each policy gate measures, from which pipeline output, and in which direction.

A gate reads one number from a variant's evidence (the ``select`` stage's row plus the raw latency
samples of every process) and compares it with the policy's bound: ``min`` gates pass when value ≥
bound, ``max`` gates when value ≤ bound. A value that is missing (no fairness data, a scenario not
measured) fails: no evidence, no pass. So does a measurement that cannot be trusted, and the detail
names its cause:

- a scenario with processes short of ``benchmark.min_samples_per_process`` fails every gate that
  reads it (speed-up on either side, latency);
- a baseline headline measured on a busy machine or short of samples cannot certify a comparison
  with it (speed-up, and memory reduction where it reads memory): a busy baseline runs slow and
  inflates every speed-up. A busy variant only makes its own numbers worse, so latency gates read it.

Plug-ins add gates through the ``edgekit.gates`` entry-point group.

Example:
    >>> gate = get_gate("speedup")
    >>> gate.measure(evidence, {"confidence": 0.95})
    Measurement(value=4.546, detail='4.646× at b1_s32, 95% CI 4.546–4.724 (hierarchical bootstrap over 5 + 5 processes)', ...)
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from edgekit.bench.stats import median_of_medians, ratio_ci
from edgekit.errors import UnknownNameError

ENTRY_POINT_GROUP = "edgekit.gates"


@dataclass(frozen=True)
class Evidence:
    """Everything a gate may read about one variant, with the DVC outputs it came from.

    Attributes:
        variant: the variant's name.
        row: its row of metrics/summary.json (status, latency, memory, size, quality, fairness).
        baseline_row: the baseline's row.
        samples: raw latency samples (ms) per scenario key, one array per process.
        baseline_samples: the baseline's, likewise.
        headline: the scenario every variant is compared at, e.g. ``b1_s32``.
        sources: DVC output paths by kind (``benchmark``, ``samples``, ``evaluate``, ...).
        seed: for the bootstrap.
    """

    variant: str
    row: dict[str, Any]
    baseline_row: dict[str, Any]
    samples: dict[str, list[np.ndarray]]
    baseline_samples: dict[str, list[np.ndarray]]
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


def _flag(row: dict[str, Any], key: str, codes: tuple[str, ...]) -> dict[str, Any] | None:
    """The first instability entry of ``row`` at scenario ``key`` with one of ``codes``."""
    return next((e for e in (row.get("instability") or {}).get(key, []) if e["code"] in codes), None)


def _short_of_samples(row: dict[str, Any], variant: str, key: str, role: str = "") -> str | None:
    """Why ``variant``'s measurement at ``key`` cannot be read by any gate, or None (``role``: "baseline ")."""
    entry = _flag(row, key, ("short_of_samples",))
    if entry is None:
        return None
    count = len(entry["processes"])
    return (f"{role}{variant} {key} has {count} process{'es' if count > 1 else ''} short of samples ({entry['value']} < "
            f"benchmark.min_samples_per_process {entry['limit']}): no gate may read it; re-run `dvc repro benchmark@{variant}` "
            "(a process is cut short at half of benchmark.timeout_seconds: raise it for slow calls)")


def _baseline_cannot_certify(evidence: Evidence, key: str) -> str | None:
    """Why the baseline's measurement at ``key`` cannot certify a comparison, or None."""
    base = evidence.baseline_row.get("variant", "the baseline")
    short = _short_of_samples(evidence.baseline_row, base, key, role="baseline ")
    if short:
        return short
    busy = _flag(evidence.baseline_row, key, ("busy",))
    if busy is None:
        return None
    return (f"baseline {base} {key} was measured on a {busy['text']}: a busy baseline runs slow and inflates the "
            f"comparison, so it cannot certify; re-run `dvc repro benchmark@{base}` on an idle machine")


ESTIMATES = ("point", "ci_low")


def _check_estimate(options: dict[str, Any]) -> str | None:
    if options.get("estimate", "point") not in ESTIMATES:
        return f"estimate must be one of: {', '.join(ESTIMATES)}"
    return None


def _estimate(point: float | None, ci95: list[float] | None, options: dict[str, Any]) -> tuple[float | None, str]:
    """The point estimate, or the lower end of its 95% bootstrap CI (``estimate: ci_low``); and how it reads."""
    interval = f"95% CI {ci95[0]}–{ci95[1]}" if ci95 else "no CI recorded"
    if options.get("estimate", "point") == "point":
        return point, f"point {point} ({interval})"
    return (ci95[0] if ci95 else None), f"lower end of the {interval} (point {point})"


class AccuracyRetention(Gate):
    name, direction = "accuracy_retention", "min"
    description = ("the variant's task metric ÷ the baseline's on the test pairs (Spearman of STS similarity for the "
                   "default model); estimate: point, or ci_low = the lower end of its paired bootstrap 95% CI")
    options = {"estimate": "point"}

    def check_options(self, options):
        return _check_estimate(options)

    def measure(self, evidence, options):
        row = evidence.row
        value, reading = _estimate(row.get("retention"), (row.get("quality") or {}).get("retention_ci95"), options)
        return Measurement(value, f"{reading}; Spearman {row.get('spearman')} vs baseline {evidence.baseline_row.get('spearman')}",
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
    description = ("baseline p50 ÷ variant p50 (medians of per-process medians), taken at the lower end of its "
                   "hierarchical bootstrap confidence interval, so '≥ 2× at 95%' means the whole interval clears 2×")
    options = {"confidence": 0.95, "scenario": None}

    def check_options(self, options):
        confidence = options.get("confidence", 0.95)
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
            return f"confidence must be a number in [0.5, 1), got {confidence!r}"
        return None

    def measure(self, evidence, options):
        key, confidence = _scenario(options, evidence), float(options.get("confidence", 0.95))
        sources = [evidence.sources["samples"], evidence.sources["baseline_samples"]]
        if key not in evidence.samples or key not in evidence.baseline_samples:
            return Measurement(None, f"scenario {key} was not measured for both", sources)
        untrusted = _short_of_samples(evidence.row, evidence.variant, key) or _baseline_cannot_certify(evidence, key)
        if untrusted:
            return Measurement(None, untrusted, sources + [evidence.sources["benchmark"]])
        base, own = evidence.baseline_samples[key], evidence.samples[key]
        low, high = ratio_ci(base, own, confidence=confidence, seed=evidence.seed)
        point = median_of_medians(base) / median_of_medians(own)
        return Measurement(round(low, 3), f"{point:.3f}× at {key}, {confidence:.0%} CI {low:.3f}–{high:.3f} (hierarchical "
                           f"bootstrap over {len(base)} baseline + {len(own)} variant processes)", sources)


class MemoryReduction(Gate):
    name, direction = "memory_reduction", "min"
    description = ("1 − variant ÷ baseline, for the model's own memory (measure: model_memory, the default: peak of "
                   "load and run over the RSS with the runtime imported), the timing process's whole peak RSS "
                   "(peak_rss), model size on disk (size), or both = the smaller of model_memory and size; "
                   "memory is read at the least reduction the processes allow")
    options = {"measure": "model_memory"}
    MEASURES = {"model_memory": ("model_memory",), "peak_rss": ("peak_rss",), "size": ("size",),
                "both": ("model_memory", "size")}

    def check_options(self, options):
        if options.get("measure", "model_memory") not in self.MEASURES:
            return f"measure must be one of: {', '.join(self.MEASURES)}"
        return None

    def measure(self, evidence, options):
        row, measure = evidence.row, options.get("measure", "model_memory")
        values = {"model_memory": (row.get("model_memory_reduction_range") or [None])[0],
                  "peak_rss": (row.get("memory_reduction_range") or [None])[0], "size": row.get("size_reduction")}
        parts = self.MEASURES[measure]
        detail = (f"model memory {row.get('model_memory_mb')} MB (reduction {values['model_memory']}), peak RSS "
                  f"{row.get('peak_rss_mb')} MB (reduction {values['peak_rss']}), size {row.get('size_mb')} MB "
                  f"(reduction {values['size']}); measure: {measure}")
        sources = [evidence.sources["benchmark"]]
        untrusted = _baseline_cannot_certify(evidence, evidence.headline) if set(parts) - {"size"} else None
        if untrusted:
            return Measurement(None, f"{untrusted}; {detail}", sources)
        chosen = [values[k] for k in parts]
        return Measurement(None if None in chosen else min(chosen), detail, sources)


class Fairness(Gate):
    name, direction = "fairness", "min"
    description = ("share of counterfactual pairs whose similarity to a neutral probe moves by at most the tolerance "
                   "(measure: score), or that share ÷ the baseline's (measure: retention, so optimizing must not make "
                   "the model less fair than it was); estimate: point, or ci_low = the lower end of its bootstrap 95% CI "
                   "(templates resampled)")
    options = {"measure": "score", "estimate": "point"}

    def check_options(self, options):
        if options.get("measure", "score") not in ("score", "retention"):
            return "measure must be one of: score, retention"
        return _check_estimate(options)

    def measure(self, evidence, options):
        own, base = evidence.row.get("fairness") or {}, evidence.baseline_row.get("fairness") or {}
        sources = [evidence.sources["evaluate"]]
        if "score" not in own or "score" not in base:
            return Measurement(None, "no fairness result (run `dvc repro evaluate`)", sources)
        detail = (f"{own['within_tolerance']} of {own['pairs']} pairs within ±{own['tolerance']} ({own['check']}), "
                  f"score {own['score']} vs baseline {base['score']}")
        if options.get("measure", "score") == "score":
            value, reading = _estimate(own["score"], own.get("score_ci95"), options)
            return Measurement(value, f"{reading}; {detail}", sources)
        point = own.get("retention", round(own["score"] / base["score"], 4) if base["score"] else None)
        value, reading = _estimate(point, own.get("retention_ci95"), options)
        return Measurement(value, f"{reading}; {detail}", sources + [evidence.sources["baseline_evaluate"]])


class LatencyP99(Gate):
    name, direction = "latency_p99_ms", "max"
    description = "99th percentile latency of one call (ms) over every process's calls at a scenario, the headline one by default"
    options = {"scenario": None}

    def measure(self, evidence, options):
        key = _scenario(options, evidence)
        sources = [evidence.sources["samples"]]
        if key not in evidence.samples:
            return Measurement(None, f"scenario {key} was not measured", sources)
        short = _short_of_samples(evidence.row, evidence.variant, key)
        if short:
            return Measurement(None, short, sources + [evidence.sources["benchmark"]])
        calls = np.concatenate(evidence.samples[key])
        value = float(np.percentile(calls, 99))
        return Measurement(round(value, 4), f"p99 at {key} over {calls.size} calls in {len(evidence.samples[key])} processes",
                           sources)


class SizeBudget(Gate):
    name, direction = "size_mb", "max"
    description = "the variant's files on disk (MiB)"

    def measure(self, evidence, options):
        return Measurement(evidence.row.get("size_mb"), "model files as recorded in the variant's manifest",
                           [evidence.sources["benchmark"]])


class StableMeasurement(Gate):
    name, direction = "unstable_scenarios", "max"
    description = ("how many scenarios were flagged unstable (busy machine, no convergence within the budget, "
                   "processes that disagree, or processes short of samples)")

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
