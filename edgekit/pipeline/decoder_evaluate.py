"""The ``decoder_evaluate`` stage for one decoder variant: perplexity, KL and top-1 against the baseline.

In a child process (the variant's runtime only), the variant scores the same held-out windows as the
baseline did, from the same token ids, and continues the same prompts greedily through its KV cache.
The figures (``edgekit.tasks.generation.metrics``) are paired with the baseline's position by position.

Example:
    >>> run(params, Layout(Path(".")), "gguf-q4_k_m")["kl_mean"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.fsutil import read_json, write_json
from edgekit.isolation import run_child
from edgekit.layout import Layout
from edgekit.manifest import verify_manifest
from edgekit.params import Params, parse_params


def run(params: Params, layout: Layout, name: str) -> dict[str, Any]:
    folder = layout.decoder_variant_dir(name)
    manifest = verify_manifest(folder)
    record: dict[str, Any] = {"variant": name, "runtime": manifest["runtime"], "precision": manifest["precision"]}
    if manifest["status"] != "ok":
        record.update(status=manifest["status"], reason=manifest.get("reason") or manifest.get("error"))
        if manifest.get("install"):  # a skipped variant: the pip command that makes it, for the report and explorer
            record["install"] = manifest["install"]
    else:
        payload = {"params": params.raw, "root": str(layout.root.resolve()), "variant": name}
        result = run_child("edgekit.pipeline.decoder_evaluate:child", payload, params.evaluate_timeout_seconds, "evaluate.timeout_seconds")
        record.update(result)
    write_json(layout.decoder_evaluate_metrics(name), record)
    return record


def child(payload: dict[str, Any]) -> dict[str, Any]:
    from edgekit.bench.system import isa_flags
    from edgekit.runtimes import get_runtime
    from edgekit.tasks.generation.backend import greedy
    from edgekit.tasks.generation.metrics import greedy_agreement, log_softmax, summarize, window_scores

    params, layout = parse_params(payload["params"], deep=()), Layout(Path(payload["root"]))
    variant, evaluate = params.decoder.variant(payload["variant"]), params.decoder.evaluate
    decoder = get_runtime(variant.runtime).backend("generation")(variant.precision, variant.options, params.threads)
    decoder.load(layout.decoder_variant_dir(variant.name), context=evaluate.window + evaluate.greedy_tokens + evaluate.greedy_prompt_tokens)
    held = np.load(layout.decoder_baseline_dir / "windows.npy")
    reference = np.load(layout.decoder_baseline_dir / "logits.npy", mmap_mode="r")
    scores, baseline_nll = [], []
    for row, ids in enumerate(held):
        targets = ids[1:]
        scores.append(window_scores(reference[row], decoder.score(ids.tolist())[:-1], targets))
        baseline_nll.append(-log_softmax(reference[row])[np.arange(len(targets)), targets])
    greedy_record = read_json(layout.decoder_baseline_dir / "reference.json")["greedy"]
    continuations = [greedy(decoder, prompt, evaluate.greedy_tokens) for prompt in greedy_record["prompts"]]
    return {**summarize(scores, baseline_nll, params.seed), "greedy": greedy_agreement(greedy_record["continuations"], continuations),
            "runtime_settings": decoder.describe(), "isa": sorted(isa_flags())}  # quantized kernels differ by ISA path
