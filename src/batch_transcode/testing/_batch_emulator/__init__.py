"""A faithful offline Azure Batch service (REST api-version 2025-06-01) for tests.

``BatchEmulator`` serves the Batch data-plane REST API on a loopback port, so that the
unmodified ``azure.batch.BatchClient`` can talk to it. It

- verifies Shared Key signatures (and, in TLS mode, accepts any non-empty bearer token);
- validates every request body against the official REST spec shipped in
  ``batch_transcode/testing/_spec`` (unknown properties are rejected);
- enforces the service's limits with the service's error codes and error body format;
- executes tasks for real: nodes are directories under ``workdir``, start tasks and
  tasks run as processes with the ``AZ_BATCH_*`` environment, resource files are
  downloaded through their SAS URLs, output files are uploaded to their container URLs;
- runs task dependencies (``dependsOn``, exit conditions' ``dependencyAction``) as the
  service documents them (``_dependencies``);
- injects switchable, seeded faults (:class:`Faults`);
- answers as the recorded service does: the values the service fills in come from one
  table per model (``_defaults``), enums in the service's casing, ``DataServiceVersion``
  on every answer; the account has a pool allocation mode (Spot nodes only in
  ``"UserSubscription"``). docs/offline-testing.md ("Fidelity") has the replay figures.

Approximations: autoscale formulas are not evaluated (nodes = min(pending tasks, the
largest integer in the formula)); command lines are split with ``shlex`` and executed
without a shell, like Linux Batch; containers, user identities and application packages
are accepted and ignored (tasks run on the host); ``AuthenticationFailed`` is answered
with 403 for a bad signature, as the service documents, and 401 when no credentials
are sent.
"""

from ._emulator import BatchEmulator
from ._faults import Faults
from ._model import JobSnapshot, NodeRecord, PoolSnapshot, TaskSnapshot
from ._server import OperationCounts, RequestRecord

__all__ = [
    "BatchEmulator",
    "Faults",
    "JobSnapshot",
    "NodeRecord",
    "OperationCounts",
    "PoolSnapshot",
    "RequestRecord",
    "TaskSnapshot",
]
