"""Operation-level retries: the one module that knows tenacity.

The Azure SDK pipeline already retries transport errors and some responses
(azure-core ``azure/core/pipeline/policies/_retry.py``: any answer with
``Retry-After``; 408/429/500/502/503/504 for idempotent methods; POST only on
500/503/504 answers, never after a dropped connection); what it does not retry
is an *operation* whose POST was cut off after it was sent, or one that kept
failing past the SDK's own attempts.
:func:`call` wraps such operations (pool/job creation, task collections,
polls, deletes) with the user's :class:`~batch_transcode.RetryPolicy`:

- only what :func:`is_transient` names is retried: HTTP 408/429/5xx answers,
  and connection errors (``ServiceRequestError``: the request never left;
  ``ServiceResponseError``: the answer never came). A 4xx client error
  (bad request, conflict, not found, authentication) is never retried;
- attempts *and* total time are capped; waits grow exponentially with
  jitter, and a ``Retry-After`` header is honoured up to ``wait_max``;
- the last error is re-raised as it is (``reraise``), for the caller to
  translate;
- each scheduled retry is logged at WARNING with the attempt, the wait and
  the cause.

``set_testing(True)`` turns the waits off so that fault tests run fast
(like stamina's ``set_testing``); the attempt cap stays.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

import tenacity
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from batch_transcode._config import RetryPolicy

__all__ = ["backoff", "call", "is_transient", "retry_after", "set_testing"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses worth trying again: timeout, throttling, and server-side failures.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_testing = threading.Event()


def set_testing(on: bool) -> None:
    """Turn retry waits off (``True``) or back on. Attempt caps still apply."""
    if on:
        _testing.set()
    else:
        _testing.clear()


def is_transient(exc: BaseException) -> bool:
    """True for errors that may succeed when tried again unchanged."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        return status is not None and (status in TRANSIENT_STATUSES or status >= 500)
    return False


def retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` seconds an HTTP error asked for, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    headers = {str(k).lower(): v for k, v in headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """The wait before retry number ``attempt`` (1 for the first): ``wait_initial``
    doubling up to ``wait_max``, plus up to ``wait_jitter`` of jitter; zero when testing.
    The one backoff formula of the package: operations (:func:`call`) and the storage
    client's transport retries (``_azure._clients``) both wait by it."""
    if _testing.is_set():
        return 0.0
    exp = policy.wait_initial * (2 ** max(0, attempt - 1))
    return float(min(policy.wait_max, exp)) + random.uniform(0.0, policy.wait_jitter)  # noqa: S311 - jitter


class _Wait(tenacity.wait.wait_base):
    """:func:`backoff`, raised to the server's Retry-After; zero when testing."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        if _testing.is_set():
            return 0.0
        p = self.policy
        wait = backoff(p, retry_state.attempt_number)
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if exc is not None:
            asked = retry_after(exc)
            if asked is not None:
                wait = max(wait, asked)
        return float(min(wait, max(p.wait_max, p.wait_initial)))


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    status = getattr(exc, "status_code", None)
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {first}"


def call(
    policy: RetryPolicy,
    operation: str,
    fn: Callable[[], T],
    *,
    retry_on: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Run ``fn()`` under ``policy``, retrying the errors ``retry_on`` accepts.

    ``operation`` names what is being tried, for the log ("create pool bt-...").
    """

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "retrying %s: attempt %d of %d failed (%s); next attempt in %.1fs",
            operation,
            state.attempt_number,
            policy.attempts,
            _describe(exc),
            wait,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts) | tenacity.stop_after_delay(policy.timeout),
        wait=_Wait(policy),
        retry=tenacity.retry_if_exception(retry_on),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
