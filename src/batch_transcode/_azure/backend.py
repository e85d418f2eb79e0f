"""The Azure Batch backend: the :class:`~batch_transcode._backend.AttachableBackend` of an
Azure session.

``open`` provisions the session (:func:`~batch_transcode._azure.opened.open_session`)
or ``attach`` takes one over (:func:`~batch_transcode._azure.attach.attach`); either
way the backend then holds one frozen :class:`~batch_transcode._azure.opened.OpenSession`.
``run`` converts a request as one job (:class:`~batch_transcode._azure.run.AzureRun`),
``resume`` collects an adopted job. What the session's runs share and change (the jobs
made so far, the blobs already uploaded) lives here, not in the frozen session.
"""

from __future__ import annotations

import threading

from batch_transcode._azure import attach as attaching
from batch_transcode._azure.manifest import Manifest
from batch_transcode._azure.opened import OpenSession, open_session
from batch_transcode._azure.run import AzureRun
from batch_transcode._azure.staging import UploadLedger
from batch_transcode._backend import RunRequest
from batch_transcode._config import AzureConfig
from batch_transcode._errors import SessionStateError
from batch_transcode._teardown import Teardown

__all__ = ["AzureBackend"]


class AzureBackend:
    """Runs each file as one Azure Batch task, one job per request."""

    name = "azure"

    def __init__(self, config: AzureConfig) -> None:
        self.config = config
        self._session: OpenSession | None = None
        self._job_ids: list[str] = []
        self._ledger = UploadLedger()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<AzureBackend session={self.session_id} pool={self.pool_id}>"

    @property
    def session(self) -> OpenSession:
        """The open session; :class:`SessionStateError` before ``open`` or ``attach``."""
        if self._session is None:
            raise SessionStateError("the Azure backend is not open")
        return self._session

    @property
    def session_id(self) -> str | None:
        return self._session.session_id if self._session is not None else None

    @property
    def pool_id(self) -> str | None:
        return self._session.pool_id if self._session is not None else None

    @property
    def job_ids(self) -> list[str]:
        """The jobs of this session so far, in order of creation (or the adopted one)."""
        with self._lock:
            return list(self._job_ids)

    def open(self, teardown: Teardown) -> None:
        self._session = open_session(self.config, teardown, self._ledger)

    def attach(self, ident: str, teardown: Teardown) -> Manifest:
        """Take over the job ``ident`` names (see :mod:`batch_transcode._azure.attach`)."""
        self._session, manifest = attaching.attach(self.config, ident, teardown)
        with self._lock:
            self._job_ids.append(manifest.job_id)
        return manifest

    def run(self, request: RunRequest) -> None:
        session = self.session
        with self._lock:
            job_id = session.names.job_id(len(self._job_ids) + 1)
            self._job_ids.append(job_id)
        AzureRun(session, self._ledger, job_id, request).run()

    def resume(self, job_id: str, request: RunRequest) -> None:
        """Watch the adopted job ``job_id`` and report one result per item."""
        AzureRun(self.session, self._ledger, job_id, request).resume()
