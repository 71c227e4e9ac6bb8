"""Hardware profile → the runtime and precision to ship, from measurements when there are some.

Two sources, in this order:

1. **Measured** — ``metrics/summary.json`` from the ``select`` stage, when it was measured on this
   host (same CPU vendor, model and architecture) and a variant passed every blocking gate.
2. **Prior** — otherwise, the first rule of ``PRIOR_RULES`` that matches the host. The rules are
   documented priors: what the runtimes' own kernels are built for, and what this project measured
   on MiniLM-L6 (see the facts in DESIGN.md). They are *not* measurements of this host, and the
   result says so (``"source": "prior"``).

The prior table (first match wins):

==================  =============================  ===========  ===============  ==========================
rule                matches                        runtime      precision        why
==================  =============================  ===========  ===============  ==========================
apple-silicon       Apple M-series (arm64 macOS)   mlx          int8             Metal GPU, unified memory
intel-int8-units    Intel x86 with AMX or VNNI     openvino     int8-accuracy    oneDNN VNNI/AMX int8 GEMM
intel-x86           other Intel x86                openvino     int8-weights     fp32 compute, ¼ the weights
amd-x86-vnni        AMD x86 with VNNI              onnxruntime  int8             MLAS VNNI int8 GEMM
x86                 any other x86                  onnxruntime  int8             MLAS AVX2 u8s8 kernels
arm64-linux         arm64 Linux, not Apple         llamacpp     q8_0             ggml NEON/dotprod kernels
portable            anything else                  onnxruntime  fp32             wheels for every platform
==================  =============================  ===========  ===============  ==========================

Accelerators other than Apple's GPU do not change the prior: every runtime edgekit benchmarks runs
on the CPU (execution provider / device ``CPU``), so a discrete GPU would need its own variants.

Example:
    >>> profile = HardwareProfile.from_fingerprint(read_json(Path("outputs/environment.json")))
    >>> describe(recommend_for_host(profile, read_json(Path("metrics/summary.json"))))
    'measured on this host: ort-int8 (onnxruntime int8) — ort-int8 passed every blocking production gate ...'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# CPU feature name → the /proc/cpuinfo flags (x86 and arm names differ, so one set serves both).
FEATURE_FLAGS: tuple[tuple[str, frozenset[str]], ...] = (
    ("int8 dot product", frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})),
    ("int8 matrix (AMX)", frozenset({"amx_int8"})),
    ("bf16", frozenset({"avx512_bf16", "amx_bf16", "bf16"})),
    ("fp16 arithmetic", frozenset({"avx512_fp16"})),
    ("avx512", frozenset({"avx512f"})),
    ("avx2", frozenset({"avx2"})),
    ("neon", frozenset({"asimd"})),
    ("sve", frozenset({"sve", "sve2"})),
)
# macOS has no /proc/cpuinfo, so an Apple fingerprint lists no flags; every M-series core has NEON
# and the Armv8.4 dot product (FEAT_DotProd), so those are implied.
APPLE_IMPLIED_FLAGS = frozenset({"asimd", "asimddp"})
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@dataclass(frozen=True)
class HardwareProfile:
    """The facts about a host that decide which runtime's kernels suit it.

    Attributes:
        vendor: the CPU vendor string as recorded (``GenuineIntel``, ``AuthenticAMD``, or ``""``
            where the OS does not report one, e.g. macOS and most arm64 Linux).
        cpu_model: the CPU model name as recorded.
        architecture: ``platform.machine()`` (``x86_64``, ``AMD64``, ``aarch64``, ``arm64``).
        isa: the ISA extension flags found (names from ``edgekit.bench.system.ISA_FLAGS``).
        apple_silicon: macOS on arm64.
        accelerators: device kinds visible to the OS (``nvidia-gpu``, ``apple-metal``, ...).
        system: ``platform.system()`` (``Linux``, ``Darwin``, ``Windows``).
    """

    vendor: str
    cpu_model: str
    architecture: str
    isa: tuple[str, ...]
    apple_silicon: bool
    accelerators: tuple[str, ...]
    system: str

    @classmethod
    def from_fingerprint(cls, fingerprint: dict[str, Any]) -> HardwareProfile:
        """Build a profile from the ``environment`` stage's fingerprint (outputs/environment.json).

        Missing fields become empty values, so an older or partial fingerprint still yields a profile
        (which then matches the portable rule rather than a wrong specific one).
        """
        cpu = fingerprint.get("cpu") or {}
        return cls(
            vendor=str(cpu.get("vendor") or ""),
            cpu_model=str(cpu.get("model") or ""),
            architecture=str(cpu.get("architecture") or ""),
            isa=tuple(sorted(cpu.get("isa") or ())),
            apple_silicon=bool(cpu.get("apple_silicon")),
            accelerators=tuple(fingerprint.get("accelerators") or ()),
            system=str((fingerprint.get("os") or {}).get("system") or ""),
        )

    @property
    def vendor_family(self) -> str:
        """``intel``, ``amd``, ``apple`` or ``""``; from the vendor string, else the model name.

        Windows and macOS leave the vendor string empty, so the model name is the fallback.
        """
        text = f"{self.vendor} {self.cpu_model}".lower()
        if self.apple_silicon or "apple" in text:
            return "apple"
        if "genuineintel" in text or "intel" in text:
            return "intel"
        if "authenticamd" in text or "amd" in text.replace("amd64", ""):
            return "amd"
        return ""

    @property
    def isa_family(self) -> str:
        """``x86``, ``arm64`` or the architecture string as recorded."""
        machine = self.architecture.lower()
        if machine in ("x86_64", "amd64", "i386", "i686", "x86"):
            return "x86"
        if machine in ("aarch64", "arm64", "armv8", "armv8l"):
            return "arm64"
        return machine

    @property
    def flags(self) -> frozenset[str]:
        """The recorded ISA flags, plus those implied on Apple silicon."""
        return frozenset(self.isa) | (APPLE_IMPLIED_FLAGS if self.apple_silicon else frozenset())

    @property
    def features(self) -> tuple[str, ...]:
        """Readable names of the inference-relevant features, e.g. ``("int8 dot product", "bf16", ...)``."""
        return tuple(name for name, flags in FEATURE_FLAGS if flags & self.flags)

    def has(self, feature: str) -> bool:
        """Whether the host has ``feature`` (a name from ``FEATURE_FLAGS``)."""
        return feature in self.features

    def same_host(self, host: dict[str, Any]) -> bool:
        """Whether a ``summary["host"]`` record names this CPU (vendor, model, architecture)."""
        return (host.get("vendor"), host.get("cpu_model"), host.get("architecture")) == (
            self.vendor, self.cpu_model, self.architecture)

    def label(self) -> str:
        """``AMD EPYC (AuthenticAMD, x86_64, Linux)`` — for notes and reports."""
        details = ", ".join(part for part in (self.vendor, self.architecture, self.system) if part)
        return f"{self.cpu_model or 'unknown CPU'} ({details})" if details else self.cpu_model or "unknown CPU"


@dataclass(frozen=True)
class PriorRule:
    """One row of the prior table: when it applies, what it recommends and why."""

    id: str
    applies: Callable[[HardwareProfile], bool]
    runtime: str
    precision: str
    reason: str


def _intel_with_int8_units(p: HardwareProfile) -> bool:
    return p.isa_family == "x86" and p.vendor_family == "intel" and bool(p.flags & VNNI_FLAGS)


def _amd_with_vnni(p: HardwareProfile) -> bool:
    return p.isa_family == "x86" and p.vendor_family == "amd" and bool(p.flags & VNNI_FLAGS)


def _arm64_linux(p: HardwareProfile) -> bool:
    return p.isa_family == "arm64" and p.system == "Linux" and not p.apple_silicon


PRIOR_RULES: tuple[PriorRule, ...] = (
    PriorRule(
        "apple-silicon", lambda p: p.apple_silicon or (p.isa_family == "arm64" and p.system == "Darwin"),
        "mlx", "int8",
        "MLX runs on the Apple GPU through Metal with unified memory (no copies to a device), and its "
        "8-bit affine quantization halves weight traffic at fidelity close to fp32",
    ),
    PriorRule(
        # Full int8 without accuracy control reached only cosine 0.85-0.96 on MiniLM (DESIGN.md), so
        # the prior names NNCF's accuracy-controlled int8, which keeps the layers that need fp32.
        "intel-int8-units", _intel_with_int8_units, "openvino", "int8-accuracy",
        "OpenVINO's CPU plugin runs NNCF-quantized int8 on oneDNN kernels that use VNNI dot products "
        "and AMX tiles, which Intel tunes for its own cores",
    ),
    PriorRule(
        "intel-x86", lambda p: p.isa_family == "x86" and p.vendor_family == "intel", "openvino", "int8-weights",
        "without VNNI or AMX, int8 activations gain little; int8 weights with fp32 compute cut the "
        "model and its memory traffic 4× at cosine ≈ 0.9995, on Intel's own tuned runtime",
    ),
    PriorRule(
        "amd-x86-vnni", _amd_with_vnni, "onnxruntime", "int8",
        "ONNX Runtime's MLAS dispatches its int8 GEMM kernels on CPUID features, not vendor, so AMD's "
        "VNNI units are used; dynamic int8 needs no calibration set",
    ),
    PriorRule(
        "x86", lambda p: p.isa_family == "x86", "onnxruntime", "int8",
        "MLAS has AVX2 u8s8 int8 kernels for x86 without VNNI, and dynamic int8 cuts weight traffic 4×; "
        "ONNX Runtime ships wheels for every x86 OS",
    ),
    PriorRule(
        "arm64-linux", _arm64_linux, "llamacpp", "q8_0",
        "llama.cpp's ggml has hand-written NEON kernels (dot product and i8mm where present) and builds "
        "on every arm64 Linux; Q8_0 kept cosine ≈ 0.9997 on MiniLM",
    ),
    PriorRule(
        "portable", lambda p: True, "onnxruntime", "fp32",
        "no rule for this platform: ONNX Runtime fp32 runs everywhere and needs no quantized-kernel "
        "support, so it is the safe default until the pipeline is measured here",
    ),
)


def prior_rule(profile: HardwareProfile) -> PriorRule:
    """The first rule of ``PRIOR_RULES`` that applies (the last one always does)."""
    return next(rule for rule in PRIOR_RULES if rule.applies(profile))


def prior_recommendation(profile: HardwareProfile) -> dict[str, Any]:
    """The documented prior for this host.

    Returns:
        ``{"source": "prior", "runtime", "precision", "rule", "reason"}``.
    """
    rule = prior_rule(profile)
    return {"source": "prior", "runtime": rule.runtime, "precision": rule.precision, "rule": rule.id,
            "reason": rule.reason}


def recommend_for_host(profile: HardwareProfile, summary: dict[str, Any] | None) -> dict[str, Any]:
    """The measured winner when the summary is from this host and something passed, else the prior.

    Args:
        profile: this host.
        summary: metrics/summary.json from the ``select`` stage, or None when there is none.

    Returns:
        Measured: ``{"source": "measured", "variant", "runtime", "precision", "reason", "prior",
        "agrees_with_prior"}``. Otherwise the prior (see ``prior_recommendation``) with a ``"note"``
        saying why the measurements were not used. A summary from an older edgekit with missing
        keys gives the prior and a note, never an exception.
    """
    prior = prior_recommendation(profile)
    note = _unusable_summary(profile, summary)
    if note:
        return {**prior, "note": note}
    decision = summary["decision"]
    name = decision["recommended"]
    row = summary["variants"][name]
    return {"source": "measured", "variant": name, "runtime": row["runtime"], "precision": row["precision"],
            "reason": _measured_reason(name, row, decision.get("target_stage", "production")),
            "prior": prior, "agrees_with_prior": row["runtime"] == prior["runtime"]}


def _unusable_summary(profile: HardwareProfile, summary: dict[str, Any] | None) -> str | None:
    """Why the summary cannot give the recommendation, or None when it can."""
    if summary is None:
        return "no measurements yet (metrics/summary.json); run `dvc repro select` on this host"
    host, decision = summary.get("host"), summary.get("decision")
    if not isinstance(host, dict) or not isinstance(decision, dict):
        return "the summary has no host or decision record (written by an older edgekit); re-run `dvc repro select`"
    if not profile.same_host(host):
        other = HardwareProfile(str(host.get("vendor") or ""), str(host.get("cpu_model") or ""),
                                str(host.get("architecture") or ""), (), False, (), "")
        return f"the measurements are from another host, {other.label()}, not {profile.label()}; run the pipeline here"
    if "recommended" not in decision:
        return "the summary's decision has no recommended field (written by an older edgekit); re-run `dvc repro select`"
    name = decision["recommended"]
    if not name:
        stage = decision.get("target_stage", "the target")
        return f"no variant passed the blocking gates of stage {stage}" + (f": {decision['reason']}" if decision.get("reason") else "")
    row = (summary.get("variants") or {}).get(name)
    if not isinstance(row, dict) or not row.get("runtime") or not row.get("precision"):
        return f"the recommended variant {name} has no runtime and precision in the summary; re-run `dvc repro select`"
    return None


def _measured_reason(name: str, row: dict[str, Any], stage: str) -> str:
    """``ort-int8 passed every blocking production gate and scored best on this host: 4.65× (95% CI ...) ...``."""
    reason = f"{name} passed every blocking {stage} gate and scored best on this host"
    speedup, ci, cosine = row.get("speedup"), row.get("speedup_ci95"), row.get("cosine_mean")
    if speedup is None:
        return reason
    reason += f": {speedup:.2f}×"
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        reason += f" (95% CI {ci[0]:.2f}–{ci[1]:.2f})"
    return reason + (f" at cosine {cosine:.4f}" if cosine is not None else "")


def describe(recommendation: dict[str, Any]) -> str:
    """One line for ``edgekit doctor`` and the report.

    Example:
        ``prior (rule amd-x86-vnni): onnxruntime int8 — ONNX Runtime's MLAS ... [no measurements yet ...]``
    """
    if recommendation["source"] == "measured":
        prior = recommendation["prior"]
        verdict = "agrees" if recommendation["agrees_with_prior"] else f"differs: {prior['runtime']} {prior['precision']}"
        return (f"measured on this host: {recommendation['variant']} ({recommendation['runtime']} "
                f"{recommendation['precision']}) — {recommendation['reason']}; the prior (rule {prior['rule']}) {verdict}")
    line = f"prior (rule {recommendation['rule']}): {recommendation['runtime']} {recommendation['precision']} — {recommendation['reason']}"
    return line + (f" [{recommendation['note']}]" if recommendation.get("note") else "")
