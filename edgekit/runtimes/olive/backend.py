"""Microsoft Olive backend: an Olive workflow with fixed passes makes the model, ONNX Runtime runs it.

The workflow is run from a config dict (``olive.workflows.run``): input model ``HfModel`` (the local
source folder, task feature-extraction), then ``OnnxConversion``, ``OrtTransformersOptimization``
(model_type bert) and, for int8, ``OnnxDynamicQuantization`` or, for int8-static,
``OnnxStaticQuantization`` calibrated on the project's calibration sentences. There is no search and
no evaluator (edgekit measures every variant the same way); Olive's cache, output and temporary files
stay under ``context.scratch``.

Only ``optimize`` imports Olive (and torch through it). Loading and running are
``OnnxRuntimeBackend``'s, so the benchmark worker of an Olive variant imports onnxruntime alone.

Example:
    >>> backend = OliveBackend("int8", OliveOptions(), threads=2)
    >>> record = backend.optimize(Path("models/source"), out, context)
    >>> [p["pass"] for p in record["passes"]]
    ['onnxconversion', 'orttransformersoptimization', 'onnxdynamicquantization']
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import DataError, VariantError
from edgekit.runtimes.olive.config import OliveOptions
from edgekit.tasks.embedding.backend import Backend, OptimizeContext, encoder_class, encoder_kwargs

# onnxruntime 1.32's Linux wheel has native telemetry (microsoft/onnxruntime#27379): at import it writes
# a device id and an event store under ~/.cache/Microsoft and resolves mobile.events.data.microsoft.com,
# beyond any Python socket guard. Only ORT_DISABLE_TELEMETRY=1 set before onnxruntime is imported turns
# it off (measured: set after the import, the look-ups still happen), so it is set here, ahead of the
# import below, for every process that optimizes, evaluates or benchmarks an Olive variant.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from edgekit.runtimes.onnxruntime.backend import MODEL_FILE, OnnxRuntimeBackend  # noqa: E402

CALIBRATION_DATA = "edgekit_calibration"
# Model types whose ONNX graphs onnxruntime's bert fusion rules match (the onnxruntime backend's table).
_BERT_LIKE = {"bert", "roberta", "distilbert", "xlm-roberta", "mpnet", "electra", "albert"}
# Files of the source folder that the variant needs besides the model (the caller adds embedding.json, source.json).
_CARRIED_BY_CALLER = {"embedding.json", "source.json"}


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _silence_telemetry() -> None:
    """Build Olive's telemetry singleton switched off, before any Olive call can build it switched on.

    Olive 0.13 reads OLIVE_DISABLE_TELEMETRY only after it has queued a heartbeat (device id, OS) for
    mobile.events.data.microsoft.com, so that variable alone still makes the network attempts (eight
    DNS look-ups with back-off here) and caches the unsent event under ~/.cache to resend later
    (olive/telemetry/telemetry.py, ``Telemetry.__init__``; see microsoft/Olive#2443). Its CI check
    comes before the heartbeat, so the singleton is built once with both set; later calls reuse it.
    """
    try:
        from olive.telemetry.telemetry import Telemetry
    except ImportError:  # an Olive without telemetry has nothing to switch off
        return
    with _environment(OLIVE_DISABLE_TELEMETRY="1", CI="1"):
        Telemetry()


def _load_kwargs(source: Path) -> dict[str, Any]:
    """``HfModel.load_kwargs`` that leave out the pooler head edgekit never reads.

    Olive exports every output the Hugging Face model returns (optimum keeps only the task's), so
    without this the graph also computes ``pooler_output`` on every call.
    """
    kwargs = encoder_kwargs(encoder_class(source, "olive"))
    return {"extra_args": kwargs} if kwargs else {}


def _write_calibration(source: Path, folder: Path, context: OptimizeContext) -> dict[str, Any]:
    """Tokenize the calibration sentences into raw files; return the Olive data config that reads them.

    Olive's ``RawDataContainer`` needs no user script but one shape for every sample, so all
    sentences are padded to the longest (masked, as at inference).
    """
    if not context.calibration:
        raise DataError(  # this variant's alone: the others need no calibration, so they go on
            "int8-static needs calibration sentences and the data stage wrote none",
            "set data.calibration_size above 0 and run `dvc repro data`",
        )
    batch = context.encoder.encode(context.calibration)
    rows, width = batch["input_ids"].shape
    for name, values in batch.items():
        (folder / name).mkdir(parents=True)
        for row in range(rows):
            values[row : row + 1].tofile(folder / name / f"{row:05d}.bin")
    return {
        "name": CALIBRATION_DATA,
        "type": "RawDataContainer",
        "load_dataset_config": {
            "data_dir": str(folder),
            "input_names": list(batch),
            "input_shapes": [[1, width]] * len(batch),
            "input_types": ["int64"] * len(batch),
        },
    }


class _ErrorLog(logging.Handler):
    """Keeps Olive's error log lines: without a search, Olive logs a failed pass and returns no model."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        self.lines.append(f"{record.getMessage()} {type(error).__name__}: {error}" if error else record.getMessage())


def _run_workflow(config: dict[str, Any], temporary: Path):
    """Run the Olive workflow; return its best output model.

    Raises:
        VariantError: Olive made no output model (a pass failed); the message has Olive's error.
    """
    from olive.workflows import run

    errors, olive_logger, saved_tempdir = _ErrorLog(), logging.getLogger("olive"), tempfile.tempdir
    olive_logger.addHandler(errors)
    try:
        output = run(copy.deepcopy(config), tempdir=str(temporary))  # Olive rewrites the dict it is given
    finally:
        olive_logger.removeHandler(errors)
        tempfile.tempdir = saved_tempdir  # Olive moves it for its own run
    best = output.get_best_candidate() if output is not None else None
    if best is None:
        detail = errors.lines[-1] if errors.lines else "no error logged"
        raise VariantError(
            f"Olive made no model for workflow {config['workflow_id']}: {detail}",
            "change this variant's options or precision, or remove the variant from params.yaml",
        )
    return output, best


def _pass_history(footprint, model_id: str) -> list[dict[str, Any]]:
    """The passes that made ``model_id``, first to last, with the configs Olive recorded in its footprint."""
    history = []
    node = footprint.nodes[model_id]
    while node.from_pass:
        history.append(
            {
                "pass": node.from_pass,
                "model_id": node.model_id,
                "parent_model_id": node.parent_model_id,
                "config": node.pass_run_config,
            }
        )
        node = footprint.nodes[node.parent_model_id]
    return history[::-1]


def _copy_single_file(model: Path, destination: Path) -> None:
    """Copy an ONNX model to one file, pulling in tensors Olive may have written beside it."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    graph = onnx.load(str(model), load_external_data=False).graph
    if any(uses_external_data(tensor) for tensor in graph.initializer):
        onnx.save_model(onnx.load(str(model)), str(destination))
    else:
        shutil.copy2(model, destination)


def _op_counts(path: Path) -> dict[str, int]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(Counter(node.op_type for node in graph.node).most_common())


def _portable(value: Any, replacements: dict[str, str]) -> Any:
    """JSON-able ``value`` with the run's own folders replaced by placeholders, so manifests compare across runs."""
    text = json.dumps(value, default=str)
    for path, placeholder in replacements.items():
        text = text.replace(json.dumps(path)[1:-1], placeholder)
    return json.loads(text)


class OliveBackend(Backend):
    """Variants made by an Olive workflow (fixed passes, no search), loaded and run by ``OnnxRuntimeBackend``."""

    def __init__(self, precision: str, options: OliveOptions, threads: int):
        super().__init__(precision, options, threads)
        # The session is ONNX Runtime's own, built from the ORT options Olive's options carry.
        self.runtime = OnnxRuntimeBackend(precision, options.session_options(), threads)

    def load(self, folder: Path) -> None:
        self.runtime.load(folder)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.runtime.run(inputs)

    def describe(self) -> dict[str, Any]:
        return self.runtime.describe()

    def optimize(self, source: Path, out: Path, context: OptimizeContext) -> dict[str, Any]:
        source = Path(source).resolve()  # an existing local path: Olive would ask the Hub about a bare name
        encoder_class(source, "olive")  # first: Olive's HfModel loads the AutoModel a model type may lack
        work = Path(context.scratch).resolve() / "olive"
        _silence_telemetry()
        config = self.workflow_config(source, work, context)
        output, best = _run_workflow(config, work / "tmp")
        _copy_single_file(Path(best.model_path), out / MODEL_FILE)
        for path in source.iterdir():
            if path.suffix in (".json", ".txt", ".model") and path.is_file() and path.name not in _CARRIED_BY_CALLER:
                shutil.copy2(path, out / path.name)
        return self._record(
            config, _pass_history(output.footprint, best.model_id), out, {str(work): "<scratch>", str(source): "<source>"}
        )

    def workflow_config(self, source: Path, work: Path, context: OptimizeContext) -> dict[str, Any]:
        """The Olive run config for this precision and these options (writes calibration files for int8-static)."""
        model_type = json.loads((source / "config.json").read_text()).get("model_type", "")
        config: dict[str, Any] = {
            "workflow_id": f"edgekit-olive-{self.precision}",
            "input_model": {
                "type": "HfModel",
                "model_path": str(source),
                "task": "feature-extraction",
                "load_kwargs": _load_kwargs(source) or None,
            },
            "systems": {
                "local": {
                    "type": "LocalSystem",
                    "accelerators": [{"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}],
                }
            },
            "host": "local",
            "target": "local",
            "passes": self._passes(model_type),
            "search_strategy": False,
            "evaluate_input_model": False,
            "cache_dir": str(work / "cache"),
            "output_dir": str(work / "output"),
            "log_severity_level": 2,  # warnings and errors: the child's stderr tail lands in a failed manifest
        }
        if self.precision == "int8-static":
            config["data_configs"] = [_write_calibration(source, work / "calibration", context)]
        return config

    def _passes(self, model_type: str) -> dict[str, dict[str, Any]]:
        # save_as_external_data false: edgekit's manifest and loader expect the whole model in one file.
        passes = {"conversion": {"type": "OnnxConversion", "target_opset": self.options.opset, "save_as_external_data": False}}
        if self.options.fusions and model_type in _BERT_LIKE:
            # opt_level 1 keeps the fused graph portable; ONNX Runtime adds its CPU-specific rewrites at load.
            passes["transformer_optimization"] = {"type": "OrtTransformersOptimization", "model_type": "bert", "opt_level": 1}
        quantization = {"precision": "int8", "per_channel": self.options.per_channel}
        if self.precision == "int8":
            passes["quantization"] = {"type": "OnnxDynamicQuantization", **quantization}
        elif self.precision == "int8-static":
            # QOperator with uint8 activations: on MiniLM-L6 the default QDQ format measured the same
            # fidelity (cosine 0.942 vs 0.949) but ran 7x slower on the CPU provider next to the fused
            # Attention ops, and QDQ without the fusions broke the model (cosine 0.37).
            passes["quantization"] = {
                "type": "OnnxStaticQuantization",
                **quantization,
                "data_config": CALIBRATION_DATA,
                "quant_format": "QOperator",
                "activation_type": "uint8",
                "calibrate_method": self.options.calibrate_method,
            }
        return passes

    def _record(
        self, config: dict[str, Any], passes: list[dict[str, Any]], out: Path, replacements: dict[str, str]
    ) -> dict[str, Any]:
        import olive

        record = {
            "olive": olive.__version__,
            "steps": [f"olive {p['pass']}" for p in passes],
            "workflow": {key: config[key] for key in ("input_model", "passes", "search_strategy")},
            "execution_provider": "CPUExecutionProvider",
            "passes": passes,
            "final_ops": _op_counts(out / MODEL_FILE),
            "telemetry": {
                "olive": "off (OLIVE_DISABLE_TELEMETRY and CI set while Olive built its telemetry)",
                "onnxruntime": "off" if os.environ.get("ORT_DISABLE_TELEMETRY") == "1" else "on (ORT_DISABLE_TELEMETRY is not 1)",
            },
        }
        if "data_configs" in config:
            load = config["data_configs"][0]["load_dataset_config"]
            record["calibration"] = {
                "sentences": len(list(Path(load["data_dir"], "input_ids").iterdir())),
                "padded_length": load["input_shapes"][0][1],
                "container": "RawDataContainer",
            }
        return _portable(record, replacements)
