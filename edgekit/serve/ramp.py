"""Blue-green with a gradual ramp: the candidate takes a growing share of requests, step by step, while the
version in production serves the rest; a step is judged once the candidate has answered enough requests at it,
and a breach of the policy's live limits sends all traffic back at once.

The share is exact, not random: request n goes to the candidate when floor(n x share) rises, so after N requests
the candidate has answered floor(N x share) of them and a test can count on it.

Example:
    >>> ramp = Ramp(policy, candidate_p99_ms=4.2)
    >>> ramp.route()          # True: this request goes to the candidate
    >>> ramp.observe(latency_ms=3.1, error=False)   # a decision when the step is judged, else None
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.serve.policy import ServingPolicy


@dataclass
class StepWindow:
    share: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    stable_latencies_ms: list[float] = field(default_factory=list)   # production's answers over the same period

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    def figures(self) -> dict[str, Any]:
        p99 = float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else None
        stable = float(np.percentile(self.stable_latencies_ms, 99)) if self.stable_latencies_ms else None
        return {"share": self.share, "requests": self.requests, "errors": self.errors,
                "error_rate": round(self.errors / self.requests, 6) if self.requests else None,
                "p50_ms": round(float(np.median(self.latencies_ms)), 4) if self.latencies_ms else None,
                "p99_ms": round(p99, 4) if p99 is not None else None,
                "stable_requests": len(self.stable_latencies_ms), "stable_p99_ms": round(stable, 4) if stable is not None else None}


class Ramp:
    """The candidate's share of traffic and the verdict at each step (thread-safe: the server answers
    requests concurrently).

    Args:
        policy: steps, requests per step, live limits.
        candidate_p99_ms: the candidate's benchmarked p99, the base of a ``tolerance`` limit.
    """

    def __init__(self, policy: ServingPolicy, candidate_p99_ms: float | None):
        self.policy = policy
        self.p99_limit_ms = policy.p99_limit_ms(candidate_p99_ms)
        self.status = "ramping"          # then "rolled_back" or "completed"
        self.step = 0
        self.window = StepWindow(policy.ramp_steps[0])
        self._routed = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._control_p99_ms: float | None = None   # production's live p99 at the latest step that had enough of its answers
        self.timeline: list[dict[str, Any]] = [self._mark("start", share=self.window.share)]

    @property
    def share(self) -> float:
        return self.window.share if self.status == "ramping" else (1.0 if self.status == "completed" else 0.0)

    def route(self) -> bool:
        """Whether the next request goes to the candidate."""
        with self._lock:
            share = self.share
            self._routed += 1
            return math.floor(self._routed * share) > math.floor((self._routed - 1) * share)

    def observe_stable(self, latency_ms: float) -> None:
        """Count one answer of the production version: the control the candidate's latency is judged beside."""
        with self._lock:
            if self.status == "ramping":
                self.window.stable_latencies_ms.append(latency_ms)

    def step_limit_ms(self, figures: dict[str, Any]) -> float:
        """The step's p99 limit. With a ``tolerance``, latency production shows over the same period (queueing under
        load, a busy machine) is not the candidate's fault: the limit is at least tolerance x production's live p99,
        from this step, or from the last step that had production answers (the 100% step has none)."""
        if figures.get("stable_requests", 0) >= 10:
            self._control_p99_ms = figures["stable_p99_ms"]
        control = self._control_p99_ms
        if self.policy.p99_max_ms is not None or control is None or self.policy.p99_tolerance is None:
            return self.p99_limit_ms
        return max(self.p99_limit_ms, self.policy.p99_tolerance * control)

    def observe(self, latency_ms: float, error: bool) -> dict[str, Any] | None:
        """Count one candidate answer at the current step; the step's verdict when this answer decides it."""
        with self._lock:
            if self.status != "ramping":
                return None
            self.window.latencies_ms.append(latency_ms)
            self.window.errors += bool(error)
            return self._judge()

    def _judge(self) -> dict[str, Any] | None:
        allowed_errors = self.policy.error_rate_max * self.policy.min_requests
        if self.window.errors > allowed_errors:  # already more errors than the whole step may have: no need to wait
            return self._roll_back(f"{self.window.errors} errors in {self.window.requests} requests exceed the step's "
                                   f"allowance (error_rate max {self.policy.error_rate_max} x {self.policy.min_requests})")
        if self.window.requests < self.policy.min_requests:
            return None
        figures = self.window.figures()
        limit = self.step_limit_ms(figures)
        if figures["p99_ms"] > limit:
            control = self._control_p99_ms
            return self._roll_back(f"live p99 {figures['p99_ms']:.2f} ms > limit {limit:.2f} ms"
                                   + (f" (production's live p99 {control:.2f} ms)" if control else ""))
        if figures["error_rate"] > self.policy.error_rate_max:
            return self._roll_back(f"error rate {figures['error_rate']:.4f} > {self.policy.error_rate_max}")
        return self._advance()

    def _advance(self) -> dict[str, Any]:
        figures = self.window.figures()
        passed = self._mark("step passed", limit_ms=round(self.step_limit_ms(figures), 4), **figures)
        self.timeline.append(passed)
        if self.step + 1 == len(self.policy.ramp_steps):
            self.status = "completed"
            self.timeline.append(self._mark("completed", share=1.0))
            return {"decision": "completed", "step": passed}
        self.step += 1
        self.window = StepWindow(self.policy.ramp_steps[self.step])
        self.timeline.append(self._mark("step", share=self.window.share))
        return {"decision": "advanced", "step": passed}

    def _roll_back(self, reason: str) -> dict[str, Any]:
        self.status = "rolled_back"
        figures = self.window.figures()
        self.timeline.append(self._mark("rolled back", reason=reason, limit_ms=round(self.step_limit_ms(figures), 4), **figures))
        return {"decision": "rolled_back", "reason": reason, "step": self.window.figures()}

    def _mark(self, what: str, **fields: Any) -> dict[str, Any]:
        elapsed = time.monotonic() - self._started
        return {"event": what, "step": self.step, "elapsed_s": round(elapsed, 3),
                "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), **fields}  # noqa: UP017

    def evidence(self) -> dict[str, Any]:
        """What the registry event records: the limits, every step's figures, the outcome."""
        return {"status": self.status, "p99_limit_ms": round(self.p99_limit_ms, 4), "policy": self.policy.to_dict(),
                "timeline": list(self.timeline)}
