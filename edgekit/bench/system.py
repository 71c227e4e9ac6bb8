"""What the machine was doing around a measurement: load, CPU steal, and the settings in force.

On shared 2-core machines a busy neighbour changes a result by 2× or more, so every timed run
carries a snapshot from before and after it, and a run measured on a busy machine is flagged.

Example:
    >>> before = snapshot()
    >>> ...  # time something
    >>> noise = compare(before, snapshot(), cores=2)
    >>> noise["busy"]
    False
"""

from __future__ import annotations

import os
import time
from typing import Any

# Environment variables that change how runtimes use threads (recorded with every result).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY",
                    "KMP_BLOCKTIME", "KMP_AFFINITY", "GOMP_SPINCOUNT", "OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA")


def _cpu_times() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq steal ...)."""
    try:
        with open("/proc/stat") as handle:
            return [int(v) for v in handle.readline().split()[1:]]
    except OSError:
        return []


def snapshot() -> dict[str, Any]:
    """Load averages and cumulative CPU times now."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"monotonic": time.monotonic(), "loadavg_1m": load[0], "cpu_times": _cpu_times()}


def compare(before: dict[str, Any], after: dict[str, Any], cores: int, own_cores: float = 0.0) -> dict[str, Any]:
    """Steal and foreign load between two snapshots, and whether the machine counts as busy.

    Args:
        before, after: from ``snapshot``.
        cores: logical cores of the machine.
        own_cores: how many cores the measured work itself kept busy (its threads).
    """
    steal_share = None
    if before["cpu_times"] and after["cpu_times"] and len(before["cpu_times"]) > 7:
        delta = [a - b for a, b in zip(after["cpu_times"], before["cpu_times"], strict=True)]
        total = sum(delta[:8]) or 1
        steal_share = delta[7] / total
    # The 1-minute load average includes our own threads; what is left is someone else's work.
    foreign_load = max(0.0, max(before["loadavg_1m"], after["loadavg_1m"]) - own_cores)
    busy = foreign_load > 0.5 * cores or (steal_share is not None and steal_share > 0.05)
    return {
        "loadavg_1m_before": round(before["loadavg_1m"], 2),
        "loadavg_1m_after": round(after["loadavg_1m"], 2),
        "foreign_load": round(foreign_load, 2),
        "steal_share": None if steal_share is None else round(steal_share, 4),
        "busy": busy,
    }


def settings() -> dict[str, Any]:
    """CPU affinity and thread-related environment of this process."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"affinity": affinity, "env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}}
