"""``BatchEmulator``: the emulated Batch account as a context manager."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from ._faults import FaultInjector, Faults
from ._model import JobSnapshot, PoolSnapshot, TaskSnapshot
from ._server import BatchHTTPServer, OperationCounts, RequestRecord, make_server
from ._service import Service
from ._state import POOL_ALLOCATION_MODES, PoolAllocationMode

LOG = logging.getLogger(__name__)

#: Shared Key used when none is given (a fixed, public test key: never a real account's).
DEFAULT_KEY = "ZW11bGF0b3Ita2V5LWZvci1iYXRjaC10cmFuc2NvZGUtdGVzdHMtb25seS0wMDAwMA=="


class BatchEmulator:
    """An Azure Batch account served on a loopback port.

    ``BatchEmulator(account="devbatch", key=..., workdir=None, tls=None, faults=None,
    allocation_delay=0.0, host="127.0.0.1", port=0, pool_allocation_mode="UserSubscription")``.
    ``start()`` (or ``with``) binds and serves; ``stop()`` stops serving and kills every
    process it started.

    ``pool_allocation_mode`` is the account's: ``"UserSubscription"`` allocates Spot
    nodes; ``"BatchService"`` (the default kind of Batch account) allocates none since
    low-priority nodes were retired on 30 September 2025: a resize asking for them ends
    with an ``AccountLowPriorityCoreQuotaReached`` resize error. Switch it with
    :meth:`set_pool_allocation_mode`.
    """

    def __init__(
        self,
        *,
        account: str = "devbatch",
        key: str = DEFAULT_KEY,
        workdir: Path | str | None = None,
        tls: tuple[str, str] | None = None,
        faults: Faults | None = None,
        allocation_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        pool_allocation_mode: PoolAllocationMode = "UserSubscription",
    ) -> None:
        _check_mode(pool_allocation_mode)
        self.account = account
        self._pool_allocation_mode: PoolAllocationMode = pool_allocation_mode
        self.key = key
        self._tls = tls
        self._host = host
        self._port = port
        self._own_workdir = workdir is None
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self._faults = faults or Faults()
        self._allocation_delay = allocation_delay
        self._server: BatchHTTPServer | None = None
        self._service: Service | None = None
        self._thread: threading.Thread | None = None
        self._records: list[RequestRecord] = []
        self._records_lock = threading.Lock()
        self._state = "unopened"
        self.workdir: Path | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> BatchEmulator:
        if self._state != "unopened":
            raise RuntimeError(f"BatchEmulator cannot start: it is {self._state}")
        self._state = "open"
        try:
            if self._workdir_arg is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="batch-emulator-"))
            else:
                self.workdir = self._workdir_arg
                self.workdir.mkdir(parents=True, exist_ok=True)
            self._service = Service(
                account=self.account,
                workdir=self.workdir,
                faults=self._faults,
                allocation_delay=self._allocation_delay,
                pool_allocation_mode=self._pool_allocation_mode,
            )
            server = make_server(self._host, self._port, self._tls)
            server.service = self._service
            server.account = self.account
            server.key = self.key
            server.tls = self._tls is not None
            server.records = self._records
            server.records_lock = self._records_lock
            self._server = server
            self._service.endpoint = self.endpoint
            self._service.start()
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="batch-emulator-http",
                daemon=True,
            )
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        LOG.info("Batch emulator for account %s serving at %s", self.account, self.endpoint)
        return self

    def stop(self) -> None:
        """Stop serving, kill every task and start-task process; harmless twice."""
        if self._state == "closed":
            return
        self._state = "closed"
        if self._server is not None:
            self._server.shutdown() if self._thread is not None else None
            self._server.server_close()
        if self._service is not None:
            self._service.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        LOG.info("Batch emulator for account %s stopped", self.account)

    def __enter__(self) -> BatchEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ properties

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("BatchEmulator is not started")
        host, port = self._server.server_address[:2]
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host!s}:{port}"

    def _svc(self) -> Service:
        if self._service is None:
            raise RuntimeError("BatchEmulator is not started")
        return self._service

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Switch faults now (a fresh random sequence from ``faults.seed``)."""
        self._faults = faults
        if self._service is not None:
            self._service.injector = FaultInjector(faults)

    @property
    def pool_allocation_mode(self) -> PoolAllocationMode:
        return self._pool_allocation_mode

    def set_pool_allocation_mode(self, mode: PoolAllocationMode) -> None:
        """Switch the account's pool allocation mode (applies to resizes from now on)."""
        _check_mode(mode)
        self._pool_allocation_mode = mode
        if self._service is not None:
            with self._service.lock:
                self._service.pool_allocation_mode = mode

    # ------------------------------------------------------------------ inspection

    def pools(self) -> list[PoolSnapshot]:
        return self._svc().snapshot_pools()

    def jobs(self) -> list[JobSnapshot]:
        return self._svc().snapshot_jobs()

    def tasks(self, job_id: str) -> list[TaskSnapshot]:
        return self._svc().snapshot_tasks(job_id)

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._records_lock:
            return list(self._records)

    def request_counts(self) -> OperationCounts:
        with self._records_lock:
            return OperationCounts(r.operation or f"{r.method} {r.path}" for r in self._records)

    def drain_request_log(self) -> list[RequestRecord]:
        """The request log so far, emptied in the same step (no record is lost or seen twice):
        for long runs that summarise records as they go instead of keeping every body."""
        with self._records_lock:
            records = list(self._records)
            self._records.clear()
        return records

    def clear_request_log(self) -> None:
        with self._records_lock:
            self._records.clear()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no task is running or runnable; False on timeout."""
        return self._svc().wait_idle(timeout)


def _check_mode(mode: str) -> None:
    if mode not in POOL_ALLOCATION_MODES:
        raise ValueError(f"pool_allocation_mode must be one of {POOL_ALLOCATION_MODES}, got {mode!r}")
