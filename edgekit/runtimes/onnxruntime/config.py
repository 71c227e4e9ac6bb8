"""ONNX Runtime config (no onnxruntime import here).

Example:
    >>> OnnxRuntimeConfig.options.parse({"per_channel": True}, "variants.ort-int8.options")
"""

from __future__ import annotations

import dataclasses

from edgekit.deps import ONNX, ONNXRUNTIME, OPTIMUM_ONNX, TORCH
from edgekit.errors import ConfigError
from edgekit.runtimes.base import Options, RuntimeConfig
from edgekit.tasks.base import Support
from edgekit.tasks.embedding.task import FidelityFloor
from edgekit.tasks.generation.task import DecoderFloor


@dataclasses.dataclass(frozen=True)
class OnnxRuntimeOptions(Options):
    """Options of an ONNX Runtime variant.

    Attributes:
        opset: ONNX opset for the export.
        fusions: apply onnxruntime's transformer fusions (Attention, SkipLayerNorm, BiasGelu) offline.
        per_channel: int8 only; one scale per output channel instead of per tensor.
        graph_optimization_level: level ORT applies again at session creation.
        allow_spinning: intra-op threads spin-wait between calls (ORT's default); lower latency,
            but burns CPU that a neighbour process would otherwise get.
    """

    opset: int = 18
    fusions: bool = True
    per_channel: bool = True
    graph_optimization_level: str = "all"
    allow_spinning: bool = True

    def validate(self, field: str) -> None:
        if not 13 <= self.opset <= 21:
            raise ConfigError(f"{field}.opset", self.opset, "an opset from 13 to 21")
        levels = ("disable", "basic", "extended", "all")
        if self.graph_optimization_level not in levels:
            raise ConfigError(f"{field}.graph_optimization_level", self.graph_optimization_level, " or ".join(levels))


EMBEDDING = Support(
    backend="edgekit.runtimes.onnxruntime.backend:OnnxRuntimeBackend",
    precisions=("fp32", "int8"),
    floors={
        "fp32": FidelityFloor(cosine_mean=0.9999, retention=0.999),
        "int8": FidelityFloor(cosine_mean=0.98, retention=0.97),  # per-channel measured 0.993 on MiniLM-L6
    },
    conformance_options={
        "fp32": (({"fusions": False}, FidelityFloor(0.9999, 0.999)),),
        # per-tensor int8 measured 0.966 mean cosine on MiniLM-L6: a real cost, hence the lower bar
        "int8": (({"per_channel": False}, FidelityFloor(0.95, 0.95)),),
    },
)

GENERATION = Support(
    backend="edgekit.runtimes.onnxruntime.decoder:OnnxRuntimeDecoder",
    precisions=("fp32", "int4"),
    # Measured on the default decoder (4 layers, 256 wide, 20 held-out windows of 128 tokens), KL / top-1:
    #   fp32 4e-13 / 1.000 (greedy identical), int4 9.1e-4 / 0.946 (the suite's 2-layer model: 1.3e-3 / 0.918)
    floors={
        "fp32": DecoderFloor(kl_mean=1e-5, top1_agreement=0.995, greedy_identical=True),
        "int4": DecoderFloor(kl_mean=1e-2, top1_agreement=0.85),
    },
)


class OnnxRuntimeConfig(RuntimeConfig):
    name = "onnxruntime"
    extra = "onnxruntime"
    dependencies = (ONNXRUNTIME,)
    # The export needs torch and optimum; a deployed variant needs only onnxruntime.
    optimize_dependencies = (ONNX, OPTIMUM_ONNX, TORCH)
    kinds = {"embedding": EMBEDDING, "generation": GENERATION}
    options = OnnxRuntimeOptions
