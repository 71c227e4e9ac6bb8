"""Apple MLX backend: the BERT encoder of ``model.py``, fp32 or affine 8/4-bit weights via ``nn.quantize``.

A variant folder holds ``mlx_model.safetensors`` (weights as MLX saves them: packed uint32 plus
scales and biases for quantized modules), ``mlx_config.json`` (bits, group size and which modules
were quantized, so ``load`` rebuilds the same quantized modules before loading the weights), the
HF ``config.json`` and the tokenizer files.

Same code on every platform: Metal on Apple silicon, ``mlx[cpu]`` on Linux. The Linux CPU build
computes matmuls with a bundled reference (netlib) BLAS on one stream thread and has no thread
setting, so it is one to two orders of magnitude slower than the other runtimes here — a finding
the benchmark reports, not a bug in this adapter. MiniLM-L6, batch 1 × 32 tokens, x86_64: about
290 ms per call (fp32; 8- and 4-bit about 310 ms: MLX's CPU quantized matmul is no faster than its
BLAS), against 16 ms for PyTorch on one thread; ``mx.compile`` changes nothing measurable there
(the matmuls dominate) and is kept on for Metal, where it fuses the elementwise ops.

Example:
    >>> backend = MlxBackend("int4", MlxOptions(group_size=64), threads=2)
    >>> record = backend.optimize(Path("models/source"), out, context)
    >>> backend.load(out)
    >>> hidden = backend.run(batch)  # float32 (batch, seq, hidden)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import EdgekitError, MissingDependencyError, ModelSourceError, StageInputError

try:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
except (ImportError, OSError) as exc:  # plain `mlx` on Linux has no libmlx.so; `mlx[cpu]` ships it
    raise MissingDependencyError("mlx", "mlx", detail=f"import failed: {exc}") from exc

from edgekit.fsutil import read_json, write_json
from edgekit.runtimes.mlx.model import BertConfig, BertEncoder, load_hf_weights
from edgekit.tasks.embedding.backend import Backend, OptimizeContext

WEIGHTS_FILE = "mlx_model.safetensors"
MLX_CONFIG_FILE = "mlx_config.json"
FORMAT_VERSION = 1
BITS = {"fp32": None, "int8": 8, "int4": 4}
WORD_EMBEDDINGS = "embeddings.word"
# Files a variant needs from the source besides the weights: HF config and tokenizer.
_SOURCE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def select_device(requested: str) -> mx.Device:
    """The MLX device for ``auto``/``cpu``/``gpu``; ``auto`` takes Metal when present, else the CPU.

    Raises:
        EdgekitError: ``gpu`` was asked for and MLX sees none.
    """
    if requested == "auto":
        return mx.gpu if mx.metal.is_available() else mx.cpu
    if requested == "gpu" and not mx.is_available(mx.gpu):
        raise EdgekitError("options.device = 'gpu' but MLX sees no GPU here", "use device: auto or device: cpu")
    return mx.gpu if requested == "gpu" else mx.cpu


def device_name(device: mx.Device) -> str:
    if device == mx.cpu:
        return "cpu"
    return "gpu (Metal)" if mx.metal.is_available() else "gpu"


def build_model(folder: Path) -> BertEncoder:
    """An uninitialized encoder shaped by ``folder/config.json``.

    Raises:
        UnsupportedModelError: the config is not one this BERT encoder computes correctly.
    """
    return BertEncoder(BertConfig.from_hf(read_json(folder / "config.json")))


def quantizable(model: BertEncoder, group_size: int, embeddings: bool) -> list[str]:
    """Paths of the modules to quantize: every Linear, and the word embeddings if asked.

    A module whose input width is not a multiple of ``group_size`` cannot be quantized by MLX;
    it stays fp32 and is absent from the list (the record shows it).
    """
    paths = []
    for path, module in model.named_modules():
        wanted = isinstance(module, nn.Linear) or (embeddings and path == WORD_EMBEDDINGS)
        if wanted and module.weight.shape[-1] % group_size == 0:
            paths.append(path)
    return sorted(paths)


def quantize(model: BertEncoder, bits: int, group_size: int, paths: list[str]) -> None:
    """Replace the modules at ``paths`` by their affine ``bits``-bit versions, in place."""
    chosen = set(paths)
    nn.quantize(model, group_size=group_size, bits=bits, mode="affine", class_predicate=lambda path, _: path in chosen)


def parameter_bytes(model: nn.Module) -> int:
    return sum(value.nbytes for _, value in tree_flatten(model.parameters()))


def _read_source_weights(source: Path) -> dict[str, mx.array]:
    files = sorted(source.glob("*.safetensors"))
    if not files:
        raise ModelSourceError(f"{source} has no .safetensors weights", "re-run `dvc repro baseline` (it saves safetensors)")
    weights: dict[str, mx.array] = {}
    for path in files:  # one file, or the shards of a sharded checkpoint
        weights.update(mx.load(str(path)))
    return weights


def _save_weights(model: nn.Module, out: Path) -> None:
    # A temporary name in the same folder, then a rename: a kill never leaves a truncated weights file.
    tmp = out / f".{WEIGHTS_FILE}.{os.getpid()}.tmp.safetensors"
    mx.save_safetensors(str(tmp), dict(tree_flatten(model.parameters())), metadata={"format": "mlx"})
    os.replace(tmp, out / WEIGHTS_FILE)


class MlxBackend(Backend):
    def optimize(self, source: Path, out: Path, context: OptimizeContext) -> dict[str, Any]:
        # First, before any work: an architecture this encoder would compute wrongly is refused (skipped).
        config = BertConfig.from_hf(read_json(source / "config.json"))
        mx.set_default_device(select_device(self.options.device))
        model = BertEncoder(config)
        load_hf_weights(model, _read_source_weights(source))
        fp32_bytes = parameter_bytes(model)
        bits, group_size = BITS[self.precision], self.options.group_size
        steps = ["map HF BERT weights onto the mlx.nn encoder (fp32)"]
        paths: list[str] = []
        if bits:
            paths = quantizable(model, group_size, self.options.quantize_embeddings)
            quantize(model, bits, group_size, paths)
            steps.append(f"nn.quantize affine {bits}-bit, group size {group_size}, {len(paths)} modules")
        mx.eval(model.parameters())
        _save_weights(model, out)
        write_json(out / MLX_CONFIG_FILE, self._mlx_config(bits, paths))
        for name in _SOURCE_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, out / name)
        steps.append(f"mx.save_safetensors {WEIGHTS_FILE}")
        return {
            "steps": steps,
            "bits": bits,
            "group_size": group_size if bits else None,
            "mode": "affine" if bits else None,
            "quantized_modules": paths,
            "parameter_bytes": parameter_bytes(model),
            "parameter_bytes_fp32": fp32_bytes,
            "mlx": mx.__version__,
            "device": device_name(mx.default_device()),
        }

    def _mlx_config(self, bits: int | None, paths: list[str]) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "precision": self.precision,
            "bits": bits,
            "group_size": self.options.group_size if bits else None,
            "mode": "affine" if bits else None,
            "quantized_modules": paths,
            "mlx": mx.__version__,
        }

    def load(self, folder: Path) -> None:
        self.device = select_device(self.options.device)
        mx.set_default_device(self.device)
        saved = self._read_mlx_config(folder)
        model = build_model(folder)
        if saved["bits"]:
            quantize(model, saved["bits"], saved["group_size"], saved["quantized_modules"])
        model.load_weights(str(folder / WEIGHTS_FILE), strict=True)
        mx.eval(model.parameters())
        self.model, self.saved = model, saved
        # Closed-over parameters become constants of the compiled graph: right for inference,
        # where they never change. One trace per input shape; the benchmark's shape is fixed.
        self.forward = mx.compile(model) if self.options.compile else model

    def _read_mlx_config(self, folder: Path) -> dict[str, Any]:
        saved = read_json(folder / MLX_CONFIG_FILE)
        if saved.get("format_version") != FORMAT_VERSION or saved.get("precision") != self.precision:
            raise StageInputError(
                f"{folder / MLX_CONFIG_FILE} is format {saved.get('format_version')} for precision {saved.get('precision')!r}, "
                f"expected format {FORMAT_VERSION} for {self.precision!r}",
                f"re-run `dvc repro optimize@{folder.name}`",
            )
        return saved

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        input_ids = mx.array(inputs["input_ids"])
        token_type_ids = inputs.get("token_type_ids")
        token_type_ids = mx.zeros_like(input_ids) if token_type_ids is None else mx.array(token_type_ids)
        hidden = self.forward(input_ids, token_type_ids, mx.array(inputs["attention_mask"]))
        mx.eval(hidden)
        return np.array(hidden, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            # MLX has no thread setting; on Linux its CPU ops run on one stream thread with a
            # single-threaded reference BLAS, whatever `threads` says.
            "threads": None,
            "threads_requested": self.threads,
            "thread_control": "none: MLX exposes no thread setting",
            "device": device_name(self.device),
            "mlx": mx.__version__,
            "bits": self.saved["bits"],
            "group_size": self.saved["group_size"],
            "quantized_modules": len(self.saved["quantized_modules"]),
            "compiled": self.options.compile,
        }
