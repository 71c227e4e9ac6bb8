"""PyTorch runtime config (no torch import here).

Example:
    >>> PyTorchConfig.precisions
    ('fp32',)
"""

from __future__ import annotations

import dataclasses

from edgekit.deps import TORCH, TRANSFORMERS
from edgekit.runtimes.base import FidelityFloor, Options, RuntimeConfig


@dataclasses.dataclass(frozen=True)
class PyTorchOptions(Options):
    """Options of a PyTorch variant.

    Attributes:
        attn_implementation: transformers attention kernel; ``sdpa`` is PyTorch's fused one.
    """

    attn_implementation: str = "sdpa"

    def validate(self, field: str) -> None:
        from edgekit.errors import ConfigError

        if self.attn_implementation not in ("sdpa", "eager"):
            raise ConfigError(f"{field}.attn_implementation", self.attn_implementation, "sdpa or eager")


class PyTorchConfig(RuntimeConfig):
    name = "pytorch"
    extra = "pytorch"
    dependencies = (TORCH, TRANSFORMERS)
    precisions = ("fp32",)
    options = PyTorchOptions
    backend_path = "edgekit.runtimes.pytorch.backend:PyTorchBackend"
    fidelity_floor = {"fp32": FidelityFloor(cosine_mean=0.99999, retention=0.9999)}
