"""PyTorch decoder: the causal LM in fp32 with transformers' KV cache, the reference every decoder is measured against.

Example:
    >>> decoder = PyTorchDecoder("fp32", PyTorchOptions(), threads=2)
    >>> decoder.load(Path("models/decoder_variants/llama-fp32"), context=512)
    >>> decoder.prefill([1, 87, 5])
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit.errors import EdgekitError
from edgekit.runtimes.pytorch.backend import set_threads
from edgekit.tasks.generation.backend import DecoderBackend

_SOURCE_FILES = ("*.json", "*.safetensors", "*.model")


def load_causal_lm(folder: Path, attn_implementation: str = "sdpa") -> torch.nn.Module:
    """The fp32 causal language model of ``folder`` in eval mode."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attn_implementation, dtype=torch.float32).eval()
    except (ValueError, KeyError) as exc:  # transformers' words for a model_type with no causal LM class
        raise EdgekitError(f"{folder} holds no causal language model transformers can load ({exc})",
                           "decoder.source must be a decoder-only model (LLaMA, Qwen, Phi, ...)") from exc


class PyTorchDecoder(DecoderBackend):
    def optimize(self, source: Path, out: Path, scratch: Path) -> dict[str, Any]:
        copied = sorted(path.name for pattern in _SOURCE_FILES for path in source.glob(pattern))
        for name in copied:
            shutil.copy2(source / name, out / name)
        return {"steps": ["copy the source model (fp32 safetensors)"], "files": copied}

    def load(self, folder: Path, context: int) -> None:
        set_threads(self.threads)
        self.model = load_causal_lm(folder, self.options.attn_implementation)
        self.context = context
        self.reset()

    def reset(self) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache()
        self.position = 0

    @torch.inference_mode()
    def _forward(self, ids: Sequence[int], cache, all_positions: bool) -> np.ndarray:
        if self.position + len(ids) > self.context:
            raise EdgekitError(f"{self.position + len(ids)} tokens exceed the context of {self.context}",
                               "shorten decoder.benchmark.prompt_lengths or generate_tokens")
        input_ids = torch.tensor([list(ids)], dtype=torch.long)
        output = self.model(input_ids=input_ids, past_key_values=cache, use_cache=cache is not None,
                            logits_to_keep=0 if all_positions else 1)
        self.position += len(ids)
        logits = output.logits[0].float().numpy()
        return logits if all_positions else logits[-1]

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        return self._forward(ids, self.cache, all_positions=False)

    def decode(self, token: int) -> np.ndarray:
        return self._forward([token], self.cache, all_positions=False)

    def score(self, ids: Sequence[int]) -> np.ndarray:
        self.reset()
        logits = self._forward(ids, None, all_positions=True)
        self.reset()
        return logits

    def describe(self) -> dict[str, Any]:
        return {"threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": "float32",
                "attn_implementation": self.model.config._attn_implementation, "kv_cache": "transformers DynamicCache"}
