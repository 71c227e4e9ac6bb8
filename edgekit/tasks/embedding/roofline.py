"""The sentence encoder's FLOP/byte model: what one call of a BERT-style encoder computes and reads.

Example:
    >>> encoder_flops(config, batch_size=1, seq_length=128)
    >>> weight_bytes_per_call(config, 1, 128, width=1.0)  # int8 weights
"""

from __future__ import annotations

from typing import Any


def encoder_flops(config: dict[str, Any], batch_size: int, seq_length: int) -> float:
    """Multiply-add FLOPs of one BERT-style encoder forward pass (embeddings and pooling left out)."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    layers, tokens = config["num_hidden_layers"], batch_size * seq_length
    projections = 4 * hidden * hidden + 2 * hidden * inner  # Q, K, V, O and the two FFN matrices
    attention = 2 * seq_length * hidden  # scores and context, per token
    return 2.0 * layers * tokens * (projections + attention)


def weight_bytes_per_call(config: dict[str, Any], batch_size: int, seq_length: int, width: float) -> float:
    """Bytes of weights one encoder call reads.

    The six matrices of every layer at ``width`` bytes per weight; of the embeddings only the rows
    gathered (one word row per token, one position row per position, one token-type row: the
    benchmark's batches are all type 0), at the same width; biases and LayerNorm parameters at fp32,
    which every runtime here keeps them in. The pooler is left out, as in ``encoder_flops``.
    """
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    matrices = layers * (4 * hidden * hidden + 2 * hidden * inner)
    vectors = layers * (4 * hidden + inner + hidden + 4 * hidden) + 2 * hidden  # biases, LayerNorms, embedding LayerNorm
    gathered_rows = batch_size * seq_length + seq_length + 1
    return (matrices + gathered_rows * hidden) * width + vectors * 4.0
