"""Three benchmark runs of the same variant through edgekit's harness (fresh processes each), one
after the other: on an idle machine their medians should agree within ±5%.

Run after `dvc repro`:  python benchmarks/repeatability.py [--variant ort-int8] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from edgekit.bench.harness import measure_scenario, scenario_key, scenario_request
from edgekit.datasets import load_eval_pairs, unique_sentences
from edgekit.layout import Layout
from edgekit.manifest import read_manifest
from edgekit.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--variant", default="ort-int8")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    params, layout = load_params(args.project / "params.yaml"), Layout(args.project)
    folder = layout.variant_dir(args.variant)
    manifest = read_manifest(folder)
    batch_size, seq_length = params.headline
    medians = []
    with tempfile.TemporaryDirectory() as scratch:
        texts = Path(scratch) / "texts.json"
        texts.write_text(json.dumps(unique_sentences(load_eval_pairs(layout))))
        request = scenario_request(params, manifest, folder, texts, batch_size, seq_length)
        for run in range(args.runs):
            runs = measure_scenario(request, params.benchmark, params.threads)
            median = statistics.median(x for r in runs for x in r["samples_ms"])
            busy = any(r["noise"]["busy"] for r in runs)
            print(f"run {run + 1}: p50 {median:.4f} ms over {len(runs)} processes{' (busy machine)' if busy else ''}")
            medians.append(median)
    centre = statistics.median(medians)
    worst = max(abs(m - centre) / centre for m in medians) * 100
    print(f"{args.variant} {scenario_key(batch_size, seq_length)}: medians {', '.join(f'{m:.4f}' for m in medians)} ms;"
          f" largest deviation from their median {worst:.2f}% (target ≤ 5%): {'PASS' if worst <= 5 else 'FAIL'}")


if __name__ == "__main__":
    main()
