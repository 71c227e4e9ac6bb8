"""The stop rule's optional values: what ``sample`` does when a request leaves them out.

The harness always sends ``min_samples_per_process`` and ``hard_stop_seconds`` (tests/test_coverage.py
times that rule); ``benchmarks/harness_overhead.py`` and other direct callers leave them out.
"""

from __future__ import annotations

import math

import pytest
from test_coverage import FakeBackend, FakeClock

from edgekit.bench import worker

RULE = {"min_iterations": 3, "min_seconds": 0.0, "max_seconds": 2.0, "target_ci_half_width": 0.02}


def test_without_min_samples_max_seconds_stops_at_the_first_call_past_it():
    clock = FakeClock()
    result = worker.sample(FakeBackend(clock, [0.9, 0.5]), {}, RULE, clock=clock)  # no convergence check before 10 calls
    assert (result["stopped_by"], len(result["samples_ms"])) == ("max_seconds", 4)  # 0.9 + 0.5 + 0.5 + 0.5 s
    assert result["sampling_s"] == pytest.approx(2.4)


def test_without_a_hard_stop_only_max_seconds_ends_slow_calls():
    clock = FakeClock()
    result = worker.sample(FakeBackend(clock, [1000.0, 999.0]), {}, {**RULE, "min_samples_per_process": 3}, clock=clock)
    assert (result["stopped_by"], len(result["samples_ms"])) == ("max_seconds", 3)


def test_the_stop_rule_takes_its_own_keys_of_a_worker_request():
    request = {**RULE, "runtime": "onnxruntime", "threads": 2}
    assert worker.StopRule.from_request(request) == worker.StopRule(3, 0.0, 2.0, 0.02, 1, math.inf)
    with pytest.raises(KeyError, match="max_seconds"):
        worker.StopRule.from_request({k: v for k, v in request.items() if k != "max_seconds"})
