"""One conformance suite for every runtime's decoder backend, on a small LLaMA made here.

For each (runtime, precision) a runtime declares for the generation kind (``kinds["generation"]``): make the variant, load it,
and check what a user of a decoder relies on: logits of the right shape and dtype, the same logits
on a second run, the KV-cache path (prefill then decode) agreeing with scoring the whole sequence,
next-token fidelity against the fp32 PyTorch baseline within the runtime's floor for it, greedy
output identical to the baseline's where the floor asks for it, and the variant's own tokenizer (a
GGUF carries one) agreeing with the baseline's token for token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.runtimes import get_runtime, runtime_names
from edgekit.tasks.generation.backend import greedy
from edgekit.tasks.generation.corpus import token_stream, windows
from edgekit.tasks.generation.metrics import log_softmax, window_scores

CASES = [(name, precision) for name in runtime_names() if "generation" in get_runtime(name).kinds
         for precision in get_runtime(name).support("generation").precisions]
MARKS = {"pytorch": [], "onnxruntime": [pytest.mark.onnxruntime], "openvino": [pytest.mark.openvino],
         "llamacpp": [pytest.mark.llamacpp], "mlx": [pytest.mark.mlx, pytest.mark.slow], "olive": [pytest.mark.olive]}
CONTEXT = 256


@pytest.fixture(scope="module")
def reference(tiny_decoder):
    """The baseline's held-out windows, logits and greedy continuations."""
    from transformers import AutoTokenizer

    from edgekit.runtimes.pytorch.config import PyTorchOptions
    from edgekit.runtimes.pytorch.decoder import PyTorchDecoder

    tokenizer = AutoTokenizer.from_pretrained(tiny_decoder)
    sentences = (tiny_decoder / "heldout.txt").read_text().splitlines()
    held = windows(token_stream(tokenizer, sentences), 64)[:6]
    baseline = PyTorchDecoder("fp32", PyTorchOptions(), threads=2)
    baseline.load(tiny_decoder, CONTEXT)
    prompts = [ids[:12] for ids in held[:4]]
    return {"tokenizer": tokenizer, "sentences": sentences[:20], "windows": held,
            "logits": [baseline.score(ids) for ids in held], "greedy": [greedy(baseline, p, 16) for p in prompts], "prompts": prompts}


def _variant(runtime: str, precision: str, source: Path, tmp_path: Path):
    config = get_runtime(runtime)
    options = config.options.parse(None, "options")
    out, scratch = tmp_path / "variant", tmp_path / "scratch"
    out.mkdir()
    scratch.mkdir()
    config.backend("generation", for_optimize=True)(precision, options, 2).optimize(source, out, scratch)
    decoder = config.backend("generation")(precision, options, 2)
    decoder.load(out, CONTEXT)
    return config, decoder


@pytest.mark.parametrize(("runtime", "precision"), [pytest.param(*case, marks=MARKS.get(case[0], [])) for case in CASES],
                         ids=[f"{r}-{p}" for r, p in CASES])
def test_decoder_conforms(runtime, precision, tiny_decoder, reference, tmp_path):
    config, decoder = _variant(runtime, precision, tiny_decoder, tmp_path)
    floor = config.support("generation").floors[precision]
    ids = reference["windows"][0]
    scored = decoder.score(ids)
    assert scored.shape == (len(ids), 1024) and scored.dtype == np.float32 and np.isfinite(scored).all()
    np.testing.assert_array_equal(decoder.score(ids), scored)  # deterministic

    # the KV-cache path: prefill half, then decode token by token, predicts what scoring the whole does
    decoder.reset()
    cached = [decoder.prefill(ids[:32])] + [decoder.decode(token) for token in ids[32:40]]
    kl = [window_scores(scored[31 + i][None], logits[None], np.array([0]))["kl"][0] for i, logits in enumerate(cached)]
    assert max(kl) < max(1e-3, 10 * floor.kl_mean), f"prefill/decode disagrees with score: KL {max(kl):.2e}"

    scores = [window_scores(ref[:-1], decoder.score(w)[:-1], np.array(w[1:])) for ref, w in zip(reference["logits"], reference["windows"], strict=True)]
    kl_mean = float(np.mean([s["kl"].mean() for s in scores]))
    top1 = float(np.mean([s["top1"].mean() for s in scores]))
    assert kl_mean <= floor.kl_mean, f"{runtime} {precision}: KL {kl_mean:.2e} > {floor.kl_mean:.0e}"
    assert top1 >= floor.top1_agreement, f"{runtime} {precision}: top-1 {top1:.4f} < {floor.top1_agreement}"
    if floor.greedy_identical:
        assert [greedy(decoder, p, 16) for p in reference["prompts"]] == reference["greedy"]

    own = [decoder.tokenize(s) for s in reference["sentences"]]
    if own[0] is not None:
        assert own == [reference["tokenizer"](s)["input_ids"] for s in reference["sentences"]]


def test_every_decoder_precision_has_a_floor():
    for name in runtime_names():
        support = get_runtime(name).kinds.get("generation")
        assert support is None or set(support.floors) == set(support.precisions), name


def test_log_softmax_is_normalized():
    logits = np.random.default_rng(0).normal(size=(3, 50)) * 10
    assert np.allclose(np.exp(log_softmax(logits)).sum(-1), 1.0)
