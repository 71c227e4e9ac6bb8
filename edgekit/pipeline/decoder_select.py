"""The ``decoder_select`` stage: every decoder variant against the baseline, its gates, the recommendation.

Speed-ups are baseline / variant medians with the hierarchical bootstrap CI over both sides' processes.
Decode roofline efficiency is decode tokens/s × bytes read per token / the measured memory bandwidth, where
bytes per token come from the generation task's byte model (``Task.roofline``): the variant's files, since
decoding one token reads every weight once (the KV cache at these lengths is under 1% of it). The recommendation is the variant passing ``policy.stage``'s decoder
gates with the highest decode speed-up; the baseline itself is never recommended.

Example:
    >>> run(params, Layout(Path(".")))["recommendation"]["variant"]
"""

from __future__ import annotations

from typing import Any

from edgekit.fsutil import read_json, write_json, write_text
from edgekit.layout import Layout
from edgekit.params import Params
from edgekit.policyfile import load_policy
from edgekit.tasks.base import get_task
from edgekit.tasks.generation.gates import check_stage, parse_stage, speedups

COLUMNS = ("variant", "runtime", "precision", "status", "decode_tokens_per_s", "decode_speedup", "prefill_tokens_per_s",
           "ttft_ms", "perplexity", "perplexity_delta", "kl_mean", "top1_agreement", "greedy_identical",
           "model_memory_mb", "size_mb", "decode_roofline_efficiency")


def _row(name: str, bench: dict, quality: dict, base: dict, bandwidth: float) -> dict[str, Any]:
    row: dict[str, Any] = {"variant": name, "runtime": bench["runtime"], "precision": bench["precision"]}
    status = bench["status"] if bench["status"] != "ok" else quality.get("status", "failed")
    row["status"] = status
    if status != "ok":
        row["reason"] = bench.get("reason") or bench.get("error") or quality.get("reason") or quality.get("error")
        if bench.get("install"):
            row["install"] = bench["install"]
        return row
    first = next(iter(bench["prefill"]))
    tokens_per_s = bench["decode"]["tokens_per_s"]
    row.update(
        decode_tokens_per_s=tokens_per_s, decode_tokens_per_s_ci95=bench["decode"]["tokens_per_s_ci95"],
        decode_ms_p99=bench["decode"]["ms_p99"], prefill_tokens_per_s=bench["prefill"][first]["tokens_per_s"],
        prefill_tokens_per_s_ci95=bench["prefill"][first]["tokens_per_s_ci95"], ttft_ms=bench["prefill"][first]["ms_p50"],
        prompt_length=int(first), perplexity=quality["perplexity"], perplexity_delta=quality["perplexity_delta"],
        perplexity_delta_ci95=quality["perplexity_delta_ci95"], kl_mean=quality["kl_mean"], kl_mean_ci95=quality["kl_mean_ci95"],
        top1_agreement=quality["top1_agreement"], top1_agreement_ci95=quality["top1_agreement_ci95"], greedy_identical=quality["greedy"]["identical"],
        model_memory_mb=bench["model_memory_mb"], peak_rss_mb=bench["peak_rss_mb"], size_mb=bench["size_mb"],
        busy_processes=bench["busy_processes"], load_s=bench["load_s_median"],
        decode_roofline_efficiency=_decode_efficiency(tokens_per_s, bench["size_mb"], bandwidth, max(map(int, bench["prefill"]))),
    )
    if base.get("status") == "ok":
        row["memory_reduction"] = 1 - bench["model_memory_mb"] / base["model_memory_mb"]
    return row


def _decode_efficiency(tokens_per_s: float, size_mb: float, bandwidth: float | None, prompt_length: int) -> float | None:
    """Bytes a decode step reads (the generation task's byte model) × tokens/s, over the measured bandwidth."""
    if not bandwidth:
        return None
    cost = get_task("generation").roofline(f"decode@{prompt_length}", {"size_bytes": size_mb * 2**20})
    return tokens_per_s * cost["bytes"] / (bandwidth * 1e9)


def run(params: Params, layout: Layout) -> dict[str, Any]:
    decoder = params.decoder
    policy = load_policy(layout.root / params.policy.file)
    stages = {stage: parse_stage(stage, gates) for stage, gates in policy.decoder_stages.items()}
    bandwidth = read_json(layout.roofline).get("memory_bandwidth_gbs")
    benches = {name: read_json(layout.decoder_benchmark_metrics(name)) for name in decoder.variants}
    qualities = {name: read_json(layout.decoder_evaluate_metrics(name)) for name in decoder.variants}
    base = benches[decoder.baseline]
    rows = [_row(name, benches[name], qualities[name], base, bandwidth) for name in decoder.variants]
    for row in rows:
        if row["status"] == "ok" and base["status"] == "ok":
            row.update(speedups(read_json(layout.decoder_benchmark_samples(decoder.baseline))["runs"],
                                read_json(layout.decoder_benchmark_samples(row["variant"]))["runs"], row["prompt_length"], params.seed))
        row["verdicts"] = {stage: check_stage(gates, row) if row["status"] == "ok" else {"passed": False, "gates": []}
                           for stage, gates in stages.items()}
    summary = {"baseline": decoder.baseline, "stage": params.policy.stage, "policy": policy.record(),
               "memory_bandwidth_gbs": bandwidth, "variants": rows, "recommendation": _recommend(rows, decoder.baseline, params.policy.stage)}
    write_json(layout.decoder_summary, summary)
    write_text(layout.reports_dir / "decoders.csv", _csv(rows))
    return summary


def _recommend(rows: list[dict], baseline: str, stage: str) -> dict[str, Any]:
    passing = [r for r in rows if r["variant"] != baseline and r.get("verdicts", {}).get(stage, {}).get("passed")]
    if not passing:
        return {"variant": None, "stage": stage, "why": f"no decoder variant passes the {stage} decoder gates"}
    best = max(passing, key=lambda r: (r["decode_speedup"], -r["kl_mean"]))
    return {"variant": best["variant"], "stage": stage, "decode_speedup": best["decode_speedup"],
            "decode_speedup_ci95": best["decode_speedup_ci95"], "kl_mean": best["kl_mean"], "perplexity_delta": best["perplexity_delta"],
            "why": f"highest decode speed-up among the {len(passing)} decoder variants passing the {stage} gates"}


def _csv(rows: list[dict]) -> str:
    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)

    return "\n".join([",".join(COLUMNS), *(",".join(cell(row.get(c)) for c in COLUMNS) for row in rows)]) + "\n"
