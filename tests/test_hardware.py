"""Hardware profile → recommended runtime and precision: every prior rule, and measured vs prior."""

from __future__ import annotations

import pytest

from edgekit.decide.hardware import PRIOR_RULES, HardwareProfile, describe, prior_recommendation, recommend_for_host
from edgekit.runtimes import runtimes


def fingerprint(vendor: str, model: str, architecture: str, isa: list[str], system: str = "Linux",
                apple_silicon: bool = False, accelerators: list[str] | None = None) -> dict:
    """An environment.json as edgekit.fingerprint.fingerprint writes it (only the fields used here)."""
    return {"cpu": {"vendor": vendor, "model": model, "architecture": architecture, "isa": isa,
                    "apple_silicon": apple_silicon, "logical_cores": 8, "physical_cores": 4},
            "accelerators": accelerators or [], "os": {"system": system, "release": "x", "libc": "glibc-2.36"},
            "runtimes": {"onnxruntime": {"available": True}}}


INTEL_AMX = fingerprint("GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+", "x86_64",
                        ["amx_bf16", "amx_int8", "amx_tile", "avx", "avx2", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                         "avx512bw", "avx512f", "avx512vl", "avx_vnni", "f16c", "fma", "sse4_1", "sse4_2"])
INTEL_PLAIN = fingerprint("GenuineIntel", "Intel(R) Core(TM) i7-6700 CPU @ 3.40GHz", "x86_64",
                          ["avx", "avx2", "f16c", "fma", "sse4_1", "sse4_2"])
# Windows: no /proc/cpuinfo, so no vendor string; platform.processor() names the vendor in the model.
INTEL_WINDOWS = fingerprint("", "Intel64 Family 6 Model 85 Stepping 7, GenuineIntel", "AMD64", [], system="Windows")
AMD_VNNI = fingerprint("AuthenticAMD", "AMD EPYC", "x86_64",
                       ["avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "f16c", "fma",
                        "sse4_1", "sse4_2"])
AMD_ZEN2 = fingerprint("AuthenticAMD", "AMD Ryzen 7 3700X 8-Core Processor", "x86_64",
                       ["avx", "avx2", "f16c", "fma", "sse4_1", "sse4_2"])
APPLE_M2 = fingerprint("", "Apple M2", "arm64", [], system="Darwin", apple_silicon=True, accelerators=["apple-metal"])
GRAVITON = fingerprint("", "aarch64", "aarch64", ["asimd", "asimddp", "bf16", "i8mm", "sve", "sve2"])
RISCV = fingerprint("", "rv64imafdc", "riscv64", [])

EXPECTED_PRIORS = [
    (INTEL_AMX, "intel-int8-units", "openvino", "int8-accuracy"),
    (INTEL_PLAIN, "intel-x86", "openvino", "int8-weights"),
    (INTEL_WINDOWS, "intel-x86", "openvino", "int8-weights"),
    (AMD_VNNI, "amd-x86-vnni", "onnxruntime", "int8"),
    (AMD_ZEN2, "x86", "onnxruntime", "int8"),
    (APPLE_M2, "apple-silicon", "mlx", "int8"),
    (GRAVITON, "arm64-linux", "llamacpp", "q8_0"),
    (RISCV, "portable", "onnxruntime", "fp32"),
    ({}, "portable", "onnxruntime", "fp32"),  # a fingerprint with nothing in it still gets an answer
]


def profile(fp: dict) -> HardwareProfile:
    return HardwareProfile.from_fingerprint(fp)


@pytest.mark.parametrize(("fp", "rule", "runtime", "precision"), EXPECTED_PRIORS)
def test_prior_rule_for_each_kind_of_host(fp, rule, runtime, precision):
    prior = prior_recommendation(profile(fp))
    assert (prior["source"], prior["rule"], prior["runtime"], prior["precision"]) == ("prior", rule, runtime, precision)
    assert prior["reason"] == next(r.reason for r in PRIOR_RULES if r.id == rule)


def test_every_prior_rule_is_reached_by_some_host():
    reached = {prior_recommendation(profile(fp))["rule"] for fp, *_ in EXPECTED_PRIORS}
    assert reached == {rule.id for rule in PRIOR_RULES}


def test_every_prior_names_a_registered_runtime_and_precision():
    # A prior naming a precision that params.yaml would reject could not be acted on.
    table = runtimes()
    for rule in PRIOR_RULES:
        assert rule.precision in table[rule.runtime].support("embedding").precisions, rule.id


def test_profile_from_fingerprint_keeps_the_recorded_strings():
    amd = profile(AMD_VNNI)
    assert (amd.vendor, amd.cpu_model, amd.architecture, amd.system) == ("AuthenticAMD", "AMD EPYC", "x86_64", "Linux")
    assert amd.isa[:3] == ("avx", "avx2", "avx512_bf16")
    assert (amd.vendor_family, amd.isa_family, amd.apple_silicon, amd.accelerators) == ("amd", "x86", False, ())
    assert profile(APPLE_M2).accelerators == ("apple-metal",)
    assert profile(INTEL_WINDOWS).vendor_family == "intel"
    assert profile(GRAVITON).vendor_family == ""


def test_features_name_what_the_isa_flags_mean():
    assert profile(INTEL_AMX).features == ("int8 dot product", "int8 matrix (AMX)", "bf16", "fp16 arithmetic", "avx512", "avx2")
    assert profile(INTEL_PLAIN).features == ("avx2",)
    assert profile(AMD_VNNI).features == ("int8 dot product", "bf16", "avx512", "avx2")
    assert profile(GRAVITON).features == ("int8 dot product", "bf16", "neon", "sve")
    # macOS records no flags; NEON and dot product are implied on every M-series core
    assert profile(APPLE_M2).features == ("int8 dot product", "neon")
    assert profile(AMD_ZEN2).has("avx2") and not profile(AMD_ZEN2).has("int8 dot product")


def test_intel_with_only_avx_vnni_counts_as_having_int8_units():
    alder_lake = fingerprint("GenuineIntel", "12th Gen Intel(R) Core(TM) i7-12700", "x86_64", ["avx2", "avx_vnni", "fma"])
    assert prior_recommendation(profile(alder_lake))["rule"] == "intel-int8-units"


def test_arm64_windows_is_not_the_linux_rule():
    snapdragon = fingerprint("", "ARMv8 (64-bit) Family 8", "ARM64", [], system="Windows")
    assert prior_recommendation(profile(snapdragon))["rule"] == "portable"


HOST = {"vendor": "AuthenticAMD", "cpu_model": "AMD EPYC", "architecture": "x86_64"}
ROWS = {
    "ort-int8": {"runtime": "onnxruntime", "precision": "int8", "status": "ok", "speedup": 4.646,
                 "speedup_ci95": [4.551, 4.718], "p50_ms": 2.689, "peak_rss_mb": 110.2, "size_mb": 22.651,
                 "retention": 0.998, "cosine_mean": 0.99321},
    "ov-int8-accuracy": {"runtime": "openvino", "precision": "int8-accuracy", "status": "ok", "speedup": 4.744,
                         "speedup_ci95": [4.3, 5.1], "p50_ms": 2.634, "cosine_mean": 0.9951},
    "mlx-int8": {"runtime": "mlx", "precision": "int8", "status": "skipped"},
}


def summary(recommended: str | None, host: dict | None = None, passing: list[str] | None = None) -> dict:
    return {"baseline": "pytorch-fp32", "headline_scenario": "b1_s32", "host": host or HOST,
            "decision": {"target_stage": "production", "passing": passing if passing is not None else [recommended],
                         "recommended": recommended, "reason": "best speed-up among passing variants"},
            "variants": ROWS}


def test_measured_on_this_host_wins_over_the_prior():
    result = recommend_for_host(profile(AMD_VNNI), summary("ort-int8"))
    assert result["source"] == "measured"
    assert (result["variant"], result["runtime"], result["precision"]) == ("ort-int8", "onnxruntime", "int8")
    assert result["reason"] == ("ort-int8 passed every blocking production gate and scored best on this host: "
                                "4.65× (95% CI 4.55–4.72) at cosine 0.9932")
    assert result["prior"]["rule"] == "amd-x86-vnni"
    assert result["agrees_with_prior"] is True
    assert describe(result) == ("measured on this host: ort-int8 (onnxruntime int8) — " + result["reason"]
                                + "; the prior (rule amd-x86-vnni) agrees")


def test_measured_winner_that_differs_from_the_prior_says_so():
    result = recommend_for_host(profile(AMD_VNNI), summary("ov-int8-accuracy"))
    assert (result["source"], result["runtime"], result["agrees_with_prior"]) == ("measured", "openvino", False)
    assert describe(result).endswith("the prior (rule amd-x86-vnni) differs: onnxruntime int8")


def test_measurements_from_another_host_are_not_used():
    intel = {"vendor": "GenuineIntel", "cpu_model": "Intel(R) Xeon(R) Platinum 8480+", "architecture": "x86_64"}
    result = recommend_for_host(profile(AMD_VNNI), summary("ort-int8", host=intel))
    assert (result["source"], result["rule"], result["runtime"]) == ("prior", "amd-x86-vnni", "onnxruntime")
    assert "another host, Intel(R) Xeon(R) Platinum 8480+ (GenuineIntel, x86_64)" in result["note"]
    assert "not AMD EPYC (AuthenticAMD, x86_64, Linux)" in result["note"]


def test_same_model_on_another_architecture_is_another_host():
    result = recommend_for_host(profile(AMD_VNNI), summary("ort-int8", host={**HOST, "architecture": "aarch64"}))
    assert result["source"] == "prior"


def test_no_passing_variant_falls_back_to_the_prior_with_the_stage_named():
    result = recommend_for_host(profile(GRAVITON), summary(None, host={"vendor": "", "cpu_model": "aarch64",
                                                                       "architecture": "aarch64"}, passing=[]))
    assert (result["source"], result["runtime"], result["precision"]) == ("prior", "llamacpp", "q8_0")
    assert result["note"] == "no variant passed the blocking gates of stage production: best speed-up among passing variants"
    assert describe(result).startswith("prior (rule arm64-linux): llamacpp q8_0 — llama.cpp's ggml")
    assert describe(result).endswith(f"[{result['note']}]")


@pytest.mark.parametrize("old", [
    {"baseline": "pytorch-fp32", "variants": ROWS},  # before host and decision existed
    {"host": HOST, "decision": {"target_stage": "production"}, "variants": ROWS},  # decision without a recommendation field
    {"host": HOST, "decision": {"recommended": "gone"}, "variants": ROWS},  # names a variant not in the table
    {"host": HOST, "decision": {"recommended": "ort-int8"}, "variants": {"ort-int8": {"status": "ok"}}},  # row without runtime
    {"host": HOST, "decision": {"recommended": "ort-int8"}},  # no variants table
    {"host": "AMD EPYC", "decision": None},  # wrong types
])
def test_an_older_or_partial_summary_falls_back_to_the_prior(old):
    result = recommend_for_host(profile(AMD_VNNI), old)
    assert (result["source"], result["rule"]) == ("prior", "amd-x86-vnni")
    assert "re-run `dvc repro select`" in result["note"]


def test_a_sparse_but_valid_row_still_gives_a_measured_reason():
    sparse = {"host": HOST, "decision": {"recommended": "ort-int8"},
              "variants": {"ort-int8": {"runtime": "onnxruntime", "precision": "int8", "speedup": 4.646}}}
    result = recommend_for_host(profile(AMD_VNNI), sparse)
    assert result["reason"] == "ort-int8 passed every blocking production gate and scored best on this host: 4.65×"


def test_no_summary_gives_the_prior_with_a_note():
    result = recommend_for_host(profile(APPLE_M2), None)
    assert (result["source"], result["runtime"], result["precision"]) == ("prior", "mlx", "int8")
    assert result["note"].startswith("no measurements yet")
