"""ONNX Runtime backend: optimum export, offline transformer fusions, dynamic int8 quantization.

The export (torch, optimum) is imported only inside ``optimize``; loading and running a variant
needs onnxruntime alone, as on a deployed device.

Example:
    >>> backend = OnnxRuntimeBackend("int8", OnnxRuntimeOptions(per_channel=True), threads=2)
    >>> record = backend.optimize(Path("models/source"), out, calibration=[])
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgekit.errors import UnsupportedModelError
from edgekit.runtimes.base import model_type
from edgekit.tasks.embedding.backend import Backend, OptimizeContext, encoder_class

MODEL_FILE = "model.onnx"
_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# Model types onnxruntime.transformers.optimizer has fusion rules for (its MODEL_TYPES table).
_FUSABLE = {"bert", "roberta", "distilbert", "xlm-roberta", "mpnet", "electra", "albert"}


def _op_counts(path: Path) -> dict[str, int]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(Counter(node.op_type for node in graph.node).most_common())


def check_exportable(source: Path, runtime: str = "onnxruntime") -> None:
    """Refuse, before any work, a model optimum's ONNX exporter has no feature-extraction config for.

    Raises:
        UnsupportedModelError: transformers or optimum does not support the model_type.
    """
    import optimum.exporters.onnx.model_configs  # noqa: F401  (importing it fills optimum's table of model types)
    from optimum.exporters.tasks import TasksManager

    encoder_class(source, runtime)
    kind = model_type(source)
    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(kind, exporter="onnx", library_name="transformers")
    except KeyError:  # optimum's way of saying "not supported yet" (its message lists every model type)
        tasks = {}
    if "feature-extraction" not in tasks:
        raise UnsupportedModelError(
            f"the {runtime} runtime cannot export model_type {kind!r}: optimum's ONNX exporter has no "
            "feature-extraction config for it", "use the pytorch or openvino runtime for this model")


class OnnxRuntimeBackend(Backend):
    def optimize(self, source: Path, out: Path, context: OptimizeContext) -> dict[str, Any]:
        from optimum.exporters.onnx import main_export

        check_exportable(source)
        record: dict[str, Any] = {"steps": []}
        with tempfile.TemporaryDirectory(dir=out) as scratch:
            scratch = Path(scratch)
            main_export(
                str(source), scratch / "export", task="feature-extraction", opset=self.options.opset,
                library_name="transformers", device="cpu", do_validation=False,
            )
            model = scratch / "export" / MODEL_FILE
            record["steps"].append(f"optimum export, task feature-extraction, opset {self.options.opset}")
            record["exported_ops"] = _op_counts(model)
            model_type = json.loads((source / "config.json").read_text()).get("model_type", "")
            if self.options.fusions:
                model = self._fuse(model, model_type, scratch, record)
            if self.precision == "int8":
                model = self._quantize(model, scratch, record)
            shutil.move(str(model), out / MODEL_FILE)
            for path in (scratch / "export").iterdir():
                if path.suffix in (".json", ".txt", ".model") and path.is_file():
                    shutil.copy2(path, out / path.name)
        record["final_ops"] = _op_counts(out / MODEL_FILE)
        return record

    def _fuse(self, model: Path, model_type: str, scratch: Path, record: dict) -> Path:
        if model_type not in _FUSABLE:
            record["fusions"] = f"none: onnxruntime has no fusion rules for model_type {model_type!r}"
            return model
        from onnxruntime.transformers.optimizer import optimize_model

        # opt_level 1 keeps the fused graph portable across CPUs; ORT adds its
        # hardware-specific rewrites again at session creation.
        optimized = optimize_model(str(model), model_type="bert", num_heads=0, hidden_size=0, opt_level=1)
        record["fusions"] = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
        fused = scratch / "fused.onnx"
        optimized.save_model_to_file(str(fused))
        record["steps"].append("onnxruntime.transformers fusions (model_type bert, opt_level 1)")
        return fused

    def _quantize(self, model: Path, scratch: Path, record: dict) -> Path:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = scratch / "int8.onnx"
        # Fused contrib ops (Attention, SkipLayerNormalization) defeat the quantizer's shape
        # inference; their outputs are float, which DefaultTensorType tells it.
        quantize_dynamic(
            str(model), str(quantized), per_channel=self.options.per_channel, weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        granularity = "per-channel" if self.options.per_channel else "per-tensor"
        record["steps"].append(f"dynamic int8 quantization, QInt8 weights, {granularity}")
        record["quantization"] = {"mode": "dynamic", "weight_type": "QInt8", "per_channel": self.options.per_channel}
        return quantized

    def load(self, folder: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = _LEVELS[self.options.graph_optimization_level]
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.options.allow_spinning else "0")
        self.session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output_name], {name: inputs[name] for name in self.input_names})[0]

    def describe(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "inter_op_threads": 1,
            "providers": self.session.get_providers(),
            "graph_optimization_level": self.options.graph_optimization_level,
            "allow_spinning": self.options.allow_spinning,
            "execution_mode": "sequential",
            "onnxruntime": ort.__version__,
            # onnxruntime does not report which MLAS kernels it dispatched to, so this is inferred (and says so).
            "mlas_isa_path": mlas_isa_path(),
        }


# MLAS picks its GEMM kernels from cpuid at start-up, best first (onnxruntime/core/mlas/lib/platform.cpp).
_MLAS_DISPATCH = (
    ("amx_int8", "AMX (int8 GEMM), AVX512 for the rest"),
    ("avx512_vnni", "AVX512-VNNI (int8 GEMM), AVX512F (fp32 GEMM)"),
    ("avx_vnni", "AVX-VNNI (int8 GEMM), AVX2/FMA (fp32 GEMM)"),
    ("avx512bw", "AVX512 core (int8 and fp32 GEMM)"),
    ("avx2", "AVX2/FMA"),
    ("asimddp", "NEON with dot product (int8 GEMM)"),
    ("asimd", "NEON"),
)


def mlas_isa_path() -> dict[str, str]:
    """The MLAS kernel family this CPU gets, inferred from its flags in MLAS's own dispatch order."""
    from edgekit.bench.system import isa_flags

    flags = isa_flags()
    path = next((name for flag, name in _MLAS_DISPATCH if flag in flags), "SSE (baseline x86 kernels)")
    return {"value": path, "source": "inferred from /proc/cpuinfo flags in MLAS's dispatch order; not reported by onnxruntime"}

