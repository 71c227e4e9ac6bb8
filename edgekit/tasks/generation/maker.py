"""The offline default decoder: a SentencePiece tokenizer and a small LLaMA trained on the shipped corpus.

Everything is seeded (tokenizer training on one thread, torch's generator, the batch order), so the same
params make the same model on the same software; training is short, but long enough that held-out
perplexity is far below the vocabulary size (the record keeps the curve).

Example:
    >>> record = make_decoder(make_params, train_sentences, heldout_sentences, Path("models/decoder"), seed=0, threads=2)
    >>> record["heldout_perplexity"]
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from edgekit.tasks.generation.corpus import token_stream, windows
from edgekit.tasks.generation.params import MakeParams

BOS, EOS, UNK = 1, 2, 0
_WARMUP_STEPS = 20


def train_tokenizer(sentences: list[str], vocab_size: int, folder: Path):
    """A byte-fallback BPE SentencePiece model (``tokenizer.model``) saved with transformers' files."""
    import sentencepiece
    from transformers import LlamaTokenizer

    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(folder / "tokenizer"), vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, byte_fallback=True, unk_id=UNK, bos_id=BOS, eos_id=EOS, pad_id=-1,
        num_threads=1, minloglevel=2,  # one thread: the merges do not depend on thread scheduling
    )
    (folder / "tokenizer.vocab").unlink()
    tokenizer = LlamaTokenizer(vocab_file=str(folder / "tokenizer.model"), legacy=False, add_bos_token=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _model(make: MakeParams):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=make.vocab_size, hidden_size=make.hidden_size, intermediate_size=make.intermediate_size,
        num_hidden_layers=make.layers, num_attention_heads=make.heads, num_key_value_heads=make.heads,
        max_position_embeddings=make.context, bos_token_id=BOS, eos_token_id=EOS, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


@torch.inference_mode()
def heldout_perplexity(model, ids: list[int], length: int) -> float:
    """exp(mean next-token NLL) over the windows of ``ids``."""
    model.eval()
    batch = torch.tensor(windows(ids, length))
    loss = model(input_ids=batch, labels=batch).loss
    model.train()
    return float(torch.exp(loss))


def make_decoder(make: MakeParams, train: list[str], heldout: list[str], folder: Path, seed: int, threads: int) -> dict[str, Any]:
    """Train the tokenizer and the model; save both in ``folder`` (a Hugging Face folder); return the record."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    tokenizer = train_tokenizer(train, make.vocab_size, folder)
    train_ids, heldout_ids = token_stream(tokenizer, train), token_stream(tokenizer, heldout)
    data = torch.tensor(train_ids)
    model = _model(make)
    optimizer = torch.optim.AdamW(model.parameters(), lr=make.learning_rate, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    curve, started = [], time.perf_counter()
    for step in range(make.steps):
        # linear warm-up, then cosine decay to zero at the last step
        scale = min(1.0, (step + 1) / _WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * step / make.steps))
        for group in optimizer.param_groups:
            group["lr"] = make.learning_rate * scale
        starts = torch.randint(0, len(data) - make.seq_length - 1, (make.batch_size,), generator=generator)
        batch = torch.stack([data[start:start + make.seq_length] for start in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 25 == 0 or step == make.steps - 1:
            curve.append({"step": step, "train_loss": round(loss.item(), 4)})
    model.save_pretrained(folder, safe_serialization=True)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens": len(train_ids), "heldout_tokens": len(heldout_ids),
        "heldout_perplexity": round(heldout_perplexity(model, heldout_ids, make.seq_length), 3),
        "uniform_perplexity": make.vocab_size,
        "train_seconds": round(time.perf_counter() - started, 1),
        "curve": curve,
    }
