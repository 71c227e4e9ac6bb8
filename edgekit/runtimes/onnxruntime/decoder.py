"""ONNX Runtime decoder: a causal LM exported by optimum with its KV cache as graph inputs and outputs.

``optimize`` exports the ``text-generation-with-past`` graph (it takes ``past_key_values.N.key/value`` and
returns ``present.N.key/value``) and, for int4, rewrites every MatMul with a constant weight into a
``MatMulNBits`` (weight-only 4-bit, blocks of 32, symmetric). The KV cache is what the session returns:
numpy arrays fed back on the next call, as a plain onnxruntime deployment keeps it. As for the encoder,
the export (torch, optimum) is imported only inside ``optimize``; loading and running need onnxruntime alone.

Example:
    >>> decoder = OnnxRuntimeDecoder("int4", OnnxRuntimeOptions(), threads=2)
    >>> decoder.load(folder, context=512)
    >>> decoder.prefill([1, 87, 5]).shape
    (1024,)
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgekit.errors import EdgekitError, UnsupportedModelError
from edgekit.runtimes.base import model_type
from edgekit.runtimes.onnxruntime.backend import _LEVELS, MODEL_FILE, _op_counts, mlas_isa_path
from edgekit.runtimes.onnxruntime.config import OnnxRuntimeOptions
from edgekit.tasks.generation.backend import DecoderBackend

TASK = "text-generation-with-past"
# Weight-only int4: round-to-nearest, symmetric blocks of 32 along the input dimension, one fp32 scale per block.
# accuracy_level None keeps activations in fp32 (MatMulNBits' level 0), so the variant measures the cost of the
# 4-bit weights alone; level 4 (int8 activations) ran about 1.6x faster on the default decoder, at a cost unmeasured.
INT4_SETTINGS: dict[str, Any] = {"algorithm": "RTN (DEFAULT)", "bits": 4, "block_size": 32, "is_symmetric": True,
                                 "accuracy_level": None, "quant_format": "QOperator", "op_types_to_quantize": ["MatMul"]}
# The session carries the settings it was quantized with, so ``describe`` reads them from the model it runs.
_METADATA_KEY = "edgekit.quantization"
_PAST, _PRESENT = "past_key_values.", "present."
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
# Options of the encoder's export that a decoder variant does not use; the record says so.
_ENCODER_ONLY_OPTIONS = ("fusions", "per_channel")


def check_decoder_exportable(source: Path, runtime: str = "onnxruntime") -> None:
    """Refuse, before any work, a model optimum's ONNX exporter cannot export as a decoder with a KV cache.

    Raises:
        UnsupportedModelError: optimum has no ``text-generation-with-past`` config for the model_type.
    """
    import optimum.exporters.onnx.model_configs  # noqa: F401  (importing it fills optimum's table of model types)
    from optimum.exporters.tasks import TasksManager

    kind = model_type(source)
    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(kind, exporter="onnx", library_name="transformers")
    except KeyError:  # optimum's way of saying "not supported yet"
        tasks = {}
    if TASK not in tasks:
        raise UnsupportedModelError(f"the {runtime} decoder backend cannot export model_type {kind!r}: optimum's ONNX "
                                    f"exporter has no {TASK} config for it", "use the pytorch or llamacpp runtime for this model")


def session_options(options: OnnxRuntimeOptions, threads: int) -> ort.SessionOptions:
    """The encoder backend's session settings: ``threads`` intra-op, one inter-op, sequential execution."""
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = threads
    settings.inter_op_num_threads = 1
    settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    settings.graph_optimization_level = _LEVELS[options.graph_optimization_level]
    settings.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
    return settings


def _import_quantizer() -> type:
    """onnxruntime's ``MatMulNBitsQuantizer``, imported without the logging set-up its module does on import.

    The module calls ``logging.basicConfig(level=INFO)``, which would send every library's INFO records to stderr
    for the rest of the process, and logs one line per graph node; only its warnings are kept.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization import matmul_nbits_quantizer

    root.handlers[:], root.level = handlers, level
    logging.getLogger(matmul_nbits_quantizer.__name__).setLevel(logging.WARNING)
    return matmul_nbits_quantizer.MatMulNBitsQuantizer


def _model_files(folder: Path) -> list[Path]:
    """``model.onnx`` and its external data file, if the graph was saved with one."""
    return sorted(folder.glob(MODEL_FILE + "*"))


class OnnxRuntimeDecoder(DecoderBackend):
    def optimize(self, source: Path, out: Path, scratch: Path) -> dict[str, Any]:
        from optimum.exporters.onnx import main_export

        check_decoder_exportable(source)
        record: dict[str, Any] = {"steps": [], "ignored_options": {name: getattr(self.options, name) for name in _ENCODER_ONLY_OPTIONS}}
        export = scratch / "export"
        # do_validation compares with PyTorch at the exporter's own tolerance; edgekit measures fidelity itself.
        main_export(str(source), export, task=TASK, opset=self.options.opset, library_name="transformers",
                    device="cpu", do_validation=False)
        record["steps"].append(f"optimum export, task {TASK}, opset {self.options.opset}")
        record["exported_ops"] = _op_counts(export / MODEL_FILE)
        folder = self._quantize_int4(export / MODEL_FILE, scratch / "int4", record) if self.precision == "int4" else export
        for path in _model_files(folder):
            shutil.move(str(path), out / path.name)
        # The tokenizer travels with the variant, as the other runtimes' decoder folders carry it: a server of the
        # registered version tokenizes with it (edgekit.serve.generate).
        for name in ("config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
            if (source / name).is_file():
                shutil.copy2(source / name, out / name)
        record["final_ops"] = _op_counts(out / MODEL_FILE)
        return record

    def _quantize_int4(self, model: Path, folder: Path, record: dict[str, Any]) -> Path:
        """Write the weight-only int4 graph of ``model`` into ``folder``; return ``folder``."""
        import onnx

        quantizer_class = _import_quantizer()
        quantizer = quantizer_class(str(model), bits=4, block_size=INT4_SETTINGS["block_size"],
                                    is_symmetric=INT4_SETTINGS["is_symmetric"], accuracy_level=INT4_SETTINGS["accuracy_level"])
        quantizer.process()
        proto = quantizer.model.model
        settings = {**INT4_SETTINGS, **_weights_left(proto)}
        onnx.helper.set_model_props(proto, {_METADATA_KEY: json.dumps(settings)})
        folder.mkdir(exist_ok=True)
        # A protobuf holds at most 2 GB: a bigger graph keeps its weights beside it in model.onnx_data, as optimum's export does.
        large = sum(len(tensor.raw_data) for tensor in proto.graph.initializer) > 1_800_000_000
        quantizer.model.save_model_to_file(str(folder / MODEL_FILE), use_external_data_format=large)
        record["steps"].append("weight-only int4 (MatMulNBitsQuantizer): 4-bit symmetric blocks of 32, fp32 activations")
        record["quantization"] = settings
        return folder

    def load(self, folder: Path, context: int) -> None:
        self.session = ort.InferenceSession(str(folder / MODEL_FILE), session_options(self.options, self.threads),
                                            providers=["CPUExecutionProvider"])
        inputs = {node.name: node for node in self.session.get_inputs()}
        self.past_names = [name for name in inputs if name.startswith(_PAST)]
        self.present_names = [_PRESENT + name[len(_PAST):] for name in self.past_names]
        missing = {"input_ids", "logits", *self.present_names} - set(inputs) - {node.name for node in self.session.get_outputs()}
        if missing or not self.past_names:
            raise EdgekitError(f"{folder / MODEL_FILE} is no decoder with a KV cache (missing {sorted(missing) or 'past_key_values'})",
                               f"re-run `dvc repro decoder_optimize@{folder.name}`")
        # (batch, kv heads, past length, head dim); a new sequence starts from a past of length 0.
        self.empty_cache = {name: np.zeros((1, inputs[name].shape[1], 0, inputs[name].shape[3]), _DTYPES[inputs[name].type])
                            for name in self.past_names}
        self.optional_inputs = {"attention_mask", "position_ids"} & set(inputs)
        self.context = context
        self.reset()

    def reset(self) -> None:
        self.cache = self.empty_cache
        self.position = 0

    def _forward(self, ids: Sequence[int]) -> np.ndarray:
        """Run ``ids`` on top of the cache, keep the grown cache, return the logits of every position."""
        start, end = self.position, self.position + len(ids)
        if end > self.context:
            raise EdgekitError(f"{end} tokens exceed the context of {self.context}", "shorten decoder.benchmark.prompt_lengths or generate_tokens")
        feed = {"input_ids": np.asarray([ids], dtype=np.int64), **self.cache}
        if "attention_mask" in self.optional_inputs:
            feed["attention_mask"] = np.ones((1, end), dtype=np.int64)
        if "position_ids" in self.optional_inputs:
            feed["position_ids"] = np.arange(start, end, dtype=np.int64)[None]
        logits, *present = self.session.run(["logits", *self.present_names], feed)
        self.cache = dict(zip(self.past_names, present, strict=True))
        self.position = end
        return np.asarray(logits[0], dtype=np.float32)

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        # The exported graph has no logits_to_keep: it computes every position's logits and this keeps the last.
        return self._forward(ids)[-1]

    def decode(self, token: int) -> np.ndarray:
        return self._forward([token])[-1]

    def score(self, ids: Sequence[int]) -> np.ndarray:
        self.reset()
        logits = self._forward(ids)
        self.reset()
        return logits

    def describe(self) -> dict[str, Any]:
        metadata = self.session.get_modelmeta().custom_metadata_map
        return {
            "threads": self.threads,
            "inter_op_threads": 1,
            "execution_mode": "sequential",
            "providers": self.session.get_providers(),
            "graph_optimization_level": self.options.graph_optimization_level,
            "allow_spinning": self.options.allow_spinning,
            "onnxruntime": ort.__version__,
            "precision": self.precision,
            "quantization": json.loads(metadata[_METADATA_KEY]) if _METADATA_KEY in metadata else None,
            "kv_cache": f"numpy {self.empty_cache[self.past_names[0]].dtype} arrays fed back as past_key_values",
            "mlas_isa_path": mlas_isa_path(),
        }


def _weights_left(model) -> dict[str, int]:
    """How many MatMuls became MatMulNBits, and how many with a constant weight were left in float."""
    constants = {tensor.name for tensor in model.graph.initializer}
    nodes = model.graph.node
    return {"matmuls_quantized": sum(node.op_type == "MatMulNBits" for node in nodes),
            "matmuls_left_float": sum(node.op_type == "MatMul" and node.input[1] in constants for node in nodes)}
