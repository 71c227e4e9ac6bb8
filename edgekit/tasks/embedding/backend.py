"""The encoder side of a runtime: make a variant of a sentence encoder, load it, run it on token batches.

``Backend.run`` returns the model's last hidden state; pooling, tokenization and the metrics are the task's
(``edgekit.tasks.embedding.encoding``), shared by every runtime.

Example:
    >>> backend = get_runtime("onnxruntime").backend("embedding")("int8", options, threads=2)
    >>> backend.load(folder)
    >>> hidden = backend.run(TextEncoder(folder, 128).encode(["a sentence"]))  # (1, tokens, hidden)
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import UnsupportedModelError
from edgekit.runtimes.base import Options, model_type

if TYPE_CHECKING:  # a runtime's encoder backend must import without the tokenizers package
    from edgekit.tasks.embedding.encoding import TextEncoder


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
        encoder: the source model's tokenizer at ``max_seq_length`` (``edgekit.tasks.embedding.encoding.TextEncoder``), the one
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
            raise TypeError(f"OptimizeContext.encoder must be an edgekit.tasks.embedding.encoding.TextEncoder, got {self.encoder!r}")


class Backend(ABC):
    """A runtime adapter: make a variant, load it, run it on token batches.

    ``run`` returns the model's last hidden state as float32 ``(batch, seq, hidden)``; pooling is
    shared by every runtime (``edgekit.tasks.embedding.encoding``) so no runtime is favoured by its post-processing.
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
