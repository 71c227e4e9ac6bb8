"""The ``decoder:`` section of params.yaml: the language model, how to make the default one, its variants.

Example:
    >>> decoder = DecoderParams.parse(yaml.safe_load(open("params.yaml"))["decoder"])
    >>> decoder.variants["gguf-q4_k_m"].precision
    'q4_k_m'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgekit.errors import ConfigError, UnknownNameError
from edgekit.runtimes import get_runtime
from edgekit.runtimes.base import Options

# ``decoder.source`` value that means "the model the decoder_model stage trains from the shipped corpus".
MADE_HERE = "edgekit-tiny-llama"


def _mapping(raw: Any, field_name: str, allowed: set[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(field_name, raw, "a mapping")
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{field_name}.{key}", raw[key], f"known keys: {', '.join(sorted(allowed))}")
    return raw


def _int(raw: dict, key: str, default: int, field_name: str, low: int = 1) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{field_name}.{key}", value, f"an integer ≥ {low}")
    return value


def _number(raw: dict, key: str, default: float, field_name: str, low: float, high: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise ConfigError(f"{field_name}.{key}", value, f"a number in ({low}, {high}]")
    return float(value)


@dataclass(frozen=True)
class MakeParams:
    """The default decoder: a LLaMA-architecture model and a SentencePiece tokenizer trained on the corpus.

    K-quants work on rows of 256 weights (llama.cpp's QK_K), so ``hidden_size`` and ``intermediate_size``
    must be multiples of 256 for Q4_K_M/Q5_K_M to be real K-quants rather than fallbacks.
    """

    vocab_size: int = 1024
    hidden_size: int = 256
    intermediate_size: int = 768
    layers: int = 4
    heads: int = 4
    context: int = 512
    steps: int = 150
    batch_size: int = 16
    seq_length: int = 128
    learning_rate: float = 3e-3

    @classmethod
    def parse(cls, raw: Any) -> MakeParams:
        raw = _mapping(raw, "decoder.make", {f for f in cls.__dataclass_fields__})
        ints = {name: _int(raw, name, getattr(cls, name), "decoder.make") for name in cls.__dataclass_fields__ if name != "learning_rate"}
        made = cls(**ints, learning_rate=_number(raw, "learning_rate", cls.learning_rate, "decoder.make", 0.0, 1.0))
        if made.hidden_size % made.heads:
            raise ConfigError("decoder.make.heads", made.heads, f"a divisor of hidden_size ({made.hidden_size})")
        if made.seq_length >= made.context:
            raise ConfigError("decoder.make.seq_length", made.seq_length, f"fewer than context ({made.context}) tokens")
        return made


@dataclass(frozen=True)
class DecoderVariant:
    name: str
    runtime: str
    precision: str
    options: Options

    @classmethod
    def parse(cls, name: str, raw: Any) -> DecoderVariant:
        where = f"decoder.variants.{name}"
        raw = _mapping(raw, where, {"runtime", "precision", "options"})
        runtime = get_runtime(str(raw.get("runtime")), f"{where}.runtime")
        precisions = runtime.support("generation", f"{where}.runtime").precisions
        precision = raw.get("precision")
        if precision not in precisions:
            raise ConfigError(f"{where}.precision", precision, f"one of: {', '.join(precisions)}")
        return cls(name, runtime.name, precision, runtime.options.parse(raw.get("options"), f"{where}.options"))


@dataclass(frozen=True)
class DecoderBenchmark:
    """Timing: ``repeats`` fresh processes per variant; in each, ``prefill_iterations`` prefills of every
    prompt length (KV cache emptied before each) and ``generate_tokens`` decode steps after the first prompt."""

    prompt_lengths: tuple[int, ...] = (32, 128)
    generate_tokens: int = 64
    repeats: int = 6
    prefill_iterations: int = 5
    warmup_tokens: int = 8
    timeout_seconds: float = 600.0

    @classmethod
    def parse(cls, raw: Any) -> DecoderBenchmark:
        raw = _mapping(raw, "decoder.benchmark", set(cls.__dataclass_fields__))
        lengths = raw.get("prompt_lengths", list(cls.prompt_lengths))
        if not isinstance(lengths, list) or not lengths or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lengths):
            raise ConfigError("decoder.benchmark.prompt_lengths", lengths, "a non-empty list of positive integers")
        return cls(
            prompt_lengths=tuple(lengths),
            generate_tokens=_int(raw, "generate_tokens", cls.generate_tokens, "decoder.benchmark", 2),
            repeats=_int(raw, "repeats", cls.repeats, "decoder.benchmark", 2),
            prefill_iterations=_int(raw, "prefill_iterations", cls.prefill_iterations, "decoder.benchmark"),
            warmup_tokens=_int(raw, "warmup_tokens", cls.warmup_tokens, "decoder.benchmark", 0),
            timeout_seconds=_number(raw, "timeout_seconds", cls.timeout_seconds, "decoder.benchmark", 0.0, 86400.0),
        )


@dataclass(frozen=True)
class DecoderEvaluate:
    """Held-out text is scored in windows of ``window`` tokens; greedy output is compared on the first
    ``greedy_tokens`` tokens after each of ``greedy_prompts`` held-out prompts of ``greedy_prompt_tokens``."""

    window: int = 64
    greedy_prompts: int = 8
    greedy_prompt_tokens: int = 16
    greedy_tokens: int = 24

    @classmethod
    def parse(cls, raw: Any) -> DecoderEvaluate:
        raw = _mapping(raw, "decoder.evaluate", set(cls.__dataclass_fields__))
        return cls(**{name: _int(raw, name, getattr(cls, name), "decoder.evaluate", 2) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DecoderParams:
    source: str
    corpus_dir: str
    heldout_share: float
    make: MakeParams
    baseline: str
    variants: dict[str, DecoderVariant]
    benchmark: DecoderBenchmark
    evaluate: DecoderEvaluate

    @property
    def made_here(self) -> bool:
        return self.source == MADE_HERE

    def variant(self, name: str) -> DecoderVariant:
        if name not in self.variants:
            raise UnknownNameError("decoder variant", name, list(self.variants))
        return self.variants[name]

    @classmethod
    def parse(cls, raw: Any) -> DecoderParams:
        allowed = {"source", "corpus_dir", "heldout_share", "make", "baseline", "variants", "benchmark", "evaluate"}
        raw = _mapping(raw, "decoder", allowed)
        variants_raw = raw.get("variants")
        if not isinstance(variants_raw, dict) or not variants_raw:
            raise ConfigError("decoder.variants", variants_raw, "a mapping of variant names to {runtime, precision, options}")
        variants = {name: DecoderVariant.parse(name, spec) for name, spec in variants_raw.items()}
        baseline = raw.get("baseline", "llama-fp32")
        if baseline not in variants:
            raise UnknownNameError("decoder.baseline", baseline, list(variants))
        if variants[baseline].runtime != "pytorch":
            raise ConfigError("decoder.baseline", baseline, "a decoder variant whose runtime is pytorch (the reference logits come from it)")
        source = raw.get("source", MADE_HERE)
        if not isinstance(source, str) or not source:
            raise ConfigError("decoder.source", source, f"{MADE_HERE!r} (made from the corpus), a local folder or a Hugging Face id")
        return cls(
            source=source,
            corpus_dir=str(raw.get("corpus_dir", "data/source")),
            heldout_share=_number(raw, "heldout_share", 0.1, "decoder", 0.0, 0.5),
            make=MakeParams.parse(raw.get("make")),
            baseline=baseline,
            variants=variants,
            benchmark=DecoderBenchmark.parse(raw.get("benchmark")),
            evaluate=DecoderEvaluate.parse(raw.get("evaluate")),
        )
