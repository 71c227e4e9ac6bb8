"""PyTorch backend: the baseline as a PyTorch expert runs it, and optionally ``torch.compile``.

``inference_mode``, the same intra-op thread count as every other runtime, one inter-op thread,
transformers' SDPA attention (PyTorch's fused kernel) and no pooler head (edgekit pools the last
hidden state itself, as the ONNX and OpenVINO exports do) — so no speed-up is inflated by a weak
baseline. ``describe()`` reports what is in effect, read from inside a real call, not from params.

With ``compile: true`` the model goes through ``torch.compile`` (inductor's C++ CPU backend, a static
graph for the first input shape). The compile happens on the first call of each input shape,
in every fresh process; inductor's on-disk caches under ``$EDGEKIT_CACHE/torchinductor`` make it
cheap after the first process. The benchmark's ``first_ms`` is that first call.

Example:
    >>> backend = PyTorchBackend("fp32", PyTorchOptions(compile=True), threads=2)
    >>> backend.load(Path("models/variants/pytorch-compile"))
    >>> hidden = backend.run(batch)
    >>> backend.describe()["compile"]["graphs"]
    1
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from edgekit.tasks.embedding.backend import Backend, OptimizeContext, encoder_class, encoder_kwargs

# Files a variant folder keeps from the source: weights, config and tokenizer.
_SOURCE_FILES = ("*.json", "*.safetensors", "*.txt", "*.model")
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CACHE_ENV = "EDGEKIT_CACHE"
INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def set_threads(threads: int) -> None:
    """Pin PyTorch's intra-op threads; inter-op can only be set once per process."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass


def inductor_cache_dir() -> Path:
    """Where inductor keeps compiled graphs: the user's ``$TORCHINDUCTOR_CACHE_DIR``, else ``$EDGEKIT_CACHE/torchinductor``.

    Not the variant folder: its manifest lists every file in it, and the cache grows per shape. Not
    inductor's default either (``/tmp/torchinductor_<user>``), which a reboot empties.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    chosen = os.environ.get(INDUCTOR_CACHE_ENV)
    # torch writes its default into the variable once it has looked, so that value means "not chosen".
    if chosen and os.path.abspath(chosen) != os.path.abspath(default_cache_dir()):
        return Path(chosen)
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgekit"
    return Path(base).expanduser().resolve() / "torchinductor"


def load_encoder(folder: Path, attn_implementation: str, runtime: str = "pytorch") -> torch.nn.Module:
    """The bare fp32 encoder of ``folder`` in eval mode, without a pooler.

    Raises:
        UnsupportedModelError: transformers has no bare encoder for the model_type.
    """
    model_class = encoder_class(folder, runtime)
    return model_class.from_pretrained(
        folder, attn_implementation=attn_implementation, dtype=torch.float32, **encoder_kwargs(model_class)
    ).eval()


class _TorchCalls(TorchFunctionMode):
    """Counts the torch functions a forward calls (which attention kernel really ran)."""

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls[getattr(func, "__name__", str(func))] += 1
        return func(*args, **(kwargs or {}))


def _cache_counts(counter: Counter, prefix: str) -> dict[str, int]:
    """Hits, misses and bypasses of one of inductor's on-disk caches in this process."""
    return {kind: counter[f"{prefix}_{kind}"] for kind in ("hit", "miss", "bypass")}


def _state_in_call() -> dict[str, Any]:
    """What a call runs under, read inside it."""
    return {
        "inference_mode": torch.is_inference_mode_enabled(),
        "grad_enabled": torch.is_grad_enabled(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


class PyTorchBackend(Backend):
    def optimize(self, source: Path, out: Path, context: OptimizeContext) -> dict[str, Any]:
        model_class = encoder_class(source, "pytorch")  # first: a model transformers cannot run is skipped
        for pattern in _SOURCE_FILES:
            for path in source.glob(pattern):
                if path.is_file():
                    shutil.copy2(path, out / path.name)
        steps = ["copy source model (fp32 safetensors)"]
        if self.options.compile:
            steps.append("torch.compile at first call: inductor, mode {mode}, {dynamic}".format(**self._compile_record()))
        return {"steps": steps, "model_class": model_class.__name__, "torch": torch.__version__}

    def prepare(self, folder: Path) -> None:
        # transformers imports the model class lazily, and with it generation utilities and scikit-learn (which
        # transformers imports when installed): about 150 MB and 3-4 s here, none of it the model's.
        encoder_class(folder, "pytorch")

    def load(self, folder: Path) -> None:
        set_threads(self.threads)
        self.model = load_encoder(folder, self.options.attn_implementation)
        # The safetensors weights are memory-mapped, so only pages a call reads become resident: the embedding
        # rows of tokens not yet seen stay on disk (MiniLM-L6 held 8.5 MB after load, 93 MB once read). A served
        # model meets every token in time, and every other runtime but llama.cpp copies its weights at load, so
        # they are read once here: the model's memory is its whole weights, not the share this workload touched.
        with torch.inference_mode():
            for parameter in self.model.parameters():
                parameter.sum()
        accepted = inspect.signature(self.model.forward).parameters
        self.input_names = [name for name in _MODEL_INPUTS if name in accepted]
        self.in_call: dict[str, Any] | None = None
        self.forward = self._compile(self.model) if self.options.compile else self.model

    def _compile(self, model: torch.nn.Module):
        # Before the first compile, which reads it: every benchmark process after the first one
        # then loads the compiled graph from disk instead of running inductor and gcc again.
        os.environ[INDUCTOR_CACHE_ENV] = str(inductor_cache_dir())
        torch._dynamo.utils.counters.clear()
        # dynamic=None: the first shape gets a static graph, which is all a benchmark process (one
        # fixed shape) ever compiles; a second shape recompiles once with dynamic sizes, so evaluate's
        # many lengths cost 2-3 graphs, not one per batch (dynamic=False: 8 compiles, then silently
        # eager). Dynamo keeps no shape profile across processes unless a job id is set.
        # No freezing: on MiniLM-L6 (b1 x 32, 2 threads) it was no faster, and it bypasses the
        # AOTAutograd cache, so a warm process's first call cost 10.6 CPU-seconds instead of 4.8.
        return torch.compile(model, backend="inductor", mode=self.options.compile_mode, dynamic=None)

    def _compile_record(self) -> dict[str, Any]:
        return {"backend": "inductor", "mode": self.options.compile_mode,
                "dynamic": "static first shape, dynamic sizes after a second", "freezing": False}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            if self.in_call is None:  # once: describe() reports what the calls really ran under
                self.in_call = _state_in_call()
            output = self.forward(**{name: torch.from_numpy(inputs[name]) for name in self.input_names})
        return output.last_hidden_state.numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "in_call": self.in_call,
            "attn_implementation": self.model.config._attn_implementation,
            **self._attention_probe(),
            "pooler": getattr(self.model, "pooler", None) is not None,
            "output": "last_hidden_state",
            "compile": self._compile_state() if self.options.compile else None,
            "torch": torch.__version__,
            "mkldnn": torch.backends.mkldnn.is_available(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }

    def _attention_probe(self) -> dict[str, Any]:
        """One small eager forward, counting the attention kernel calls (after any timing, so it costs none)."""
        ids = torch.zeros((1, 8), dtype=torch.long)  # token 0 exists in every vocabulary
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        counter = _TorchCalls()
        with torch.inference_mode(), counter:
            self.model(**{name: inputs[name] for name in self.input_names})
        layers = getattr(self.model.config, "num_hidden_layers", None) or getattr(self.model.config, "n_layers", None)
        return {"sdpa_calls_per_forward": counter.calls["scaled_dot_product_attention"], "layers": layers}

    def _compile_state(self) -> dict[str, Any]:
        """How the compile went in this process: graphs, graph breaks, inductor cache hits."""
        counters = torch._dynamo.utils.counters
        return {
            **self._compile_record(),
            "graphs": counters["stats"]["unique_graphs"],
            "graph_breaks": sum(counters["graph_break"].values()),
            "fx_graph_cache": _cache_counts(counters["inductor"], "fxgraph_cache"),
            "aot_autograd_cache": _cache_counts(counters["aot_autograd"], "autograd_cache"),
            "cache_dir": os.environ.get(INDUCTOR_CACHE_ENV),
        }
