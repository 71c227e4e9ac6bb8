"""A BERT encoder in mlx.nn, built from a Hugging Face config.json, with the HF weight-name mapping.

The module tree is our own (``layers.3.attention.query`` rather than HF's
``encoder.layer.3.attention.self.query``): ``self`` cannot be a Python attribute name, and a short,
flat tree keeps the quantization record (which modules were quantized) readable.
``hf_to_mlx_name`` is the one place the two naming schemes meet.

Example:
    >>> config = BertConfig.from_hf(json.loads(Path("config.json").read_text()))
    >>> model = BertEncoder(config)
    >>> load_hf_weights(model, mx.load("model.safetensors"))
    >>> hidden = model(input_ids, token_type_ids, attention_mask)  # (batch, seq, hidden) float32
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from edgekit.errors import ModelSourceError, UnsupportedModelError

SUPPORTED_MODEL_TYPES = ("bert",)
# HF's ACT2FN names: "gelu" is the exact erf form BERT was trained with; the tanh forms are
# what some BERT-family checkpoints declare, and mlx's gelu_approx is that same tanh formula.
_ACTIVATIONS = {"gelu": nn.gelu, "gelu_new": nn.gelu_approx, "gelu_pytorch_tanh": nn.gelu_approx, "relu": nn.relu}
_FIX = "use the pytorch, onnxruntime or openvino runtime for this model"


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT config.json the encoder needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_hf(cls, raw: dict[str, Any]) -> BertConfig:
        """Read an HF config dict; refuse architectures this encoder would compute wrongly.

        Raises:
            UnsupportedModelError: the model_type, position embedding type or activation is not supported.
        """
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"the mlx runtime cannot run model_type {model_type!r}; it supports: {', '.join(SUPPORTED_MODEL_TYPES)}", _FIX
            )
        position = raw.get("position_embedding_type", "absolute")
        if position != "absolute":
            raise UnsupportedModelError(f"the mlx BERT encoder supports absolute position embeddings, not {position!r}", _FIX)
        if raw.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise UnsupportedModelError(
                f"the mlx BERT encoder has no activation {raw['hidden_act']!r}; it has: {', '.join(_ACTIVATIONS)}", _FIX
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in names})


class BertEmbeddings(nn.Module):
    """Word + absolute position + token type embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def __call__(self, input_ids: mx.array, token_type_ids: mx.array) -> mx.array:
        positions = mx.arange(input_ids.shape[1])
        return self.norm(self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids))


class SelfAttention(nn.Module):
    """Multi-head self-attention with its output projection (HF's BertAttention minus the LayerNorm)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        hidden = config.hidden_size
        self.heads = config.num_attention_heads
        self.scale = (hidden // self.heads) ** -0.5
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def __call__(self, x: mx.array, additive_mask: mx.array) -> mx.array:
        batch, length, _ = x.shape
        q, k, v = (
            proj(x).reshape(batch, length, self.heads, -1).transpose(0, 2, 1, 3) for proj in (self.query, self.key, self.value)
        )
        context = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=additive_mask)
        return self.out(context.transpose(0, 2, 1, 3).reshape(batch, length, -1))


class BertLayer(nn.Module):
    """One post-LayerNorm transformer block, as in BERT."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.activation = _ACTIVATIONS[config.hidden_act]

    def __call__(self, x: mx.array, additive_mask: mx.array) -> mx.array:
        x = self.attention_norm(x + self.attention(x, additive_mask))
        return self.output_norm(x + self.output(self.activation(self.intermediate(x))))


class BertEncoder(nn.Module):
    """BERT without pooler: token ids in, last hidden state out."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = [BertLayer(config) for _ in range(config.num_hidden_layers)]

    def __call__(self, input_ids: mx.array, token_type_ids: mx.array, attention_mask: mx.array) -> mx.array:
        x = self.embeddings(input_ids, token_type_ids)
        additive_mask = additive_attention_mask(attention_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, additive_mask)
        return x


def additive_attention_mask(attention_mask: mx.array, dtype: mx.Dtype) -> mx.array:
    """(batch, seq) 1/0 mask → (batch, 1, 1, seq) additive mask: 0 to keep, the dtype's minimum to drop.

    The dtype minimum rather than -inf is what HF BERT adds: a row whose keys are all padding then
    softmaxes to a uniform row instead of NaN.
    """
    keep = attention_mask[:, None, None, :].astype(dtype)
    return (1 - keep) * mx.finfo(dtype).min


_EMBEDDINGS = {
    "embeddings.word_embeddings": "embeddings.word",
    "embeddings.position_embeddings": "embeddings.position",
    "embeddings.token_type_embeddings": "embeddings.token_type",
    "embeddings.LayerNorm": "embeddings.norm",
}
_LAYER_PARTS = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention.out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}
_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)")
# Checkpoints saved by old (TF-converted) BERT code name LayerNorm parameters gamma/beta.
_LEAVES = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}


def hf_to_mlx_name(hf_name: str) -> str | None:
    """The encoder parameter an HF BERT weight name maps to, or None when the encoder has no use for it.

    ``bert.`` prefixes (task-model checkpoints) are stripped; the pooler, task heads and the
    ``position_ids`` buffer map to None.

    Example:
        >>> hf_to_mlx_name("encoder.layer.2.attention.self.query.weight")
        'layers.2.attention.query.weight'
    """
    module, _, leaf = hf_name.removeprefix("bert.").rpartition(".")
    if leaf not in _LEAVES:
        return None
    if module in _EMBEDDINGS:
        return f"{_EMBEDDINGS[module]}.{_LEAVES[leaf]}"
    match = _LAYER.fullmatch(module)
    if match and match[2] in _LAYER_PARTS:
        return f"layers.{match[1]}.{_LAYER_PARTS[match[2]]}.{_LEAVES[leaf]}"
    return None


def map_hf_weights(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """HF weight dict → encoder weight dict (unused entries dropped)."""
    mapped = {}
    for hf_name, value in weights.items():
        name = hf_to_mlx_name(hf_name)
        if name is not None:
            mapped[name] = value
    return mapped


def load_hf_weights(model: BertEncoder, weights: dict[str, mx.array]) -> None:
    """Load HF BERT weights into ``model``, naming any parameter the checkpoint lacks.

    Raises:
        ModelSourceError: the checkpoint misses encoder weights or has wrong shapes.
    """
    mapped = map_hf_weights(weights)
    expected = dict(_flat_parameters(model))
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise ModelSourceError(
            f"the checkpoint has no weights for {len(missing)} encoder parameters, e.g. {', '.join(missing[:3])}",
            "check that the source is a BERT encoder saved by transformers (model.safetensors)",
        )
    wrong = [name for name, value in mapped.items() if value.shape != expected[name].shape]
    if wrong:
        raise ModelSourceError(
            f"weight shapes do not match config.json for {', '.join(wrong[:3])}",
            "check that config.json belongs to these weights",
        )
    model.load_weights(list(mapped.items()), strict=True)


def _flat_parameters(model: nn.Module) -> list[tuple[str, mx.array]]:
    from mlx.utils import tree_flatten

    return tree_flatten(model.parameters())
