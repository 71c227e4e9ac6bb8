"""The ``decoder_baseline`` stage: the fp32 PyTorch reference every decoder variant is judged against.

It scores the held-out text in windows (``decoder.evaluate.window`` tokens) and keeps the logits of every
position, and the greedy continuations of ``greedy_prompts`` held-out prompts through the KV cache.

Example:
    >>> run(params, Layout(Path(".")))["perplexity"]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.fsutil import write_bytes, write_json
from edgekit.layout import Layout
from edgekit.params import Params
from edgekit.tasks.generation.backend import greedy
from edgekit.tasks.generation.corpus import token_stream, windows
from edgekit.tasks.generation.metrics import log_softmax


def heldout_windows(layout: Layout, window: int) -> list[list[int]]:
    """The held-out text as windows of token ids, tokenized by the source model's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(layout.decoder_model)
    sentences = (layout.decoder_data / "heldout.txt").read_text(encoding="utf-8").splitlines()
    return windows(token_stream(tokenizer, sentences), window)


def greedy_prompts(held: list[list[int]], count: int, length: int) -> list[list[int]]:
    return [held[i % len(held)][:length] for i in range(count)]


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def run(params: Params, layout: Layout) -> dict[str, Any]:
    from edgekit.runtimes.pytorch.config import PyTorchOptions
    from edgekit.runtimes.pytorch.decoder import PyTorchDecoder

    evaluate = params.decoder.evaluate
    held = heldout_windows(layout, evaluate.window)
    decoder = PyTorchDecoder("fp32", PyTorchOptions(), params.threads)
    decoder.load(layout.decoder_model, context=evaluate.window + evaluate.greedy_tokens + evaluate.greedy_prompt_tokens)
    logits = np.stack([decoder.score(ids)[:-1] for ids in held]).astype(np.float32)
    targets = np.array([ids[1:] for ids in held], dtype=np.int64)
    prompts = greedy_prompts(held, evaluate.greedy_prompts, evaluate.greedy_prompt_tokens)
    continuations = [greedy(decoder, prompt, evaluate.greedy_tokens) for prompt in prompts]
    nll = -np.take_along_axis(log_softmax(logits), targets[..., None], axis=-1)[..., 0]
    out = layout.decoder_baseline_dir
    write_bytes(out / "logits.npy", _npy(logits))
    write_bytes(out / "windows.npy", _npy(np.array(held, dtype=np.int64)))
    record = {"windows": len(held), "window": evaluate.window, "perplexity": float(np.exp(nll.mean())),
              "greedy": {"prompts": prompts, "continuations": continuations}, "runtime_settings": decoder.describe()}
    write_json(out / "reference.json", record)
    return record
