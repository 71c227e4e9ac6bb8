"""What the machine was doing around a measurement: load, CPU steal, and the settings in force.

On shared 2-core machines a busy neighbour changes a result by 2× or more, so every timed run
carries a snapshot from before and after it, and a run measured on a busy machine is flagged.
Other processes on this machine show as foreign CPU time and make a run busy. A neighbour outside
it (another VM on the host, the other hyperthread of our core) shows as CPU steal only where the
hypervisor reports steal; for that, each run also times a fixed canary loop on every CPU, and the
select stage compares it with the calibrated best. The canary is evidence, not a verdict: on our
shared VMs it ran 1.6–1.9× its best for a whole pipeline run while ONNX Runtime, OpenVINO and PyTorch
ran at the best latencies we have measured.

Example:
    >>> before = snapshot()
    >>> ...  # time something
    >>> noise = compare(before, snapshot())
    >>> noise["foreign_load"], noise["busy"]   # cores other processes used meanwhile
    (0.02, False)
    >>> max(cpu_canary_ms().values()) / canary_reference_ms()   # how much slower the slowest CPU is now
    1.03
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

# Environment variables that change how runtimes use threads (recorded with every result).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY",
                    "KMP_BLOCKTIME", "KMP_AFFINITY", "GOMP_SPINCOUNT", "OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA")


# ISA extensions that decide which kernels runtimes pick (from /proc/cpuinfo flag names).
ISA_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16",
)
def cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor block is enough
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def isa_flags() -> set[str]:
    """The ISA extensions of ``ISA_FLAGS`` this CPU reports (what decides a runtime's kernels)."""
    info = cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {flag for flag in ISA_FLAGS if flag in flags}


def _cpu_times() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat in clock ticks (user nice system idle iowait irq softirq steal ...)."""
    try:
        with open("/proc/stat") as handle:
            return [int(v) for v in handle.readline().split()[1:]]
    except OSError:
        return []


def snapshot() -> dict[str, Any]:
    """Load average, the machine's cumulative CPU times, and this process's own CPU time (all threads), now."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"monotonic": time.monotonic(), "loadavg_1m": load[0], "cpu_times": _cpu_times(),
            "own_cpu_s": time.process_time()}


def compare(before: dict[str, Any], after: dict[str, Any], busy_foreign_load: float = 0.25,
            busy_steal_share: float = 0.05) -> dict[str, Any]:
    """What other processes and the hypervisor took while we measured, and whether that makes the run busy.

    ``foreign_load`` is the CPU time every other process used between the snapshots, in cores: the
    machine's busy ticks from /proc/stat minus this process's own CPU time, over the wall time. The
    1-minute load average is kept as data only: it lags by a minute and once read 0.0–0.8 while a test
    run beside the PyTorch baseline made it 40× slower.

    Args:
        before, after: from ``snapshot`` in the measuring process.
        busy_foreign_load: more foreign cores than this makes the run busy.
        busy_steal_share: a larger share of CPU time stolen by the hypervisor makes the run busy.
    """
    wall_s = max(after["monotonic"] - before["monotonic"], 1e-9)
    own_s = after["own_cpu_s"] - before["own_cpu_s"]
    foreign_load = steal_share = None
    if len(before["cpu_times"]) > 7 and len(after["cpu_times"]) == len(before["cpu_times"]):
        delta = [a - b for a, b in zip(after["cpu_times"], before["cpu_times"], strict=True)]
        user, nice, system, _idle, _iowait, irq, softirq, steal = delta[:8]
        machine_busy_s = (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
        foreign_load = max(0.0, machine_busy_s - own_s) / wall_s
        steal_share = steal / (sum(delta[:8]) or 1)
    busy = ((foreign_load is not None and foreign_load > busy_foreign_load)
            or (steal_share is not None and steal_share > busy_steal_share))
    return {
        "foreign_load": None if foreign_load is None else round(foreign_load, 3),
        "own_load": round(own_s / wall_s, 3),
        "steal_share": None if steal_share is None else round(steal_share, 4),
        "loadavg_1m_before": round(before["loadavg_1m"], 2),
        "loadavg_1m_after": round(after["loadavg_1m"], 2),
        "busy": busy,
    }


CANARY_LOOP = 200_000  # about 5 ms of pure Python on a 2020s server core


def _canary_once() -> float:
    start = time.perf_counter()
    total = 0
    for i in range(CANARY_LOOP):
        total += i
    return (time.perf_counter() - start) * 1000


def cpu_canary_ms(repeats: int = 5) -> dict[int, float]:
    """Best of ``repeats`` timings of a fixed loop on each CPU this process may use, in ms.

    Pins only the calling thread, one CPU at a time, and restores its affinity; a runtime's own
    worker threads keep theirs.
    """
    if not hasattr(os, "sched_getaffinity"):
        return {-1: min(_canary_once() for _ in range(repeats))}
    allowed = os.sched_getaffinity(0)
    speeds = {}
    try:
        for cpu in sorted(allowed):
            os.sched_setaffinity(0, {cpu})
            speeds[cpu] = min(_canary_once() for _ in range(repeats))
    finally:
        os.sched_setaffinity(0, allowed)
    return speeds


def canary_reference_ms(seconds: float = 5.0) -> float:
    """The machine's best canary time: the fastest CPU over a few seconds of tries.

    Contention from outside comes and goes in phases of seconds, so the best over a window is the
    uncontended speed.
    """
    best = float("inf")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        best = min(best, *cpu_canary_ms().values())
        time.sleep(0.05)
    return round(best, 4)


def settings() -> dict[str, Any]:
    """CPU affinity and thread-related environment of this process."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"affinity": affinity, "env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}}
