"""PyTorch backend: the baseline as a PyTorch expert runs it.

``inference_mode``, the same intra-op thread count as every other runtime, one inter-op thread,
and transformers' SDPA attention (PyTorch's fused kernel) — so no speed-up is inflated by a weak
baseline.

Example:
    >>> backend = PyTorchBackend("fp32", PyTorchOptions(), threads=2)
    >>> backend.load(Path("models/variants/pytorch-fp32"))
    >>> hidden = backend.run(batch)
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel

from edgekit.runtimes.base import Backend, OptimizeContext

# Files a variant folder keeps from the source: weights, config and tokenizer.
_SOURCE_FILES = ("*.json", "*.safetensors", "*.txt", "*.model")


def set_threads(threads: int) -> None:
    """Pin PyTorch's intra-op threads; inter-op can only be set once per process."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass


class PyTorchBackend(Backend):
    def optimize(self, source: Path, out: Path, context: OptimizeContext) -> dict[str, Any]:
        for pattern in _SOURCE_FILES:
            for path in source.glob(pattern):
                if path.is_file():
                    shutil.copy2(path, out / path.name)
        return {"steps": ["copy source model (fp32 safetensors)"], "torch": torch.__version__}

    def load(self, folder: Path) -> None:
        set_threads(self.threads)
        self.model = AutoModel.from_pretrained(
            folder, attn_implementation=self.options.attn_implementation, dtype=torch.float32
        ).eval()
        accepted = inspect.signature(self.model.forward).parameters
        self.input_names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            output = self.model(**{name: torch.from_numpy(inputs[name]) for name in self.input_names})
        return output.last_hidden_state.numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "attn_implementation": self.model.config._attn_implementation,
            "torch": torch.__version__,
            "mkldnn": torch.backends.mkldnn.is_available(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }
