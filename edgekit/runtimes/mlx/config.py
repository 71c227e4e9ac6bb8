"""Apple MLX runtime config (no mlx import here, except in ``devices``, which only ``doctor`` calls).

Example:
    >>> MlxConfig.options.parse({"group_size": 32}, "variants.mlx-int4.options")
    MlxOptions(group_size=32, quantize_embeddings=True, compile=True, device='auto')
"""

from __future__ import annotations

import dataclasses
import platform
import sys

from edgekit.deps import MLX, MLX_LM
from edgekit.errors import ConfigError
from edgekit.runtimes.base import Options, RuntimeConfig
from edgekit.tasks.base import Support
from edgekit.tasks.embedding.task import FidelityFloor
from edgekit.tasks.generation.task import DecoderFloor

# The affine group sizes mlx.core.quantize accepts (its table of quantization modes).
GROUP_SIZES = (32, 64, 128)
DEVICES = ("auto", "cpu", "gpu")


@dataclasses.dataclass(frozen=True)
class MlxOptions(Options):
    """Options of an MLX variant.

    Attributes:
        group_size: int8/int4 only; consecutive weights in a row sharing one scale and bias
            (32, 64 or 128; smaller is more accurate and a little larger).
        quantize_embeddings: int8/int4 only; also quantize the word-embedding table, which holds
            over half of MiniLM-L6's weights. Position and token-type tables always stay fp32.
            In a decoder: the token embeddings (its LM head is a Linear, always quantized).
        compile: trace the forward once per input shape with ``mx.compile`` (encoder only).
        device: ``auto`` (the Metal GPU when there is one, else the CPU), ``cpu`` or ``gpu``.
    """

    group_size: int = 64
    quantize_embeddings: bool = True
    compile: bool = True
    device: str = "auto"

    def validate(self, field: str) -> None:
        if self.group_size not in GROUP_SIZES:
            raise ConfigError(f"{field}.group_size", self.group_size, "one of the group sizes MLX supports: 32, 64, 128")
        if self.device not in DEVICES:
            raise ConfigError(f"{field}.device", self.device, " or ".join(DEVICES))


EMBEDDING = Support(
    backend="edgekit.runtimes.mlx.backend:MlxBackend",
    precisions=("fp32", "int8", "int4"),
    # Measured on MiniLM-L6, all 420 STS pairs (cosine_mean / retention): fp32 1.000000 / 1.0000;
    # int8 (group 64) 0.999874 / 0.9997; int4 (group 64) 0.968671 / 0.9956; int4 group 32
    # 0.975904 / 0.9972. Quantizing the word embeddings moves int4 cosine by 0.001 (0.969725
    # without) and int8 by nothing measurable, for a 3.5x smaller file: hence on by default.
    # Retention is noisier on the conformance suite's 40 pairs: int4 0.966 (group 64), 0.960
    # (group 32), int8 1.0007 — the int4 retention floors sit below those.
    floors={
        "fp32": FidelityFloor(cosine_mean=0.9999, retention=0.999),
        "int8": FidelityFloor(cosine_mean=0.999, retention=0.995),
        "int4": FidelityFloor(cosine_mean=0.96, retention=0.95),
    },
    conformance_options={
        "int4": (({"group_size": 32}, FidelityFloor(0.97, 0.95)),),
    },
)

GENERATION = Support(
    backend="edgekit.runtimes.mlx.decoder:MlxDecoder",
    # The decoder is mlx-lm's model code and KV cache (the mlx extra installs mlx-lm); group_size,
    # quantize_embeddings and device apply to it as to the encoder, compile does not (mlx-lm does not
    # compile a forward that updates a KV cache).
    precisions=("fp32", "int8", "int4"),
    # Measured on the default decoder (4 layers, 256 wide, all 41 held-out windows of 64 tokens), KL / top-1
    # / greedy continuations identical (8 prompts x 24 tokens), group size 64:
    #   fp32 4.8e-13 / 1.000 / 8 of 8; int8 7.5e-6 / 0.997 / 6 of 8; int4 2.4e-3 / 0.928 / 0 of 8.
    # On the conformance suite's 2-layer model (6 windows): int8 7.9e-6 / 0.989, int4 2.0e-3 / 0.894; its
    # flatter, barely trained logits flip more near-ties, hence top-1 floors below both.
    floors={
        "fp32": DecoderFloor(kl_mean=1e-5, top1_agreement=0.995, greedy_identical=True),
        "int8": DecoderFloor(kl_mean=5e-5, top1_agreement=0.97),
        "int4": DecoderFloor(kl_mean=2e-2, top1_agreement=0.85),
    },
)


class MlxConfig(RuntimeConfig):
    name = "mlx"
    extra = "mlx"
    # The probe finds `mlx` without importing it; a Linux install without mlx-cpu (no libmlx.so)
    # passes the probe and fails at import, which backend.py turns into MissingDependencyError.
    dependencies = (MLX, MLX_LM)
    kinds = {"embedding": EMBEDDING, "generation": GENERATION}
    options = MlxOptions

    @classmethod
    def evaluate_processes(cls, options: MlxOptions, threads: int) -> int:
        """On a CPU, MLX computes on one stream thread with a single-threaded BLAS, so evaluation embeds its
        batches in ``threads`` processes at once (MiniLM's 1,070 test and fairness sentences on the Linux CPU
        build: about 4 minutes in one). On Metal (``auto`` on Apple silicon, or ``gpu``) it stays one process."""
        metal = sys.platform == "darwin" and platform.machine() == "arm64"
        on_cpu = options.device == "cpu" or (options.device == "auto" and not metal)
        return max(1, threads) if on_cpu else 1

    @classmethod
    def devices(cls) -> list[str]:
        """``cpu`` always, plus ``gpu (Metal)`` or ``gpu (CUDA)`` when MLX sees one; [] if mlx cannot load."""
        try:
            import mlx.core as mx

            found = ["cpu"]
            if mx.metal.is_available():
                found.append("gpu (Metal)")
            elif mx.cuda.is_available():
                found.append("gpu (CUDA)")
            return found
        except Exception:  # a broken install (no libmlx.so) must not take `doctor` down
            return []
