"""PyTorch runtime config (no torch import here).

Example:
    >>> PyTorchConfig.support("embedding").precisions
    ('fp32',)
    >>> PyTorchConfig.options.parse({"compile": True}, "variants.pytorch-compile.options").compile_mode
    'default'
"""

from __future__ import annotations

import dataclasses

from edgekit.deps import TORCH, TRANSFORMERS
from edgekit.errors import ConfigError
from edgekit.runtimes.base import Options, RuntimeConfig
from edgekit.tasks.base import Support
from edgekit.tasks.embedding.task import FidelityFloor
from edgekit.tasks.generation.task import DecoderFloor

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
# torch.compile's modes. On a CPU, "reduce-overhead" (CUDA graphs) has nothing to capture.
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")


@dataclasses.dataclass(frozen=True)
class PyTorchOptions(Options):
    """Options of a PyTorch variant.

    Attributes:
        attn_implementation: transformers attention kernel; ``sdpa`` is PyTorch's fused one.
        compile: run the model through ``torch.compile`` (inductor; a static graph for the first shape).
            The compile is paid in each fresh process on the first call of a shape; inductor's
            on-disk cache (``$EDGEKIT_CACHE/torchinductor``) makes every process after the first cheap.
        compile_mode: ``torch.compile`` mode (compile only): ``default`` or
            ``max-autotune-no-cudagraphs`` (also benchmarks inductor's GEMM templates; far longer compile).
    """

    attn_implementation: str = "sdpa"
    compile: bool = False
    compile_mode: str = "default"

    def validate(self, field: str) -> None:
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ConfigError(f"{field}.attn_implementation", self.attn_implementation, " or ".join(ATTN_IMPLEMENTATIONS))
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"{field}.compile_mode", self.compile_mode, " or ".join(COMPILE_MODES))
        if self.compile_mode != "default" and not self.compile:
            raise ConfigError(f"{field}.compile_mode", self.compile_mode, "compile: true as well (the mode only applies to a compiled model)")


EMBEDDING = Support(
    backend="edgekit.runtimes.pytorch.backend:PyTorchBackend",
    precisions=("fp32",),
    floors={"fp32": FidelityFloor(cosine_mean=0.99999, retention=0.9999)},
    conformance_options={
        # inductor fuses kernels and reorders float sums: about 1.5e-6 from eager, not bit-equal.
        "fp32": (({"compile": True}, FidelityFloor(cosine_mean=0.99999, retention=0.999)),),
    },
)

GENERATION = Support(
    backend="edgekit.runtimes.pytorch.decoder:PyTorchDecoder",
    precisions=("fp32",),
    floors={"fp32": DecoderFloor(kl_mean=1e-6, top1_agreement=0.999, greedy_identical=True)},
)


class PyTorchConfig(RuntimeConfig):
    name = "pytorch"
    extra = "pytorch"
    dependencies = (TORCH, TRANSFORMERS)
    kinds = {"embedding": EMBEDDING, "generation": GENERATION}
    options = PyTorchOptions
