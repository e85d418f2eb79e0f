"""Switchable, seeded faults of the emulated Batch service."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal

RequestFault = Literal["throttle", "error", "slow", "drop"]


@dataclass(frozen=True, kw_only=True)
class Faults:
    """What goes wrong, and how often. Rates are fractions in [0, 1] of Batch requests.

    - ``throttle_rate``: answer 429 ``TooManyRequests`` with a ``Retry-After`` header
      (``retry_after_seconds``) without processing the request.
    - ``error_rate``: answer 500 ``InternalServerError`` or 503 ``ServerBusy`` (about half each)
      without processing the request.
    - ``drop_after_processing_rate``: process the request, then close the connection
      without an answer (the client cannot know whether it happened).
    - ``slow_rate`` / ``slow_seconds``: wait ``slow_seconds`` before answering.
    - ``start_task_failure``: every start task exits non-zero with a message on stderr.
    - ``allocation_failure``: every pool resize ends with ``resizeErrors``
      (``AllocationFailed``) and no nodes.
    - ``preempt_rate``: fraction of task runs on Spot (low-priority) nodes whose node is
      preempted while the task runs; the task goes back to ``active`` and runs again
      (``requeueCount`` grows, ``retryCount`` does not). Dedicated nodes are never preempted,
      as in the service.
    - ``stale_counts_seconds``: Get Task Counts answers as of that many seconds ago: a
      task that completed more recently is still counted as running (the service says
      its counts "may not always be up to date").
    - ``missed_count_rate``: fraction of completed tasks the counts miss for
      ``missed_count_seconds`` more (a missed update, corrected only later by the
      service's consistency pass). Chosen per task from ``seed`` and the task id.
    - ``operations``: if given, request faults apply only to these operations (spec
      operationIds such as ``Tasks_CreateTaskCollection`` or classic names such as
      ``Task_AddCollection``).

    Random decisions come from ``random.Random(seed)``: the same seed and the same
    sequence of requests give the same faults.
    """

    seed: int = 0
    throttle_rate: float = 0.0
    retry_after_seconds: int = 1
    error_rate: float = 0.0
    drop_after_processing_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 1.0
    start_task_failure: bool = False
    allocation_failure: bool = False
    allocation_failure_code: str = "AllocationFailed"
    preempt_rate: float = 0.0
    stale_counts_seconds: float = 0.0
    missed_count_rate: float = 0.0
    missed_count_seconds: float = 10.0
    operations: frozenset[str] | None = field(default=None)

    def __post_init__(self) -> None:
        for name in (
            "throttle_rate",
            "error_rate",
            "drop_after_processing_rate",
            "slow_rate",
            "preempt_rate",
            "missed_count_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} must be between 0 and 1, got {value!r}")
        if self.slow_seconds < 0 or self.retry_after_seconds < 0:
            raise ValueError("Faults.slow_seconds and Faults.retry_after_seconds must not be negative")
        if self.operations is not None and not isinstance(self.operations, frozenset):
            object.__setattr__(self, "operations", frozenset(self.operations))


class FaultInjector:
    """Rolls the dice for one ``Faults`` setting (thread-safe)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - fault injection, not cryptography
        self._lock = threading.Lock()

    def _roll(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def applies_to(self, operation: str, aliases: tuple[str, ...] = ()) -> bool:
        ops = self.faults.operations
        return ops is None or operation in ops or any(a in ops for a in aliases)

    def request_faults(self, operation: str, aliases: tuple[str, ...] = ()) -> list[RequestFault]:
        """The faults for one request, in the order they act."""
        f = self.faults
        if not self.applies_to(operation, aliases):
            return []
        out: list[RequestFault] = []
        if self._roll(f.slow_rate):
            out.append("slow")
        if self._roll(f.throttle_rate):
            out.append("throttle")
            return out
        if self._roll(f.error_rate):
            out.append("error")
            return out
        if self._roll(f.drop_after_processing_rate):
            out.append("drop")
        return out

    def pick_server_error(self) -> int:
        with self._lock:
            return 500 if self._rng.random() < 0.5 else 503

    def preempt(self) -> bool:
        return self._roll(self.faults.preempt_rate)

    def counts_may_lag(self) -> bool:
        """Whether the task counts lag at all (else :meth:`counts_lag` is 0 for every task)."""
        return self.faults.stale_counts_seconds > 0 or self.faults.missed_count_rate > 0

    def max_lag(self) -> float:
        """The most seconds the task counts lag behind any completion."""
        f = self.faults
        return f.stale_counts_seconds + (f.missed_count_seconds if f.missed_count_rate > 0 else 0.0)

    def counts_lag(self, task_id: str) -> float:
        """Seconds the task counts lag behind a completion of ``task_id``."""
        f = self.faults
        lag = f.stale_counts_seconds
        if f.missed_count_rate > 0:
            # per task, not per request: the same task stays missed until corrected
            draw = random.Random(f"{f.seed}:{task_id}").random()  # noqa: S311 - not crypto
            if draw < f.missed_count_rate:
                lag += f.missed_count_seconds
        return lag
