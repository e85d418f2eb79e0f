"""The one way this package calls the Batch service: retry, translate, and the two
answers that mean success after all.

:func:`call` runs one operation under the session's :class:`RetryPolicy`
(:func:`batch_transcode._retry.call`: transient errors only, attempts and time
capped) and turns what still fails into a :class:`~batch_transcode.AzureError`
carrying the job, task and pool ids (:func:`~batch_transcode._azure._errors.translate`).

- ``created="PoolExists"`` (or ``JobExists``...): a create whose first answer was lost
  (a dropped connection after the POST was sent is not retried by azure-core,
  ``azure/core/pipeline/policies/_retry.py``) may have been carried out, so on a
  *retry* that code is success. Only for ids that embed the session id: no other
  client makes a resource of that name.
- ``missing_ok=True``: "not found" or "being deleted" is success and the call returns
  ``None`` (the Azure SDK guidelines' rule for deletes: already gone is not an error).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal, TypeVar, overload

from azure.core import exceptions as az

from batch_transcode import _retry
from batch_transcode._azure._errors import is_code, is_gone, translate
from batch_transcode._config import RetryPolicy

__all__ = ["call"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@overload
def call(
    policy: RetryPolicy,
    what: str,
    fn: Callable[[], T],
    *,
    missing_ok: Literal[False] = False,
    created: str | None = None,
    retry_on: Callable[[BaseException], bool] = _retry.is_transient,
    job_id: str | None = None,
    task_id: str | None = None,
    pool_id: str | None = None,
) -> T: ...


@overload
def call(
    policy: RetryPolicy,
    what: str,
    fn: Callable[[], T],
    *,
    missing_ok: Literal[True],
    created: str | None = None,
    retry_on: Callable[[BaseException], bool] = _retry.is_transient,
    job_id: str | None = None,
    task_id: str | None = None,
    pool_id: str | None = None,
) -> T | None: ...


def call(
    policy: RetryPolicy,
    what: str,
    fn: Callable[[], T],
    *,
    missing_ok: bool = False,
    created: str | None = None,
    retry_on: Callable[[BaseException], bool] = _retry.is_transient,
    job_id: str | None = None,
    task_id: str | None = None,
    pool_id: str | None = None,
) -> T | None:
    """``fn()`` under ``policy``; ``what`` names it for logs and errors ("create pool bt-...")."""
    attempts = 0

    def once() -> T | None:
        nonlocal attempts
        attempts += 1
        try:
            return fn()
        except az.ResourceExistsError as exc:
            if created is not None and attempts > 1 and is_code(exc, created):
                log.info("%s: it already exists from an earlier attempt", what)
                return None
            raise

    try:
        return _retry.call(policy, what, once, retry_on=retry_on)
    except az.AzureError as exc:
        if missing_ok and is_gone(exc):
            log.debug("%s: already gone", what)
            return None
        raise translate(exc, what, job_id=job_id, task_id=task_id, pool_id=pool_id) from exc
