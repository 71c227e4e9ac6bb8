"""Olive decoder: an Olive workflow makes a causal LM with its KV cache as graph inputs; ONNX Runtime runs it.

The workflow (``olive.workflows.run``, fixed passes, no search, no evaluator) takes the local Hugging Face
folder as an ``HfModel`` with task ``text-generation-with-past`` and runs ``OnnxConversion`` with the dynamo
exporter; int4 adds ``OnnxBlockWiseRtnQuantization`` (weight-only 4-bit, symmetric blocks of 32, the
onnxruntime decoder's settings). The graph takes ``past_key_values.N.key/value`` and returns
``present.N.key/value``, the convention ``OnnxRuntimeDecoder`` loads, so loading and running are its own
and need onnxruntime alone. Olive is imported only inside ``optimize``.

Two things Olive 0.13 needs around it, both measured on the conformance suite's LLaMA:
- its TorchScript exporter (``use_dynamo_exporter`` false, the default) hands transformers (4.57 here) the KV
  cache as a list of tuples and fails in the model's forward (``'list' object has no attribute
  'get_seq_length'``): only the dynamo branch of olive/passes/onnx/conversion.py patches the forward to
  build a ``DynamicCache``, so the workflow uses the dynamo exporter;
- ``OnnxBlockWiseRtnQuantization`` appends ``_Q4`` to the output of every MatMul it rewrites, graph outputs
  included, so the int4 graph returns ``logits_Q4`` (fixed after 0.13 by microsoft/Olive#2539); ``optimize``
  gives the graph outputs back their exported names.

Example:
    >>> decoder = OliveDecoder("int4", OliveOptions(), threads=2)
    >>> record = decoder.optimize(Path("models/decoder"), out, scratch)
    >>> [p["pass"] for p in record["passes"]]
    ['onnxconversion', 'onnxblockwisertnquantization']
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

# First: this module sets ORT_DISABLE_TELEMETRY before anything imports onnxruntime (see its comment).
from edgekit.runtimes.olive.backend import _pass_history, _portable, _run_workflow, _silence_telemetry
from edgekit.runtimes.onnxruntime.backend import MODEL_FILE
from edgekit.runtimes.onnxruntime.decoder import _METADATA_KEY, INT4_SETTINGS, OnnxRuntimeDecoder

TASK = "text-generation-with-past"
# Olive's names for the onnxruntime decoder's int4 settings. Olive's pass also rewrites the token embedding
# (Gather -> GatherBlockQuantized, blocks of 32 along the hidden size), which the onnxruntime decoder keeps in
# fp32; the record counts both. accuracy_level stays unset (fp32 activations), as in the onnxruntime decoder.
INT4_PASS: dict[str, Any] = {
    "type": "OnnxBlockWiseRtnQuantization",
    "bits": 4,
    "block_size": INT4_SETTINGS["block_size"],
    "is_symmetric": INT4_SETTINGS["is_symmetric"],
}
# Options of the encoder's workflow that a decoder variant does not use; the record says so.
_ENCODER_ONLY_OPTIONS = ("fusions", "per_channel", "calibrate_method")
_TOKENIZER_FILES = ("config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
# A protobuf holds at most 2 GB: a bigger graph keeps its weights beside it, as the onnxruntime decoder's does.
_SINGLE_FILE_BYTES = 1_800_000_000


class OliveDecoder(OnnxRuntimeDecoder):
    """Decoder variants made by an Olive workflow, loaded and run as ``OnnxRuntimeDecoder`` runs its own.

    ``OliveOptions`` carries the ONNX Runtime session options (graph_optimization_level, allow_spinning)
    under the same names, so the inherited ``load`` and ``describe`` read them directly.
    """

    def optimize(self, source: Path, out: Path, scratch: Path) -> dict[str, Any]:
        source = Path(source).resolve()  # an existing local path: Olive would ask the Hub about a bare name
        work = Path(scratch).resolve() / "olive"
        _silence_telemetry()
        config = self.workflow_config(source, work)
        output, best = _run_workflow(config, work / "tmp")
        passes = _pass_history(output.footprint, best.model_id)
        renamed = _write_variant(_onnx_file(best), out, self._quantization(passes))
        for name in _TOKENIZER_FILES:  # a server of the registered version tokenizes with them (edgekit.serve.generate)
            if (source / name).is_file():
                shutil.copy2(source / name, out / name)
        return _portable(self._record(config, passes, renamed, out), {str(work): "<scratch>", str(source): "<source>"})

    def workflow_config(self, source: Path, work: Path) -> dict[str, Any]:
        """The Olive run config for this precision and these options."""
        # The dynamo exporter: Olive 0.13's TorchScript path cannot export a transformers KV cache (module docstring).
        # External data at every step, so a model past protobuf's 2 GB limit goes through; optimize re-saves it.
        storage = {"save_as_external_data": True, "all_tensors_to_one_file": True}
        passes: dict[str, dict[str, Any]] = {
            "conversion": {"type": "OnnxConversion", "target_opset": self.options.opset, "use_dynamo_exporter": True, **storage}
        }
        if self.precision == "int4":
            passes["quantization"] = {**INT4_PASS, **storage}
        return {
            "workflow_id": f"edgekit-olive-decoder-{self.precision}",
            "input_model": {"type": "HfModel", "model_path": str(source), "task": TASK},
            "systems": {
                "local": {
                    "type": "LocalSystem",
                    "accelerators": [{"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}],
                }
            },
            "host": "local",
            "target": "local",
            "passes": passes,
            "search_strategy": False,
            "evaluate_input_model": False,
            "cache_dir": str(work / "cache"),
            "output_dir": str(work / "output"),
            "log_severity_level": 2,  # warnings and errors: the child's stderr tail lands in a failed manifest
        }

    def _quantization(self, passes: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The settings the quantization pass ran with, as Olive recorded them; None for fp32."""
        configs = [p["config"] for p in passes if p["pass"] == INT4_PASS["type"].lower()]
        if not configs:
            return None
        settings = {key: configs[0][key] for key in ("bits", "block_size", "axis", "is_symmetric", "accuracy_level")}
        return {"algorithm": f"Olive {INT4_PASS['type']}", **settings}

    def _record(self, config: dict[str, Any], passes: list[dict[str, Any]], renamed: dict[str, str], out: Path) -> dict[str, Any]:
        import olive
        import onnx

        proto = onnx.load(str(out / MODEL_FILE), load_external_data=False)
        metadata = {prop.key: prop.value for prop in proto.metadata_props}
        return {
            "olive": olive.__version__,
            "steps": [f"olive {p['pass']}" for p in passes]
            + [f"edgekit renamed graph output {old} back to {new}" for old, new in renamed.items()],
            "workflow": {key: config[key] for key in ("input_model", "passes", "search_strategy")},
            "execution_provider": "CPUExecutionProvider",
            "passes": passes,
            "quantization": json.loads(metadata[_METADATA_KEY]) if _METADATA_KEY in metadata else None,
            "final_ops": dict(Counter(node.op_type for node in proto.graph.node).most_common()),
            "ignored_options": {name: getattr(self.options, name) for name in _ENCODER_ONLY_OPTIONS},
            "telemetry": {
                "olive": "off (OLIVE_DISABLE_TELEMETRY and CI set while Olive built its telemetry)",
                "onnxruntime": "off" if os.environ.get("ORT_DISABLE_TELEMETRY") == "1" else "on (ORT_DISABLE_TELEMETRY is not 1)",
            },
        }


def _onnx_file(best) -> Path:
    """The .onnx file of Olive's output model: with external data its model_path is the folder holding both."""
    path = Path(best.model_path)
    return path / best.model_config.get("onnx_file_name", MODEL_FILE) if path.is_dir() else path


def _write_variant(model: Path, out: Path, quantization: dict[str, Any] | None) -> dict[str, str]:
    """Save Olive's output model into ``out`` with its exported output names and the quantization settings
    as metadata (``OnnxRuntimeDecoder.describe`` reads them); return the outputs renamed, old -> new."""
    import onnx

    proto = onnx.load(str(model))  # pulls in the external data Olive wrote beside it
    renamed = _restore_output_names(proto.graph)
    if quantization is not None:
        settings = {**quantization, **_weights_quantized(proto.graph)}
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, {_METADATA_KEY: json.dumps(settings)})
    large = sum(len(tensor.raw_data) for tensor in proto.graph.initializer) > _SINGLE_FILE_BYTES
    onnx.save_model(
        proto, str(out / MODEL_FILE), save_as_external_data=large, all_tensors_to_one_file=True, location=MODEL_FILE + ".data"
    )
    return renamed


def _restore_output_names(graph) -> dict[str, str]:
    """Undo the ``_Q<bits>`` suffix Olive 0.13's RTN pass puts on graph outputs (microsoft/Olive#2539)."""
    taken = {value.name for value in graph.output}
    renames = {}
    for value in graph.output:
        original = re.sub(r"_Q\d+$", "", value.name)
        if original != value.name and original not in taken:
            renames[value.name] = original
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in graph.output:
        value.name = renames.get(value.name, value.name)
    return renames


def _weights_quantized(graph) -> dict[str, int]:
    """How many MatMuls and embedding Gathers became 4-bit, and how many MatMuls with a constant weight stayed float."""
    constants = {tensor.name for tensor in graph.initializer}
    ops = Counter(node.op_type for node in graph.node)
    return {
        "matmuls_quantized": ops["MatMulNBits"],
        "gathers_quantized": ops["GatherBlockQuantized"],
        "matmuls_left_float": sum(node.op_type == "MatMul" and node.input[1] in constants for node in graph.node),
    }
