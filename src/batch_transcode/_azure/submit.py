"""Adding tasks: collections of at most 100, in parallel, idempotent on retry.

``BatchClient.create_tasks`` re-queues a chunk after any 5xx with no delay and
no cap of its own (azure-batch 15.x ``azure/batch/_operations/_patch.py``), so chunks are submitted here with
``create_task_collection`` under the session's bounded retry policy:

- a task the service reports as ``TaskExists`` was added by an earlier attempt
  whose answer was lost: success (task ids are deterministic);
- tasks reported with a server error are resubmitted alone, with backoff;
- a task rejected as a client error fails the submission, naming it;
- ``RequestBodyTooLarge`` splits the chunk in two.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from azure.batch import BatchClient
from azure.batch import models as bm

from batch_transcode import _retry
from batch_transcode._azure._calls import call
from batch_transcode._config import RetryPolicy
from batch_transcode._errors import AzureError

__all__ = ["MAX_TASKS_PER_REQUEST", "submit_tasks"]

log = logging.getLogger(__name__)

MAX_TASKS_PER_REQUEST = 100


class _ServerErrors(Exception):
    """Some tasks of a collection got a server error: try those again."""

    def __init__(self, count: int, code: str | None) -> None:
        super().__init__(f"{count} task(s) not added: server error {code or ''}".strip())


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _ServerErrors) or _retry.is_transient(exc)


def _submit_chunk(
    client: BatchClient,
    job_id: str,
    chunk: list[bm.BatchTaskCreateOptions],
    policy: RetryPolicy,
    cancel: threading.Event | None,
) -> None:
    pending = list(chunk)
    first, last = chunk[0].id, chunk[-1].id

    def once() -> None:
        nonlocal pending
        if cancel is not None and cancel.is_set():
            return  # the run is being cancelled: its job is deleted, tasks and all
        result = client.create_task_collection(job_id, bm.BatchTaskGroup(task_values=pending))
        by_id = {t.id: t for t in pending}
        again: list[bm.BatchTaskCreateOptions] = []
        rejected: list[str] = []
        server_code: str | None = None
        seen: set[str] = set()
        for r in result.result_values or []:
            seen.add(r.task_id)
            code = r.error.code if r.error is not None else None
            if r.status == "success" or code == "TaskExists":
                continue
            if r.status == "servererror":
                server_code = code
                if r.task_id in by_id:
                    again.append(by_id[r.task_id])
            else:
                message = r.error.message.value if r.error is not None and r.error.message else ""
                rejected.append(f"{r.task_id}: {code or r.status} {message}".strip())
        again += [t for t in pending if t.id not in seen]  # not answered for: send again
        if rejected:
            raise AzureError(
                f"the service rejected {len(rejected)} task(s) of job {job_id}:\n  "
                + "\n  ".join(rejected[:10]),
                code="TaskRejected",
                job_id=job_id,
            )
        if again:
            pending = again
            raise _ServerErrors(len(again), server_code)

    try:
        call(policy, f"add tasks {first}..{last} to job {job_id}", once, retry_on=_retryable, job_id=job_id)
    except AzureError as exc:
        if exc.code == "RequestBodyTooLarge" and len(pending) > 1:
            half = len(pending) // 2
            log.info("task collection too large; splitting %d tasks in two", len(pending))
            _submit_chunk(client, job_id, pending[:half], policy, cancel)
            _submit_chunk(client, job_id, pending[half:], policy, cancel)
            return
        raise
    except _ServerErrors as exc:
        raise AzureError(
            f"adding tasks {first}..{last} to job {job_id} kept failing: {exc}", job_id=job_id
        ) from exc


def submit_tasks(
    client: BatchClient,
    job_id: str,
    tasks: Sequence[bm.BatchTaskCreateOptions],
    policy: RetryPolicy,
    *,
    concurrency: int = 4,
    cancel: threading.Event | None = None,
) -> int:
    """Add ``tasks`` to ``job_id`` in collections of at most 100, ``concurrency`` at once.

    Returns the number of collection requests that succeeded first time or after
    retries; raises a batch_transcode error when some tasks could not be added.
    """
    chunks = [list(tasks[i : i + MAX_TASKS_PER_REQUEST]) for i in range(0, len(tasks), MAX_TASKS_PER_REQUEST)]
    if not chunks:
        return 0
    workers = max(1, min(concurrency, len(chunks)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bt-submit") as pool:
        futures = [pool.submit(_submit_chunk, client, job_id, chunk, policy, cancel) for chunk in chunks]
        errors: list[BaseException] = []
        for fut in futures:
            exc = fut.exception()
            if exc is not None:
                errors.append(exc)
    if errors:
        raise errors[0]
    log.info("added %d tasks to job %s in %d collection(s)", len(tasks), job_id, len(chunks))
    return len(chunks)
