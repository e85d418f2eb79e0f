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
import queue
import threading
import time
from concurrent.futures import Future
from typing import cast

from azure.batch import BatchClient
from azure.batch import models as bm

from batch_transcode import _retry
from batch_transcode._azure._calls import call
from batch_transcode._azure.staging import CancelFlag
from batch_transcode._config import RetryPolicy
from batch_transcode._errors import AzureError
from batch_transcode._telemetry import ContextExecutor, carry

__all__ = ["MAX_TASKS_PER_REQUEST", "TaskFeed"]

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
    cancel: CancelFlag | None,
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


#: Hurried collections are at least this far apart (seconds), so that hungry nodes cost
#: at most one collection request per this many seconds beyond the full ones.
HURRY_GAP = 2.0

_HURRY = object()


class TaskFeed:
    """Adds tasks to a job as they come: collections of at most 100, each sent when it is
    full or when ``linger`` seconds passed since its first task (``None``: only when full,
    and at :meth:`close`), ``concurrency`` at once. Each partial collection doubles the
    linger, up to ``linger_max``: the first tasks start at once, and a slow trickle of
    inputs costs a few requests, not one per input.

    :meth:`hurry` says the job has no task waiting for a node: what is gathered is sent
    at once (at most every :data:`HURRY_GAP` seconds) and the linger starts afresh, so
    that a long linger never leaves nodes idle while inputs are staged.

    :meth:`add` returns at once; :meth:`close` sends what is left, waits for every
    collection and raises the first error (a batch_transcode error naming the tasks).
    Once ``cancel`` is set no new collection is sent (the run deletes the job).
    """

    def __init__(
        self,
        client: BatchClient,
        job_id: str,
        policy: RetryPolicy,
        *,
        cancel: CancelFlag | None = None,
        linger: float | None = 0.5,
        linger_max: float = 8.0,
        concurrency: int = 4,
    ) -> None:
        self._client = client
        self._job_id = job_id
        self._policy = policy
        self._cancel = cancel
        self._linger = linger
        self._linger_max = linger_max
        self._queue: queue.SimpleQueue[bm.BatchTaskCreateOptions | object | None] = queue.SimpleQueue()
        self._pool = ContextExecutor(max_workers=concurrency, thread_name_prefix="bt-submit")
        self._futures: list[Future[None]] = []
        self.tasks = 0
        self.collections = 0
        self._batcher = threading.Thread(target=carry(self._batch), name=f"bt-feed-{job_id}", daemon=True)
        self._batcher.start()

    def add(self, task: bm.BatchTaskCreateOptions) -> None:
        self._queue.put(task)

    def hurry(self) -> None:
        """Nodes wait for tasks: send the gathered ones now (see the class notes)."""
        self._queue.put(_HURRY)

    def _send(self, chunk: list[bm.BatchTaskCreateOptions]) -> None:
        if chunk and not (self._cancel is not None and self._cancel.is_set()):
            self.tasks += len(chunk)
            self.collections += 1
            args = (self._client, self._job_id, list(chunk), self._policy, self._cancel)
            self._futures.append(self._pool.submit(_submit_chunk, *args))
        chunk.clear()

    def _batch(self) -> None:
        chunk: list[bm.BatchTaskCreateOptions] = []
        due = 0.0
        first_linger = self._linger
        hurried = -HURRY_GAP
        while True:
            try:
                wait = None if not chunk or self._linger is None else max(0.0, due - time.monotonic())
                task = self._queue.get(timeout=wait)
            except queue.Empty:
                self._send(chunk)
                if self._linger is not None:
                    self._linger = min(self._linger_max, self._linger * 2)
                continue
            if task is None:
                self._send(chunk)
                return
            if task is _HURRY:
                now = time.monotonic()
                if chunk and now - hurried >= HURRY_GAP:
                    hurried = now
                    self._send(chunk)
                    self._linger = first_linger
                continue
            if not chunk:
                due = time.monotonic() + (self._linger or 0.0)
            chunk.append(cast(bm.BatchTaskCreateOptions, task))
            if len(chunk) >= MAX_TASKS_PER_REQUEST:
                self._send(chunk)

    def close(self) -> int:
        """Send what is left and wait for every collection; the number of collections."""
        self._queue.put(None)
        self._batcher.join()
        try:
            errors = [exc for fut in self._futures if (exc := fut.exception()) is not None]
        finally:
            self._pool.shutdown(wait=True)
        if errors:
            raise errors[0]
        if self.tasks:
            log.info(
                "added %d tasks to job %s in %d collection(s)", self.tasks, self._job_id, self.collections
            )
        return self.collections
