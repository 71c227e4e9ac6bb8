"""The ``calibrate`` stage: this machine's roofline (fp32/int8 GEMM throughput, memory bandwidth at the
pipeline's threads, a CPU canary), measured by ``edgekit.bench.roofline``.

Example:
    >>> run(params, Layout(Path(".")))["fp32_gemm_gflops"]
"""

from __future__ import annotations

from typing import Any

from edgekit.bench.roofline import calibrate
from edgekit.fsutil import write_json
from edgekit.layout import Layout
from edgekit.params import Params


def run(params: Params, layout: Layout) -> dict[str, Any]:
    """Write outputs/roofline.json and return it."""
    record = calibrate(params.threads)
    write_json(layout.roofline, record)
    return record
