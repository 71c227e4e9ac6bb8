"""Fingerprint of the software and hardware a result was measured on.

Only stable facts go in (no load, no clock), so the fingerprint of one machine and one install is
the same on every run, and ``dvc repro`` re-runs what depends on it only when something real changed.

Example:
    >>> fingerprint(Path("."))["cpu"]["isa"]
    ['avx', 'avx2', 'avx512_vnni', ...]
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.bench.system import ISA_FLAGS, cpuinfo
from edgekit.deps import probe
from edgekit.errors import install_command

LOCK_FILE = "requirements/lock.txt"
KEY_PACKAGES = ("edgekit", "numpy", "torch", "transformers", "tokenizers", "onnx", "onnxruntime", "optimum",
                "optimum-onnx", "openvino", "nncf", "llama-cpp-python", "mlx", "olive-ai", "dvc", "papermill")


def cpu() -> dict[str, Any]:
    """CPU model, vendor, cores and the ISA extensions that matter for inference kernels."""
    import psutil

    info = cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or info.get("Model") or platform.processor() or platform.machine()
    if sys.platform == "darwin":
        import subprocess

        model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True).stdout.strip() or model
    return {
        "model": model,
        "vendor": info.get("vendor_id", ""),
        "architecture": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "isa": sorted(flag for flag in ISA_FLAGS if flag in flags),
        "apple_silicon": sys.platform == "darwin" and platform.machine() == "arm64",
    }


def lock_digest(root: Path) -> str | None:
    path = root / LOCK_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def accelerators() -> list[str]:
    """Accelerators visible to the OS (device nodes only: no driver is loaded to look)."""
    found = []
    if any(Path("/dev").glob("nvidia[0-9]*")):
        found.append("nvidia-gpu")
    if Path("/dev/kfd").exists():
        found.append("amd-gpu")
    if any(Path("/dev").glob("accel/accel*")):
        found.append("npu")
    if sys.platform == "darwin" and platform.machine() == "arm64":
        found.append("apple-metal")
    return found


def runtimes() -> dict[str, dict[str, Any]]:
    """Each runtime: found with its version, or missing with the install command."""
    from edgekit.runtimes import runtimes as table

    report = {}
    for name, config in table().items():
        probes = [probe(dep) for dep in config.dependencies + config.optimize_dependencies]
        missing = [p.dependency.distribution for p in probes if not p.found]
        report[name] = {
            "available": not missing,
            "versions": {p.dependency.distribution: p.version for p in probes if p.found},
            "missing": missing,
            "install": install_command(config.extra) if missing else None,
            "kinds": {kind: list(support.precisions) for kind, support in config.kinds.items()},
        }
    return report


def fingerprint(root: Path) -> dict[str, Any]:
    """The whole fingerprint: edgekit, Python, OS, CPU, accelerators, lock digest, packages, runtimes."""
    import psutil

    return {
        "edgekit": __version__,
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "os": {"system": platform.system(), "release": platform.release(), "libc": "-".join(platform.libc_ver())},
        "cpu": cpu(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "accelerators": accelerators(),
        "lock_sha256": lock_digest(root),
        "packages": package_versions(),
        "runtimes": runtimes(),
        "env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("OMP_", "MKL_", "OPENBLAS_", "KMP_"))},
    }
