"""edgekit's latency against each runtime's own tooling, at the same settings, measured side by side.

- OpenVINO variants: edgekit's harness vs OpenVINO's `benchmark_app` (ships with the openvino wheel),
  sync API, latency hint, 1 stream, the same thread count, batch 1 × 32 tokens, dynamic model.
- ONNX Runtime variants: edgekit's harness vs a minimal hand-written loop over an InferenceSession
  with the same session options.
Each pair alternates (A B A B ...) in fresh processes so drift hits both. Target: edgekit / expert ≤ 1.05.
The ratio of the two medians is the figure; a bootstrap 95% CI of the median paired ratio says whether
the rounds settle it (PASS / FAIL) or not (INCONCLUSIVE), and rounds where other processes took CPU
time are marked busy.

Run after `dvc repro`:  python benchmarks/vs_expert_tools.py [--rounds 5] [--variants ort-fp32 ort-int8 ov-fp32 ...]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekit.bench import system
from edgekit.bench.harness import run_worker, scenario_request
from edgekit.bench.stats import median_ci
from edgekit.datasets import load_eval_pairs, unique_sentences
from edgekit.layout import Layout
from edgekit.manifest import read_manifest
from edgekit.params import load_params

SEQ, BATCH, SECONDS = 32, 1, 5

HAND_LOOP = """
import sys, time, statistics, numpy as np, onnxruntime as ort
path, threads, seconds, batch, seq = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feed = {i.name: (rng.integers(1000, 20000, (batch, seq)) if i.name == "input_ids" else np.ones((batch, seq))
        if i.name == "attention_mask" else np.zeros((batch, seq))).astype(np.int64) for i in s.get_inputs()}
for _ in range(10): s.run(None, feed)
t = []; end = time.perf_counter() + seconds
while time.perf_counter() < end:
    a = time.perf_counter(); s.run(None, feed); t.append((time.perf_counter() - a) * 1000)
print(statistics.median(t))
"""


def edgekit_median(params, layout, name: str, texts: Path) -> tuple[float, bool]:
    folder = layout.variant_dir(name)
    request = scenario_request(params, read_manifest(folder), folder, texts, BATCH, SEQ)
    request.update(min_seconds=SECONDS, max_seconds=SECONDS, min_iterations=20, target_ci_half_width=1e-6)
    result = run_worker(request, params.threads, timeout=600)
    if result["status"] != "ok":
        raise SystemExit(f"edgekit run of {name} failed: {result.get('error')}")
    return statistics.median(result["samples_ms"]), result["noise"]["busy"]


def watched(params, tool, *args):
    """Run ``tool(*args)`` (a subprocess); return its value and whether other processes took CPU meanwhile."""
    before, children_before = system.snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
    value = tool(*args)
    after, children_after = system.snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
    # the tool is our child: its CPU time is ours, as the worker counts its own threads
    children_s = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    after["own_cpu_s"] += children_s
    return value, system.compare(before, after, params.benchmark.busy_foreign_load, params.benchmark.busy_steal_share)["busy"]


def verdict(paired: list[float], ratio: float, target: float = 1.05) -> str:
    if len(paired) < 5:
        return f"{'PASS' if ratio <= target else 'FAIL'} (point estimate only: {len(paired)} rounds are too few for a CI, use 5 or more)"
    low, high = median_ci(np.asarray(paired), confidence=0.95, seed=0)
    if ratio <= target:
        return f"PASS (paired-ratio 95% CI {low:.3f}..{high:.3f})"
    if low > target:
        return f"FAIL (paired-ratio 95% CI {low:.3f}..{high:.3f} is above {target})"
    return f"INCONCLUSIVE (paired-ratio 95% CI {low:.3f}..{high:.3f} straddles {target}: more rounds on an idle machine)"


def hand_loop_median(model: Path, threads: int) -> float:
    done = subprocess.run([sys.executable, "-c", HAND_LOOP, str(model), str(threads), str(SECONDS), str(BATCH), str(SEQ)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def benchmark_app_median(model: Path, threads: int, precision_hint: str | None) -> float:
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    import openvino as ov

    names = [p.get_any_name() for p in ov.Core().read_model(str(model)).inputs]
    shape = ",".join(f"{n}[{BATCH},{SEQ}]" for n in names)
    # benchmark_app refuses -nstreams/-nthreads next to a hint; 1 stream at our threads is what the hint gives us.
    command = [tool, "-m", str(model), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads", str(threads),
               "-api", "sync", "-t", str(SECONDS), "-data_shape", shape]
    if precision_hint:
        command += ["-infer_precision", precision_hint]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"Median:\s+([\d.]+)\s*ms", done.stdout)
    if not match:
        raise SystemExit(f"could not read benchmark_app's median:\n{done.stdout[-2000:]}")
    return float(match.group(1))


def expert_median(manifest: dict, folder: Path, threads: int) -> tuple[str, float]:
    if manifest["runtime"] in ("onnxruntime", "olive"):
        return "hand loop", hand_loop_median(folder / "model.onnx", threads)
    if manifest["runtime"] == "openvino":
        hint = "f32" if manifest["precision"] == "fp32" else None
        return "benchmark_app", benchmark_app_median(folder / "openvino_model.xml", threads, hint)
    raise SystemExit(f"no expert tool wired for runtime {manifest['runtime']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--variants", nargs="+", default=["ort-fp32", "ort-int8", "ov-fp32", "ov-int8-weights", "ov-int8"])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    params, layout = load_params(args.project / "params.yaml"), Layout(args.project)
    with tempfile.TemporaryDirectory() as scratch:
        texts = Path(scratch) / "texts.json"
        texts.write_text(json.dumps(unique_sentences(load_eval_pairs(layout))))
        for name in args.variants:
            folder = layout.variant_dir(name)
            manifest = read_manifest(folder)
            ours, theirs, busy, tool = [], [], [], ""
            for _ in range(args.rounds):
                median, ours_busy = edgekit_median(params, layout, name, texts)
                (tool, their_median), their_busy = watched(params, expert_median, manifest, folder, params.threads)
                ours.append(median)
                theirs.append(their_median)
                busy.append(ours_busy or their_busy)
            ratio = statistics.median(ours) / statistics.median(theirs)
            # Each process lands on its own point of this machine's between-process spread, so the rounds are shown too.
            paired = [a / b for a, b in zip(ours, theirs, strict=True)]
            print(f"{name}: edgekit {statistics.median(ours):.4f} ms vs {tool} {statistics.median(theirs):.4f} ms "
                  f"(medians of {args.rounds} alternating rounds) ratio {ratio:.3f} (target ≤ 1.05): {verdict(paired, ratio)}")
            print(f"  per round, edgekit ms {[round(x, 3) for x in ours]}, {tool} ms {[round(x, 3) for x in theirs]}, "
                  f"paired ratios {[round(x, 3) for x in paired]}"
                  + (f"; busy rounds (other processes took CPU): {[i + 1 for i, b in enumerate(busy) if b]}" if any(busy) else ""))

if __name__ == "__main__":
    main()
