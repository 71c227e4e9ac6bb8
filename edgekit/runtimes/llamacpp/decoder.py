"""llama.cpp decoder: a GGUF of a LLaMA-family model, fed edgekit's token ids through ``llama_decode``.

The variant is made as the encoder's is (``convert_hf_to_gguf.py`` for f32/f16/q8_0, ``llama_model_quantize``
from f32 for the K-quants). Prefill asks llama.cpp for the last position's logits only, as a server does;
``score`` asks for every position's.

Example:
    >>> decoder = LlamaCppDecoder("q4_k_m", LlamaCppOptions(), threads=2)
    >>> decoder.load(folder, context=512)
    >>> decoder.prefill([1, 87, 5]).shape
    (1024,)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp._logger
import numpy as np

from edgekit.errors import EdgekitError, UnsupportedModelError
from edgekit.runtimes.llamacpp.backend import _FTYPE_NAMES, MODEL_FILE, LlamaCppBackend, _TokenBatch, repack_weights
from edgekit.runtimes.llamacpp.converter import architecture_table, converter_source, describe_gguf
from edgekit.tasks.generation.backend import DecoderBackend

# The converter module of LLaMA-family decoders (LLaMA, Mistral, ... share llama.cpp's llama graph).
DECODER_MODULE = "llama"


def check_decoder_architecture(source, model: Path) -> str:
    """The model's HF architecture, if llama.cpp's converter turns it into a LLaMA-graph decoder."""
    import json

    config = json.loads((model / "config.json").read_text())
    architecture = (config.get("architectures") or [""])[0]
    table = architecture_table(source)
    if table is not None and table.get(architecture) != DECODER_MODULE:
        known = sorted(name for name, module in table.items() if module == DECODER_MODULE)
        raise UnsupportedModelError(f"the llamacpp decoder backend converts LLaMA-family models, not {architecture!r}",
                                    f"use another runtime for this model; LLaMA-family architectures: {', '.join(known)}")
    return architecture


class LlamaCppDecoder(DecoderBackend):
    def optimize(self, source: Path, out: Path, scratch: Path) -> dict[str, Any]:
        converter = converter_source()
        record: dict[str, Any] = {"converter": converter.record(), "architecture": check_decoder_architecture(converter, source), "steps": []}
        # The encoder backend's conversion and quantization steps, unchanged: one GGUF per variant.
        maker = LlamaCppBackend(self.precision, self.options, self.threads)
        target = out / MODEL_FILE
        if self.precision in ("f32", "f16", "q8_0"):
            maker._convert(converter, source, target, self.precision, record)
        else:
            intermediate = scratch / "model-f32.gguf"
            maker._convert(converter, source, intermediate, "f32", record)
            maker._quantize(intermediate, target, record)
        record["gguf"] = describe_gguf(converter, target)
        for name in ("config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
            if (source / name).is_file():
                shutil.copy2(source / name, out / name)
        return record

    def load(self, folder: Path, context: int) -> None:
        # llama-cpp-python's log callback: errors only (``Llama(verbose=False)`` does the same for the encoder)
        llama_cpp._logger.set_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if self.options.use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
        params.use_extra_bufts = repack_weights(self.options)
        self.model = llama_cpp.llama_model_load_from_file(str(folder / MODEL_FILE).encode(), params)
        if not self.model:
            raise EdgekitError(f"llama.cpp could not load {folder / MODEL_FILE}", f"re-run `dvc repro decoder_optimize@{folder.name}`")
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = context
        ctx_params.n_batch = ctx_params.n_ubatch = min(context, self.options.n_ubatch)
        ctx_params.n_threads = ctx_params.n_threads_batch = self.threads
        ctx_params.flash_attn_type = int(self.options.flash_attn)
        self.ctx = llama_cpp.llama_init_from_model(self.model, ctx_params)
        self.vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.tokens = _TokenBatch(ctx_params.n_batch)
        self.context = context
        self.reset()

    def reset(self) -> None:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self.position = 0

    def _decode(self, ids: Sequence[int], all_positions: bool) -> np.ndarray:
        n = len(ids)
        if n > self.tokens.capacity or self.position + n > self.context:
            raise EdgekitError(f"{n} tokens at position {self.position} do not fit one pass of {self.tokens.capacity} "
                               f"in a context of {self.context}", "shorten the prompt or raise options.n_ubatch")
        self.tokens.token[:n] = ids
        self.tokens.pos[:n] = np.arange(self.position, self.position + n)
        self.tokens.seq[:n] = 0
        self.tokens.output[:n] = 1 if all_positions else 0
        self.tokens.output[n - 1] = 1
        self.tokens.batch.n_tokens = n
        status = llama_cpp.llama_decode(self.ctx, self.tokens.batch)
        if status != 0:
            raise EdgekitError(f"llama_decode failed with status {status} on {n} tokens", "see llama.cpp's log above")
        self.position += n
        rows = range(n) if all_positions else (n - 1,)
        logits = np.stack([np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, i), shape=(self.vocab,)) for i in rows])
        return logits if all_positions else logits[0].copy()

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        return self._decode(ids, all_positions=False)

    def decode(self, token: int) -> np.ndarray:
        return self._decode([token], all_positions=False)

    def score(self, ids: Sequence[int]) -> np.ndarray:
        self.reset()
        logits = self._decode(ids, all_positions=True)
        self.reset()
        return logits

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's own tokenizer (the GGUF's vocabulary), with BOS, as a llama.cpp server would tokenize."""
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        raw = text.encode()
        buffer = (llama_cpp.llama_token * (len(raw) + 8))()
        count = llama_cpp.llama_tokenize(vocab, raw, len(raw), buffer, len(buffer), True, False)
        return list(buffer[:count])

    def describe(self) -> dict[str, Any]:
        import ctypes

        description = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.model, description, len(description))
        ftype = llama_cpp.llama_model_ftype(self.model) if hasattr(llama_cpp, "llama_model_ftype") else None
        return {"threads": self.threads, "quant_type": _FTYPE_NAMES.get(ftype, str(ftype)), "model": description.value.decode(errors="replace"),
                "n_batch": self.tokens.capacity, "flash_attn": self.options.flash_attn, "kv_cache": "llama.cpp f16 KV cache",
                "use_mmap": self.options.use_mmap, "repack": repack_weights(self.options), "llama_cpp_python": llama_cpp.__version__}
