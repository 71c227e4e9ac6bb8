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
import inspect
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgekit.deps import Dependency, probe, require
from edgekit.errors import ConfigError, UnsupportedModelError
from edgekit.fsutil import read_json

if TYPE_CHECKING:  # a runtime config must import without the tokenizers package
    from edgekit.embedding import TextEncoder


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
        validation_pairs: the labeled validation pairs (data/validation), for accuracy-aware optimizers
            and any tuning. The test pairs that results are reported on are deliberately not here: they
            share no sentence with these, so a variant is never graded on what it was tuned on.
        baseline_metric: the baseline's task metric (Spearman ×100) on ``validation_pairs``.
        max_seq_length: tokens kept per sentence.
        pooling: ``{"pooling": "mean"|"cls"|"max", "normalize": bool}`` of the model.
        seed: the pipeline seed.
        scratch: a folder for intermediate files (removed afterwards).
        encoder: the source model's tokenizer at ``max_seq_length`` (``edgekit.embedding.TextEncoder``), the one
            the pipeline embeds with. Required, so calibration and validation cannot tokenize differently.
    """

    calibration: list[str]
    validation_pairs: list
    baseline_metric: float
    max_seq_length: int
    pooling: dict[str, Any]
    seed: int
    scratch: Path
    encoder: TextEncoder

    def __post_init__(self) -> None:
        if not callable(getattr(self.encoder, "encode", None)):
            raise TypeError(f"OptimizeContext.encoder must be an edgekit.embedding.TextEncoder, got {self.encoder!r}")


@dataclasses.dataclass(frozen=True)
class DecoderFloor:
    """The most a decoder precision may differ from the fp32 PyTorch baseline (the conformance suite's bar).

    Attributes:
        kl_mean: mean KL(baseline ‖ variant) of next-token distributions, nats.
        top1_agreement: share of positions with the same most likely next token.
        greedy_identical: greedy continuations must equal the baseline's (fp32/fp16 precisions).
    """

    kl_mean: float
    top1_agreement: float
    greedy_identical: bool = False


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
        runs_on: other runtimes whose code its variants run (Olive's models run on ONNX Runtime); their
            folders are part of what its pipeline stages import.
        decoder_precisions: the ``precision`` values its decoder backend accepts (empty: no decoder backend).
        decoder_backend_path: ``module:Class`` of its decoder backend (``edgekit.tasks.generation.backend``).
        decoder_floor: per decoder precision, the fidelity the conformance suite accepts.
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
    runs_on: ClassVar[tuple[str, ...]] = ()
    decoder_precisions: ClassVar[tuple[str, ...]] = ()
    decoder_backend_path: ClassVar[str] = ""
    decoder_floor: ClassVar[dict[str, DecoderFloor]] = {}

    @classmethod
    def devices(cls) -> list[str]:
        """Devices this runtime can run on here (may import the runtime; only ``doctor`` asks)."""
        return ["CPU"]

    @classmethod
    def evaluate_processes(cls, options: Options, threads: int) -> int:
        """Processes the ``evaluate`` stage splits a variant's batches over: 1, since a runtime uses ``threads``
        itself; a runtime that computes on one thread whatever ``threads`` says returns ``threads``."""
        return 1

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

    @classmethod
    def decoder_backend(cls, for_optimize: bool = False) -> type:
        """Import and return the decoder backend class; raise if the runtime is missing."""
        require(*cls.dependencies, *(cls.optimize_dependencies if for_optimize else ()))
        module_name, _, class_name = cls.decoder_backend_path.partition(":")
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

    def prepare(self, folder: Path) -> None:
        """Import the code that loading ``folder`` needs but the runtime's import does not bring (a model class
        that a library imports lazily), so that neither the load time nor the model's memory counts it. The
        timing worker calls it before it reads the RSS and starts the load clock; ``load`` works without it."""
        return None

    @abstractmethod
    def load(self, folder: Path) -> None:
        """Load a variant folder made by ``optimize`` so that ``run`` can be called."""

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Run one batch (``input_ids``, ``attention_mask``, ``token_type_ids``, int64)."""

    def describe(self) -> dict[str, Any]:
        """Settings the runtime actually used (threads, providers, precision), for the record."""
        return {"threads": self.threads}


# The transformers encoder a model folder maps to, for every runtime that starts from the PyTorch model
# (PyTorch runs it; ONNX Runtime and Olive export it). It lives here, beside the interface every runtime
# imports, so a variant's pipeline stages import no other runtime's folder (dvc.yaml lists one per variant).
_UNSUPPORTED_FIX = "use another runtime for this model, or remove this variant from params.yaml"


def model_type(folder: Path) -> str:
    """``model_type`` of ``folder/config.json`` ('' when absent)."""
    return str(read_json(Path(folder) / "config.json").get("model_type", ""))


def encoder_class(folder: Path, runtime: str) -> type:
    """The transformers class ``AutoModel`` builds for ``folder`` (the bare encoder, no task head).

    Raises:
        UnsupportedModelError: transformers does not know the model_type, or has no AutoModel for it.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    try:
        config = AutoConfig.from_pretrained(folder)
    except (ValueError, KeyError) as exc:  # transformers raises these for a model_type it does not know
        raise UnsupportedModelError(
            f"the {runtime} runtime cannot load model_type {model_type(folder)!r}: transformers does not know it ({exc})", _UNSUPPORTED_FIX
        ) from exc
    if type(config) not in MODEL_MAPPING:
        raise UnsupportedModelError(f"the {runtime} runtime cannot run model_type {config.model_type!r}: "
                                    "transformers has no AutoModel (bare encoder) for it", _UNSUPPORTED_FIX)
    return MODEL_MAPPING[type(config)]


def encoder_kwargs(model_class: type) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that leave out the pooler, where the class has one.

    edgekit pools the last hidden state itself; BERT's pooler (dense + tanh on the CLS token)
    would be computed on every call and never read. ONNX and OpenVINO exports drop it too.
    """
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return {"add_pooling_layer": False}
    return {}
