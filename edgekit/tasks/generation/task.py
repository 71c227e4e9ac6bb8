"""The generation kind: a decoder-only language model, timed on prefill and decode, scored on next-token fidelity.

Light on purpose (standard library, numpy and edgekit only): every runtime config imports ``DecoderFloor`` from here.

Example:
    >>> task = get_task("generation")
    >>> task.workloads(params)
    ['prefill@32', 'prefill@128', 'decode@128']
    >>> task.roofline("decode@128", {"size_bytes": 2.6e6})["bytes"]  # a decode step reads every weight once
    2600000.0
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit.tasks.base import Task
from edgekit.tasks.generation.backend import DecoderBackend


@dataclasses.dataclass(frozen=True)
class DecoderFloor:
    """The most a decoder precision may differ from the fp32 PyTorch baseline (the conformance suite's bar).

    Attributes:
        kl_mean: mean KL(baseline ‖ variant) of next-token distributions, nats.
        top1_agreement: share of positions with the same most likely next token.
        greedy_identical: greedy continuations must equal the baseline's (fp32/fp16 precisions).
    """

    kl_mean: float
    top1_agreement: float
    greedy_identical: bool = False


def parse_workload(workload: str) -> tuple[str, int]:
    """``decode@128`` → ("decode", 128): the phase, and the prompt length it runs at (or after)."""
    phase, _, length = workload.partition("@")
    if phase not in ("prefill", "decode") or not length.isdigit():
        raise ValueError(f"a generation workload is prefill@<prompt tokens> or decode@<prompt tokens>, got {workload!r}")
    return phase, int(length)


def token_flops(config: dict[str, Any], position: int) -> float:
    """Multiply-add FLOPs of one token through a LLaMA-style decoder at ``position`` (the head included)."""
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_width = config.get("num_key_value_heads", heads) * hidden // heads
    matrices = layers * (2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * inner) + config["vocab_size"] * hidden
    attention = layers * 2 * position * hidden  # scores and context against the cache
    return 2.0 * (matrices + attention)


class GenerationTask(Task):
    name = "generation"
    summary = "decoder-only language models: prefill and decode tokens/s, perplexity and KL against the fp32 baseline"
    params_section = "decoder"
    stages = ("decoder_model", "decoder_baseline", "decoder_optimize", "decoder_benchmark", "decoder_evaluate", "decoder_select")
    interface = DecoderBackend
    floor = DecoderFloor

    def workloads(self, params: Any) -> list[str]:
        """Prefill at every prompt length, then decode after the longest (as ``decoder_benchmark`` times them)."""
        lengths = params.decoder.benchmark.prompt_lengths
        return [f"prefill@{n}" for n in lengths] + [f"decode@{max(lengths)}"]

    def roofline(self, workload: str, model: dict[str, Any]) -> dict[str, float | None]:
        """One prefill of the prompt, or one decode step: every weight is read once (``model["size_bytes"]``, the
        variant's files, stands for it: the runtimes here keep them as stored); FLOPs need ``model["config"]``."""
        phase, length = parse_workload(workload)
        config = model.get("config")
        if config is None:
            flops = None
        elif phase == "decode":
            flops = token_flops(config, length)
        else:
            flops = sum(token_flops(config, position) for position in range(length))
        return {"flops": flops, "bytes": float(model["size_bytes"])}
