"""llama.cpp backend: GGUF conversion and K-quants, and per-token states from our own token ids.

``optimize`` runs llama.cpp's converter (``converter.py``) in a child Python for f32/f16/q8_0, and
quantizes an f32 GGUF with ``llama_model_quantize`` for the K-quants. ``run`` feeds the token ids
edgekit's tokenizer made straight to ``llama_encode`` (no re-tokenization, no pooling in llama.cpp)
and reads every token's hidden state, so pooling stays shared with the other runtimes.

Example:
    >>> backend = LlamaCppBackend("q8_0", LlamaCppOptions(), threads=2)
    >>> record = backend.optimize(Path("models/source"), out, context)
    >>> backend.load(out)
    >>> hidden = backend.run(TextEncoder(out, 128).encode(["a sentence"]))
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from edgekit.errors import EdgekitError
from edgekit.runtimes.llamacpp.converter import ConversionError, check_architecture, convert, converter_source, describe_gguf
from edgekit.tasks.embedding.backend import Backend, OptimizeContext

MODEL_FILE = "model.gguf"
# The converter writes these itself (``--outtype``); the K-quants need llama.cpp's quantizer.
_CONVERTER_OUTTYPES = ("f32", "f16", "q8_0")
_QUANT_FTYPES = {"q5_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
_FTYPE_NAMES = {
    llama_cpp.LLAMA_FTYPE_ALL_F32: "F32",
    llama_cpp.LLAMA_FTYPE_MOSTLY_F16: "F16",
    llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0: "Q8_0",
    llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M: "Q5_K_M",
    llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M: "Q4_K_M",
}
_INT32_P = ctypes.POINTER(ctypes.c_int32)
# Tokenizer files edgekit's TextEncoder reads from the variant folder (the GGUF holds llama.cpp's own copy).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)


class RowTooLongError(EdgekitError):
    """A row has more tokens than one encoder pass holds."""


class _TokenBatch:
    """A ``llama_batch`` whose arrays are numpy buffers, filled with vector writes instead of a per-token loop."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.token = np.zeros(capacity, np.int32)
        self.pos = np.zeros(capacity, np.int32)
        self.seq = np.zeros(capacity, np.int32)
        self.n_seq_id = np.ones(capacity, np.int32)
        self.output = np.ones(capacity, np.int8)  # every token's state is wanted
        # llama_batch.seq_id is an array of pointers, one per token; each points at that token's slot in self.seq.
        self._seq_rows = (_INT32_P * capacity)(*(ctypes.cast(self.seq.ctypes.data + 4 * i, _INT32_P) for i in range(capacity)))
        self.batch = llama_cpp.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(_INT32_P),
            embd=None,
            pos=self.pos.ctypes.data_as(_INT32_P),
            n_seq_id=self.n_seq_id.ctypes.data_as(_INT32_P),
            seq_id=ctypes.cast(self._seq_rows, ctypes.POINTER(_INT32_P)),
            logits=self.output.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )

    def fill(self, ids: np.ndarray, mask: np.ndarray, lengths: np.ndarray) -> int:
        """Put the unmasked tokens of each row in, row ``i`` as sequence ``i`` at positions 0..n-1."""
        n = int(lengths.sum())
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        self.token[:n] = ids[mask]
        self.pos[:n] = np.arange(n) - starts
        self.seq[:n] = np.repeat(np.arange(len(lengths)), lengths)
        self.batch.n_tokens = n
        return n




def repack_weights(options: Any) -> bool:
    """Whether llama.cpp may repack weights at load (``options.repack``; ``auto``: unless its CPU backend uses AMX,
    where repacked q8_0 and q4_k_m models crashed, see ``LlamaCppOptions``)."""
    if options.repack != "auto":
        return options.repack == "on"
    return "AMX_INT8 = 1" not in llama_cpp.llama_print_system_info().decode(errors="replace")


@contextlib.contextmanager
def _model_params(**fields: Any) -> Iterator[None]:
    """``llama_cpp.Llama`` builds its ``llama_model_params`` itself and has no argument for some fields
    (``use_extra_bufts``): while a model loads, its defaults carry ``fields``."""
    module = llama_cpp.llama_cpp
    defaults = module.llama_model_default_params

    def with_fields():
        params = defaults()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    module.llama_model_default_params = with_fields
    try:
        yield
    finally:
        module.llama_model_default_params = defaults

class LlamaCppBackend(Backend):
    def optimize(self, source: Path, out: Path, context: OptimizeContext) -> dict[str, Any]:
        converter = converter_source()
        architecture = check_architecture(converter, source)  # before any work: an architecture llama.cpp lacks is skipped
        # no durations in the record: the manifest is a DVC output and must be the same on every run
        record: dict[str, Any] = {"converter": converter.record(), "architecture": architecture, "steps": []}
        target = out / MODEL_FILE
        if self.precision in _CONVERTER_OUTTYPES:
            self._convert(converter, source, target, self.precision, record)
        else:
            intermediate = context.scratch / "model-f32.gguf"
            self._convert(converter, source, intermediate, "f32", record)
            self._quantize(intermediate, target, record)
        record["gguf"] = describe_gguf(converter, target)
        for name in _TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, out / name)
        return record

    def _convert(self, converter, source: Path, target: Path, outtype: str, record: dict) -> None:
        convert(converter, source, target, outtype)
        record["steps"].append(f"convert_hf_to_gguf.py --outtype {outtype} (llama-cpp-python {converter.version} sdist)")
        record["outtype"] = outtype

    def _quantize(self, intermediate: Path, target: Path, record: dict) -> None:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = _QUANT_FTYPES[self.precision]
        params.nthread = self.threads
        status = llama_cpp.llama_model_quantize(str(intermediate).encode(), str(target).encode(), ctypes.byref(params))
        if status != 0 or not target.is_file():
            raise ConversionError(
                f"llama_model_quantize to {self.precision.upper()} failed with status {status}",
                "re-run with the f32 precision to check the conversion alone",
            )
        record["steps"].append(f"llama_model_quantize F32 -> {_FTYPE_NAMES[params.ftype]} ({self.threads} threads)")
        record["quantization"] = {"ftype": _FTYPE_NAMES[params.ftype], "from": "F32"}

    def load(self, folder: Path) -> None:
        # pooling NONE: llama.cpp returns every token's state and edgekit pools (the shared numpy code).
        # n_ctx 0 takes the model's trained context, which bounds the positions a row may use.
        with _model_params(use_extra_bufts=repack_weights(self.options)):
            self.llm = llama_cpp.Llama(
                str(folder / MODEL_FILE),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
                n_ctx=0,
                n_batch=self.options.n_ubatch,
                n_ubatch=self.options.n_ubatch,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                flash_attn=self.options.flash_attn,
                use_mmap=self.options.use_mmap,
                verbose=False,
            )
        self.n_embd = self.llm.n_embd()
        self.max_row = min(self.llm.n_ctx(), self.llm.context_params.n_ubatch)
        self.max_rows = self.llm.context_params.n_seq_max
        self.tokens = _TokenBatch(self.llm.context_params.n_ubatch)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        ids, mask = inputs["input_ids"], inputs["attention_mask"].astype(bool)
        if inputs["token_type_ids"].any():
            # llama.cpp's BERT graph adds token-type row 0 to every token (src/models/bert.cpp).
            raise EdgekitError(
                "llama.cpp's BERT ignores token_type_ids, but this batch has non-zero ones (sentence pairs)",
                "embed each sentence on its own, or use another runtime for pair inputs",
            )
        lengths = mask.sum(axis=1)
        if lengths.max(initial=0) > self.max_row:
            # A longer row would trip GGML_ASSERT(n_ubatch >= n_tokens) and abort the process (llama.cpp#6296).
            raise RowTooLongError(
                f"a row has {lengths.max()} tokens; one llama.cpp encoder pass holds {self.max_row}",
                "raise options.n_ubatch (up to the model's context) or lower model.max_seq_length",
            )
        hidden = np.zeros((*ids.shape, self.n_embd), np.float32)
        for start, stop in self._passes(lengths):
            self._encode(ids[start:stop], mask[start:stop], lengths[start:stop], hidden[start:stop])
        return hidden

    def _passes(self, lengths: np.ndarray) -> list[tuple[int, int]]:
        """Consecutive row ranges that each fit one encoder pass (tokens and sequence slots)."""
        passes, start, tokens = [], 0, 0
        for row, length in enumerate(lengths.tolist()):
            if row > start and (tokens + length > self.tokens.capacity or row - start >= self.max_rows):
                passes.append((start, row))
                start, tokens = row, 0
            tokens += length
        passes.append((start, len(lengths)))
        return passes

    def _encode(self, ids: np.ndarray, mask: np.ndarray, lengths: np.ndarray, hidden: np.ndarray) -> None:
        n = self.tokens.fill(ids, mask, lengths)
        if n == 0:
            return
        status = llama_cpp.llama_encode(self.llm.ctx, self.tokens.batch)
        if status != 0:
            raise EdgekitError(
                f"llama_encode failed with status {status} on {n} tokens (llama.cpp logs the reason)",
                "check that the variant is a BERT-family encoder made by `edgekit optimize`, then re-run it",
            )
        hidden[mask] = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings(self.llm.ctx), shape=(n, self.n_embd))

    def describe(self) -> dict[str, Any]:
        ftype = llama_cpp.llama_model_ftype(self.llm.model)
        description = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.llm.model, description, len(description))
        return {
            "threads": self.threads,
            "quant_type": _FTYPE_NAMES.get(ftype, f"ftype {ftype}"),
            "model": description.value.decode(errors="replace"),
            "n_ubatch": self.tokens.capacity,
            "max_rows_per_pass": self.max_rows,
            "flash_attn": self.options.flash_attn,
            "use_mmap": self.options.use_mmap,
            "repack": repack_weights(self.options),
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
            "llama_cpp_python": llama_cpp.__version__,
        }
