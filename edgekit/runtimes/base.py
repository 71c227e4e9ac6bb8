"""The runtime plug-in interface: a light config and a heavy backend per runtime.

A ``RuntimeConfig`` subclass imports only the standard library and edgekit, so params validation,
``doctor`` and the registry work without the runtime installed. Its backend module is imported only
when a variant is optimized, loaded or run.

Example:
    >>> config = get_runtime("onnxruntime")
    >>> backend_class = config.backend()  # imports onnxruntime
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekit.deps import Dependency, probe, require
from edgekit.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Options:
    """Base for a runtime's variant options; subclasses add typed fields with defaults."""

    @classmethod
    def parse(cls, raw: dict[str, Any] | None, field: str) -> Options:
        """Build options from params, naming any unknown key or bad type."""
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(field, raw, "a mapping of option names to values, e.g. {per_channel: true}")
        raw = dict(raw or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in known:
                expected = ", ".join(sorted(known)) or "no options for this runtime"
                raise ConfigError(f"{field}.{key}", raw[key], f"one of: {expected}")
        for key, value in raw.items():
            kind = known[key].type
            allowed = {"bool": bool, "int": int, "float": (int, float), "str": str}.get(str(kind))
            if allowed and (not isinstance(value, allowed) or (kind != "bool" and isinstance(value, bool))):
                raise ConfigError(f"{field}.{key}", value, f"a value of type {kind}")
        options = cls(**raw)
        options.validate(field)
        return options

    def validate(self, field: str) -> None:
        """Check cross-field constraints; raise ``ConfigError``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class OptimizeContext:
    """What an optimizer may use besides the source model.

    Attributes:
        calibration: unlabeled sentences for calibration (static quantization).
        eval_pairs: the labeled evaluation pairs, for accuracy-aware optimizers.
        baseline_metric: the baseline's task metric (Spearman ×100) on ``eval_pairs``.
        max_seq_length: tokens kept per sentence.
        pooling: ``{"pooling": "mean"|"cls"|"max", "normalize": bool}`` of the model.
        seed: the pipeline seed.
        scratch: a folder for intermediate files (removed afterwards).
    """

    calibration: list[str]
    eval_pairs: list
    baseline_metric: float
    max_seq_length: int
    pooling: dict[str, Any]
    seed: int
    scratch: Path


@dataclasses.dataclass(frozen=True)
class FidelityFloor:
    """The lowest fidelity a precision may show against the fp32 baseline (the conformance suite's bar)."""

    cosine_mean: float
    retention: float


class RuntimeConfig:
    """What edgekit knows about a runtime without importing it.

    Attributes:
        name: the ``runtime`` value in params.yaml.
        extra: the edgekit extra that installs it.
        dependencies: packages the backend needs to load and run a variant.
        optimize_dependencies: further packages needed only to make a variant (exporters).
        precisions: the ``precision`` values it accepts.
        options: the dataclass of its per-variant options.
        backend_path: ``module:Class`` of its heavy backend.
        fidelity_floor: per precision, the minimum fidelity the conformance suite accepts.
        conformance_options: per precision, extra (options, floor) pairs the conformance suite also runs.
    """

    name: ClassVar[str]
    extra: ClassVar[str]
    dependencies: ClassVar[tuple[Dependency, ...]]
    optimize_dependencies: ClassVar[tuple[Dependency, ...]] = ()
    precisions: ClassVar[tuple[str, ...]]
    options: ClassVar[type[Options]] = Options
    backend_path: ClassVar[str]
    fidelity_floor: ClassVar[dict[str, FidelityFloor]] = {}
    conformance_options: ClassVar[dict[str, tuple[tuple[dict[str, Any], FidelityFloor], ...]]] = {}

    @classmethod
    def devices(cls) -> list[str]:
        """Devices this runtime can run on here (may import the runtime; only ``doctor`` asks)."""
        return ["CPU"]

    @classmethod
    def missing(cls, for_optimize: bool = True) -> list[Dependency]:
        """The dependencies that are not installed."""
        needed = cls.dependencies + (cls.optimize_dependencies if for_optimize else ())
        return [dep for dep in needed if not probe(dep).found]

    @classmethod
    def backend(cls, for_optimize: bool = False) -> type[Backend]:
        """Import and return the backend class; raise if the runtime is missing."""
        require(*cls.dependencies, *(cls.optimize_dependencies if for_optimize else ()))
        module_name, _, class_name = cls.backend_path.partition(":")
        return getattr(importlib.import_module(module_name), class_name)


class Backend(ABC):
    """A runtime adapter: make a variant, load it, run it on token batches.

    ``run`` returns the model's last hidden state as float32 ``(batch, seq, hidden)``; pooling is
    shared by every runtime (``edgekit.embedding``) so no runtime is favoured by its post-processing.
    """

    def __init__(self, precision: str, options: Options, threads: int):
        self.precision = precision
        self.options = options
        self.threads = threads

    @abstractmethod
    def optimize(self, source: Path, out: Path, context: OptimizeContext) -> dict[str, Any]:
        """Write the variant's model files into ``out``; return what was done (for the manifest).

        ``source`` is a Hugging Face folder (config.json, model.safetensors, tokenizer files).
        The tokenizer files and embedding.json are copied into ``out`` by the caller.
        """

    @abstractmethod
    def load(self, folder: Path) -> None:
        """Load a variant folder made by ``optimize`` so that ``run`` can be called."""

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Run one batch (``input_ids``, ``attention_mask``, ``token_type_ids``, int64)."""

    def describe(self) -> dict[str, Any]:
        """Settings the runtime actually used (threads, providers, precision), for the record."""
        return {"threads": self.threads}
