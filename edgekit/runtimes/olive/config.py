"""Microsoft Olive config (no olive, onnxruntime or torch import here).

Olive makes the variant with its own passes; ONNX Runtime loads and runs it, so a deployed Olive
variant needs onnxruntime alone.

Example:
    >>> OliveConfig.options.parse({"calibrate_method": "Percentile"}, "variants.olive-int8-static.options")
"""

from __future__ import annotations

import dataclasses

from edgekit.deps import OLIVE, ONNX, ONNXRUNTIME, TORCH, TRANSFORMERS
from edgekit.errors import ConfigError
from edgekit.runtimes.base import Options, RuntimeConfig
from edgekit.runtimes.onnxruntime.config import OnnxRuntimeOptions
from edgekit.tasks.base import Support
from edgekit.tasks.embedding.task import FidelityFloor
from edgekit.tasks.generation.task import DecoderFloor

CALIBRATE_METHODS = ("MinMax", "Entropy", "Percentile")
# The options ONNX Runtime reads when it loads a variant; any other ORT option keeps its default.
SESSION_FIELDS = ("graph_optimization_level", "allow_spinning")


@dataclasses.dataclass(frozen=True)
class OliveOptions(Options):
    """Options of an Olive variant; each maps to a field of one Olive pass config.

    Attributes:
        opset: ``target_opset`` of Olive's ``OnnxConversion`` pass.
        fusions: run Olive's ``OrtTransformersOptimization`` pass (model_type bert, opt_level 1) for
            BERT-like models; other model types are exported unfused.
        per_channel: int8 precisions only; one weight scale per output channel instead of per tensor.
        calibrate_method: int8-static only; how ``OnnxStaticQuantization`` turns the calibration
            activations into ranges (MinMax, Entropy or Percentile).
        graph_optimization_level: level ONNX Runtime applies again when it loads the variant.
        allow_spinning: ONNX Runtime's intra-op threads spin-wait between calls (its default);
            lower latency, but burns CPU that a neighbour process would otherwise get.
    """

    opset: int = 18
    fusions: bool = True
    per_channel: bool = True
    calibrate_method: str = "MinMax"
    graph_optimization_level: str = "all"
    allow_spinning: bool = True

    def validate(self, field: str) -> None:
        if not 13 <= self.opset <= 21:
            raise ConfigError(f"{field}.opset", self.opset, "an opset from 13 to 21")
        if self.calibrate_method not in CALIBRATE_METHODS:
            raise ConfigError(f"{field}.calibrate_method", self.calibrate_method, " or ".join(CALIBRATE_METHODS))
        self.session_options().validate(field)  # ONNX Runtime's own rules for its session options

    def session_options(self) -> OnnxRuntimeOptions:
        """The ONNX Runtime options that load and run this variant."""
        return OnnxRuntimeOptions(**{name: getattr(self, name) for name in SESSION_FIELDS})


EMBEDDING = Support(
    backend="edgekit.runtimes.olive.backend:OliveBackend",
    precisions=("fp32", "int8", "int8-static"),
    # Measured on MiniLM-L6, cosine_mean / retention against the PyTorch baseline, all STS pairs and
    # 128 calibration sentences (in brackets: the conformance project, 40 pairs and 16 sentences):
    #   fp32         1.0000 / 1.000   (1.0000 / 1.000)
    #   int8         0.9932 / 0.9985  (0.9935 / 0.977)  the same numbers as edgekit's own ort-int8
    #   int8-static  0.948  / 0.989   (0.948  / 0.996)  MinMax; Percentile 0.952 / 0.984. Quantizing the
    #                activations too costs fidelity on this model, as OpenVINO's full int8 does (DESIGN.md).
    floors={
        "fp32": FidelityFloor(cosine_mean=0.9999, retention=0.999),
        "int8": FidelityFloor(cosine_mean=0.98, retention=0.97),
        "int8-static": FidelityFloor(cosine_mean=0.93, retention=0.95),
    },
    conformance_options={
        "fp32": (({"fusions": False}, FidelityFloor(0.9999, 0.999)),),
        "int8-static": (({"calibrate_method": "Percentile"}, FidelityFloor(0.93, 0.95)),),
    },
)

GENERATION = Support(
    backend="edgekit.runtimes.olive.decoder:OliveDecoder",
    # Olive's workflow exports the decoder with the KV cache as inputs (OnnxConversion, dynamo exporter) and, for
    # int4, quantizes it weight-only with OnnxBlockWiseRtnQuantization; OnnxRuntimeDecoder runs it. Measured on the
    # suite's 2-layer LLaMA, KL / top-1: fp32 6e-14 / 1.000 (greedy identical), int4 2.2e-3 / 0.915. Olive's pass also
    # makes the token embedding 4-bit; with the embedding left fp32 it measured 1.3e-3 / 0.918, the onnxruntime int4's.
    precisions=("fp32", "int4"),
    floors={
        "fp32": DecoderFloor(kl_mean=1e-5, top1_agreement=0.995, greedy_identical=True),
        "int4": DecoderFloor(kl_mean=1e-2, top1_agreement=0.85),
    },
)


class OliveConfig(RuntimeConfig):
    name = "olive"
    extra = "olive"
    # The variant is an ONNX Runtime model: loading and benchmarking it needs onnxruntime only.
    dependencies = (ONNXRUNTIME,)
    # Olive's OnnxConversion pass exports the Hugging Face model with torch and transformers.
    optimize_dependencies = (OLIVE, ONNX, TORCH, TRANSFORMERS)
    kinds = {"embedding": EMBEDDING, "generation": GENERATION}
    options = OliveOptions
    # Its variants load and run through OnnxRuntimeBackend. dvc.yaml's per-variant template can name one
    # runtime folder, so the olive stages do not re-run on an edit to edgekit/runtimes/onnxruntime alone
    # (`dvc repro --force -s optimize@olive-int8` does); the import-trace test allows exactly this folder.
    runs_on = ("onnxruntime",)
