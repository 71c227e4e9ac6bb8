"""llama.cpp config (no llama_cpp import here): GGUF variants of BERT-family encoders and LLaMA-family decoders.

Example:
    >>> LlamaCppConfig.options.parse({"n_ubatch": 256}, "variants.gguf-q8.options")
    LlamaCppOptions(n_ubatch=256, flash_attn=False, use_mmap=True, repack='auto')
"""

from __future__ import annotations

import dataclasses

from edgekit.deps import LLAMA_CPP, TORCH, TRANSFORMERS
from edgekit.errors import ConfigError
from edgekit.runtimes.base import Options, RuntimeConfig
from edgekit.tasks.base import Support
from edgekit.tasks.embedding.task import FidelityFloor
from edgekit.tasks.generation.task import DecoderFloor

# The encoder's positions table bounds a row; 8192 covers every BERT-family context we know of.
_MAX_UBATCH = 8192
REPACK = ("auto", "on", "off")


@dataclasses.dataclass(frozen=True)
class LlamaCppOptions(Options):
    """Options of a llama.cpp variant (they change how a variant runs, not the GGUF file).

    Attributes:
        n_ubatch: tokens per encoder pass; rows are packed into passes up to this many tokens. A
            non-causal encoder cannot split a row across passes, so a row longer than this is refused.
        flash_attn: use llama.cpp's flash-attention kernel. Off by default: on CPU it made MiniLM-L6
            slower (batch 1 × 32 tokens, 1 thread: f32 20.7 ms on vs 17.0 ms off; q8_0 15.3 vs 11.6).
        use_mmap: map the GGUF file instead of reading it into memory (shared pages, faster load).
        repack: let llama.cpp repack quantized weights into its CPU "extra" buffer types (``use_extra_bufts``:
            interleaved layouts on AVX2/AVX-512, AMX tiles on Xeons with AMX) at load. ``auto`` (the default)
            is on, except where llama.cpp's CPU backend uses AMX (``AMX_INT8 = 1`` in its system info): there, with llama-cpp-python 0.3.36 built on the host (2-core Intel
            Xeon with AMX-INT8, 2026-11-30), every q8_0 and q4_k_m model we run (MiniLM's GGUF and the tiny
            decoder) died with SIGSEGV in its first llama_encode/llama_decode, and ran correctly with it off.
            ggml-org/llama.cpp#20824 is an open report of a segfault in ``ggml_backend_amx_mul_mat``.
    """

    n_ubatch: int = 512
    flash_attn: bool = False
    use_mmap: bool = True
    repack: str = "auto"

    def validate(self, field: str) -> None:
        if not 1 <= self.n_ubatch <= _MAX_UBATCH:
            raise ConfigError(f"{field}.n_ubatch", self.n_ubatch, f"an integer from 1 to {_MAX_UBATCH}")
        if self.repack not in REPACK:
            raise ConfigError(f"{field}.repack", self.repack, " or ".join(REPACK))



EMBEDDING = Support(
    backend="edgekit.runtimes.llamacpp.backend:LlamaCppBackend",
    precisions=("f32", "f16", "q8_0", "q5_k_m", "q4_k_m"),
    # Measured on MiniLM-L6, cosine_mean / retention, all 420 eval pairs (the conformance suite's 40):
    #   f32    0.999999 / 0.99993 (0.999999 / 1.000)
    #   f16    0.999999 / 0.99997 (0.999999 / 1.000)
    #   q8_0   0.99965  / 0.99996 (0.99964  / 0.9953)
    #   q5_k_m 0.99544  / 1.0028  (0.99542  / 0.9952)
    #   q4_k_m 0.99261  / 1.0003  (0.99254  / 1.0028)
    # MiniLM's 384-wide rows are not a multiple of 256, so most K-quant tensors fall back to Q5_1 (q5_k_m)
    # or Q5_0 (q4_k_m) (llama.cpp#3747): here they are mostly legacy quants, and q4_k_m is barely smaller.
    floors={
        "f32": FidelityFloor(cosine_mean=0.9999, retention=0.999),
        "f16": FidelityFloor(cosine_mean=0.9999, retention=0.999),
        "q8_0": FidelityFloor(cosine_mean=0.999, retention=0.99),
        "q5_k_m": FidelityFloor(cosine_mean=0.99, retention=0.98),
        "q4_k_m": FidelityFloor(cosine_mean=0.985, retention=0.98),
    },
    conformance_options={
        # flash attention measured 0.999999 / 0.997 on MiniLM-L6 (40 pairs): a second kernel path to hold up
        "f32": (({"flash_attn": True}, FidelityFloor(0.999, 0.99)),),
    },
)

GENERATION = Support(
    backend="edgekit.runtimes.llamacpp.decoder:LlamaCppDecoder",
    precisions=EMBEDDING.precisions,
    # Measured on the default decoder (4 layers, 256 wide, 20 held-out windows of 128 tokens), KL / top-1:
    #   f32 ~0 / 1.000, f16 3.5e-8 / 0.9996, q8_0 1.6e-5 / 0.993, q4_k_m 7.1e-4 / 0.959
    floors={
        "f32": DecoderFloor(kl_mean=1e-5, top1_agreement=0.995, greedy_identical=True),
        "f16": DecoderFloor(kl_mean=1e-4, top1_agreement=0.99, greedy_identical=True),
        "q8_0": DecoderFloor(kl_mean=1e-3, top1_agreement=0.97),
        "q5_k_m": DecoderFloor(kl_mean=5e-3, top1_agreement=0.93),
        "q4_k_m": DecoderFloor(kl_mean=1e-2, top1_agreement=0.9),
    },
)


class LlamaCppConfig(RuntimeConfig):
    name = "llamacpp"
    extra = "llamacpp"
    dependencies = (LLAMA_CPP,)
    # llama.cpp's HF→GGUF converter loads the model with torch and reads the tokenizer with
    # transformers; a deployed variant needs llama-cpp-python alone.
    optimize_dependencies = (TORCH, TRANSFORMERS)
    kinds = {"embedding": EMBEDDING, "generation": GENERATION}
    options = LlamaCppOptions
