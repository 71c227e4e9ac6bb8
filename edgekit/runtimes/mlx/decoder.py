"""Apple MLX decoder: mlx-lm's model code and KV cache, fp32 or affine 8/4-bit weights from mlx-lm's ``quantize_model``.

A variant folder is what ``mlx_lm.convert`` writes, so ``mlx_lm.load`` opens it too: ``config.json`` (the HF
config plus mlx-lm's ``quantization`` block of bits, group size and mode), ``model.safetensors`` in MLX's
layout (packed uint32 weights with scales and biases for the quantized modules) with its index, and the
tokenizer files. Unlike ``convert`` it never casts: every floating tensor is float32, quantized or not.

MLX has no thread setting (neither an API nor an environment variable): the Linux ``mlx[cpu]`` build
computes on one stream thread with a bundled reference BLAS, whatever ``threads`` says, so it is much
slower than the other runtimes here — a finding the benchmark reports, not a bug in this adapter.
``prefill`` computes the logits of every prompt position and keeps the last, as ``mlx_lm.generate`` does.

Example:
    >>> decoder = MlxDecoder("int4", MlxOptions(group_size=64), threads=2)
    >>> decoder.optimize(Path("models/decoder"), out, scratch)
    >>> decoder.load(out, context=512)
    >>> decoder.prefill([1, 87, 5]).shape
    (1024,)
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import EdgekitError, MissingDependencyError, StageInputError, UnsupportedModelError
from edgekit.fsutil import read_json
from edgekit.runtimes.mlx.backend import BITS, device_name, parameter_bytes, select_device  # raises if mlx is missing
from edgekit.tasks.generation.backend import DecoderBackend

try:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx_lm
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.utils import MODEL_REMAPPING, compute_bits_per_weight, load_model, quantize_model, save_config, save_model
except ImportError as exc:
    raise MissingDependencyError("mlx-lm", "mlx", detail=f"import failed: {exc}") from exc

MODE = "affine"
# Besides config.json and the weights, the files a variant keeps from the source (tokenizer, generation defaults).
_SOURCE_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "added_tokens.json", "generation_config.json")
_FIX = "use the pytorch or llamacpp runtime for this model"


def check_architecture(source: Path) -> str:
    """The source's ``model_type``, if mlx-lm has model code for it.

    Raises:
        UnsupportedModelError: mlx-lm has no model of that type.
    """
    model_type = str(read_json(source / "config.json").get("model_type", ""))
    # mlx-lm's own lookup: one module per model_type under mlx_lm.models, after its renames (mistral -> llama)
    module = MODEL_REMAPPING.get(model_type, model_type)
    if not module or importlib.util.find_spec(f"mlx_lm.models.{module}") is None:
        raise UnsupportedModelError(f"mlx-lm {mlx_lm.__version__} has no model code for model_type {model_type!r}", _FIX)
    return model_type


def dtype_names(model: nn.Module) -> list[str]:
    return sorted({str(value.dtype).removeprefix("mlx.core.") for _, value in tree_flatten(model.parameters())})


def to_float32(model: nn.Module) -> list[str]:
    """Cast every floating parameter to float32 in place; the dtypes found before, for the record.

    ``mlx_lm.convert`` casts to the config's ``torch_dtype`` (often fp16 or bf16): the fp32 variant must not.
    """
    found = dtype_names(model)
    model.update(tree_map(lambda v: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v, model.parameters()))
    return found


def quantized_paths(model: nn.Module) -> tuple[list[str], list[str]]:
    """Paths of the quantized modules, and of the Linear/Embedding modules left in float32."""
    quantized, kept = [], []
    for path, module in model.named_modules():
        if isinstance(module, nn.QuantizedLinear | nn.QuantizedEmbedding):
            quantized.append(path)
        elif isinstance(module, nn.Linear | nn.Embedding):
            kept.append(path)
    return sorted(quantized), sorted(kept)


class MlxDecoder(DecoderBackend):
    def optimize(self, source: Path, out: Path, scratch: Path) -> dict[str, Any]:
        record: dict[str, Any] = {"model_type": check_architecture(source), "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__}
        mx.set_default_device(select_device(self.options.device))
        model, config = load_model(source, lazy=True)  # mlx-lm's sanitize drops HF's rotary buffers
        record["source_dtypes"] = to_float32(model)
        record["steps"] = [f"mlx_lm load_model {config['model_type']} from safetensors, float32"]
        bits = BITS[self.precision]
        if bits:
            config = self._quantize(model, config, bits, record)
        mx.eval(model.parameters())
        record.update(parameter_bytes=parameter_bytes(model), bits_per_weight=round(compute_bits_per_weight(model), 3),
                      dtypes=dtype_names(model))
        # ``out`` is the stage's staged folder (``fsutil.staged_dir``): it replaces the variant only once
        # everything is written, so mlx-lm's in-place writes cannot leave a half-written variant.
        save_model(out, model)
        save_config(config, out / "config.json")
        record["files"] = [name for name in _SOURCE_FILES if (source / name).is_file()]
        for name in record["files"]:
            shutil.copy2(source / name, out / name)
        record["steps"].append("mlx_lm save_model / save_config (mlx_lm.convert's layout)")
        return record

    def _quantize(self, model: nn.Module, config: dict[str, Any], bits: int, record: dict[str, Any]) -> dict[str, Any]:
        """mlx-lm's quantization of every Linear and Embedding whose width ``group_size`` divides; the new config."""
        group_size, embeddings = self.options.group_size, self.options.quantize_embeddings
        _, config = quantize_model(model, config, group_size, bits, mode=MODE,
                                   quant_predicate=lambda _, module: embeddings or not isinstance(module, nn.Embedding))
        record["quantized_modules"], record["float32_modules"] = quantized_paths(model)
        record.update(bits=bits, group_size=group_size, mode=MODE)
        record["steps"].append(f"mlx_lm quantize_model {MODE} {bits}-bit, group size {group_size}, "
                               f"{len(record['quantized_modules'])} modules")
        return config

    def load(self, folder: Path, context: int) -> None:
        # MLX has no thread setting to apply (see the module docstring); ``describe`` records that.
        self.device = select_device(self.options.device)
        mx.set_default_device(self.device)
        try:
            self.model, self.config = load_model(folder)  # strict, evaluated, in eval mode
        except FileNotFoundError as exc:
            raise StageInputError(f"{folder} holds no MLX model ({exc})", f"re-run `dvc repro decoder_optimize@{folder.name}`") from exc
        self._check_precision(folder)
        self.context = context
        self.reset()

    def _check_precision(self, folder: Path) -> None:
        saved = (self.config.get("quantization") or {}).get("bits")
        if saved != BITS[self.precision]:
            raise StageInputError(f"{folder / 'config.json'} holds {saved or 'no'}-bit quantization, "
                                  f"but precision {self.precision!r} means {BITS[self.precision] or 'none'}",
                                  f"re-run `dvc repro decoder_optimize@{folder.name}`")

    def reset(self) -> None:
        self.cache = make_prompt_cache(self.model)
        self.position = 0

    def _forward(self, ids: Sequence[int], cache: list[Any] | None, all_positions: bool) -> np.ndarray:
        if self.position + len(ids) > self.context:
            raise EdgekitError(f"{self.position + len(ids)} tokens exceed the context of {self.context}",
                               "shorten decoder.benchmark.prompt_lengths or generate_tokens")
        logits = self.model(mx.array([list(ids)], dtype=mx.int32), cache=cache)[0]
        logits = (logits if all_positions else logits[-1]).astype(mx.float32)
        mx.eval(logits)  # MLX is lazy: this runs the forward (and the cache update)
        self.position += len(ids)
        return np.array(logits)

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        return self._forward(ids, self.cache, all_positions=False)

    def decode(self, token: int) -> np.ndarray:
        return self._forward([token], self.cache, all_positions=False)

    def score(self, ids: Sequence[int]) -> np.ndarray:
        self.reset()
        logits = self._forward(ids, None, all_positions=True)  # no cache: one causal pass, nothing kept
        self.reset()
        return logits

    def describe(self) -> dict[str, Any]:
        quantization = self.config.get("quantization") or {}
        return {
            "threads": None, "threads_requested": self.threads, "thread_control": "none: MLX exposes no thread setting",
            "device": device_name(self.device), "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__,
            "precision": self.precision, "dtype": "float32", "bits": quantization.get("bits"),
            "group_size": quantization.get("group_size"), "mode": quantization.get("mode"),
            "kv_cache": f"mlx-lm {type(self.cache[0]).__name__}", "compiled": False,
        }
