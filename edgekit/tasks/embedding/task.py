"""The sentence-embedding kind: an encoder whose pooled vectors are scored on labeled sentence pairs.

Light on purpose (standard library, numpy and edgekit only): every runtime config imports ``FidelityFloor`` from
here, and params validation, ``doctor`` and the registry import the runtime configs without any runtime
installed. It imports the kind's backend interface, so every stage that knows the runtimes knows both kinds'
interfaces: a decoder stage never imports the encoder interface for some runtimes only (through a runtime
module both kinds share) and not for others, which one dvc.yaml template per stage could not list.

Example:
    >>> task = get_task("embedding")
    >>> task.workloads(params)
    ['b1_s32', 'b1_s128', 'b8_s32', 'b8_s128']
    >>> task.roofline("b1_s32", {"config": config, "bytes_per_weight": 1.0})["flops"]
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit.tasks.base import Task
from edgekit.tasks.embedding.backend import Backend


@dataclasses.dataclass(frozen=True)
class FidelityFloor:
    """The lowest fidelity a precision may show against the fp32 baseline (the conformance suite's bar).

    Attributes:
        cosine_mean: mean cosine between each sentence's variant vector and the baseline's.
        retention: the variant's Spearman ÷ the baseline's.
    """

    cosine_mean: float
    retention: float


def parse_workload(workload: str) -> tuple[int, int]:
    """``b8_s128`` → (8, 128)."""
    batch, _, seq = workload.partition("_")
    if not (batch[:1] == "b" and seq[:1] == "s" and batch[1:].isdigit() and seq[1:].isdigit()):
        raise ValueError(f"an embedding workload is b<batch size>_s<sequence length>, got {workload!r}")
    return int(batch[1:]), int(seq[1:])


class EmbeddingTask(Task):
    name = "embedding"
    summary = "sentence encoders: pooled vectors, Spearman of pair similarity against gold scores"
    params_section = "model"
    stages = ("baseline", "optimize", "benchmark", "evaluate", "select")
    interface = Backend
    floor = FidelityFloor

    def workloads(self, params: Any) -> list[str]:
        """Every scenario a variant may be timed at, the headline first (a variant can narrow its own)."""
        batch_sizes, seq_lengths = params.benchmark.batch_sizes, params.benchmark.seq_lengths
        return [f"b{b}_s{s}" for b in batch_sizes for s in seq_lengths]

    def roofline(self, workload: str, model: dict[str, Any]) -> dict[str, float]:
        """One encoder call of ``workload``: multiply-add FLOPs, and the weight bytes it reads at the variant's
        ``model["bytes_per_weight"]`` (``model["config"]`` is the model's config.json)."""
        from edgekit.tasks.embedding.roofline import encoder_flops, weight_bytes_per_call

        batch_size, seq_length = parse_workload(workload)
        config = model["config"]
        return {"flops": encoder_flops(config, batch_size, seq_length),
                "bytes": weight_bytes_per_call(config, batch_size, seq_length, model["bytes_per_weight"])}

    def fairness_checks(self) -> dict[str, type]:
        from edgekit.tasks.embedding.fairness import fairness_checks

        return fairness_checks()

    def validator(self, context: Any) -> Any:
        """Scores a candidate on labeled pairs: ``validator(runner, pairs)`` → (Spearman, a value per pair)."""
        from edgekit.tasks.embedding.metrics import PairValidator

        return PairValidator(context.encoder, context.pooling)
