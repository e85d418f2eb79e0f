"""``BatchEmulator``: the emulated Batch account as a context manager."""

from __future__ import annotations

import copy
import dataclasses
import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_transcode.testing._serving import StartStop, new_account_key

from ._auth import entra_check
from ._executor import NodeStorage
from ._faults import FaultInjector, Faults
from ._model import JobSnapshot, NodeRecord, PoolSnapshot, TaskSnapshot
from ._server import BatchHTTPServer, OperationCounts, RequestRecord, make_server
from ._service import Service
from ._state import POOL_ALLOCATION_MODES, PoolAllocationMode

if TYPE_CHECKING:
    from batch_transcode.testing._entra import RoleAssignments

LOG = logging.getLogger(__name__)


class BatchEmulator(StartStop):
    """An Azure Batch account served on a loopback port.

    ``BatchEmulator(account="devbatch", key=None, workdir=None, tls=None, faults=None,
    allocation_delay=0.0, host="127.0.0.1", port=0, pool_allocation_mode="UserSubscription",
    ca_bundle=None, roles=None)``. ``start()`` (or ``with``) binds and serves; ``stop()``
    stops serving and kills every process it started.

    ``key``: the account's Shared Key; by default a fresh random one (:attr:`key`), so that
    nobody who has not been given it can run task commands on this machine through it.

    ``pool_allocation_mode`` is the account's: ``"UserSubscription"`` allocates Spot
    nodes; ``"BatchService"`` (the default kind of Batch account) allocates none since
    low-priority nodes were retired on 30 September 2025: a resize asking for them ends
    with an ``AccountLowPriorityCoreQuotaReached`` resize error. Switch it with
    :meth:`set_pool_allocation_mode`.

    ``tls``: (certificate, key) PEM files to serve https; bearer tokens are accepted only
    then. ``roles``: Microsoft Entra ID role assignments: bearer tokens must then be valid
    Batch tokens of a principal holding one of ``batch_roles``, and Shared Key is refused
    (an account whose ``allowedAuthenticationModes`` lack ``SharedKey``). ``ca_bundle``:
    the CA nodes trust when they reach storage over https. ``node_proxy``: the intercept
    proxy (``http://127.0.0.1:PORT``) through which nodes reach URLs with public host names.
    """

    def __repr__(self) -> str:  # the key stays out
        return f"<BatchEmulator account={self.account} {self._state}>"

    def __init__(
        self,
        *,
        account: str = "devbatch",
        key: str | None = None,
        workdir: Path | str | None = None,
        tls: tuple[str, str] | None = None,
        faults: Faults | None = None,
        allocation_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        pool_allocation_mode: PoolAllocationMode = "UserSubscription",
        ca_bundle: str | None = None,
        roles: RoleAssignments | None = None,
        batch_roles: Sequence[str] | None = None,
        node_proxy: str | None = None,
    ) -> None:
        from batch_transcode.testing._entra import BATCH_DATA_ROLES

        _check_mode(pool_allocation_mode)
        self.account = account
        self._pool_allocation_mode: PoolAllocationMode = pool_allocation_mode
        self._ca_bundle = ca_bundle
        self._node_proxy = node_proxy
        self._roles = roles
        self.batch_roles = frozenset(batch_roles) if batch_roles is not None else BATCH_DATA_ROLES
        #: The account's Shared Key (base64).
        self.key = key if key is not None else new_account_key()
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
            roles, accepted = self._roles, self.batch_roles
            server.check_bearer = (
                entra_check(lambda oid: roles.holds_any(oid, accepted)) if roles is not None else None
            )
            self._service.node_storage = NodeStorage(ca_bundle=self._ca_bundle, proxy=self._node_proxy)
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

    def node_log(self) -> list[NodeRecord]:
        """Every node the account allocated, with its allocation and removal times (what
        a pool's nodes cost: each node is billed from allocation to removal)."""
        return self._svc().node_log()

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

    # ------------------------------------------------------------------ management plane

    def add_pool(self, spec: dict[str, Any], *, identities: Sequence[str] = ()) -> str:
        """Create a pool as Azure Resource Manager would (the portal, ``az batch pool create``
        through ARM, Bicep): the only way to give a pool user-assigned identities, which the
        Batch data plane cannot set. ``spec`` is the pool's data-plane JSON (``id``,
        ``vmSize``, ``virtualMachineConfiguration``, ``targetDedicatedNodes``, ...);
        ``identities`` ARM resource ids of user-assigned identities. Returns the pool id."""
        svc = self._svc()
        doc = copy.deepcopy(spec)
        if identities:
            doc["identity"] = {
                "type": "UserAssigned",
                "userAssignedIdentities": [
                    {
                        "resourceId": rid,
                        "principalId": self.identity_principal(rid),
                        "clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"client:{rid.lower()}")),
                    }
                    for rid in identities
                ],
            }
            known = dict(svc.node_storage.identities)
            known.update({rid: self.identity_principal(rid) for rid in identities})
            svc.node_storage = dataclasses.replace(svc.node_storage, identities=known)
        with svc.lock:
            if str(doc["id"]).lower() in svc.pools:
                raise ValueError(f"pool {doc['id']!r} already exists")
            pool = svc.new_pool(str(doc["id"]), doc)
            svc.changed.notify_all()
            return pool.id

    @staticmethod
    def identity_principal(resource_id: str) -> str:
        """The principal id (``oid`` of its tokens) of the user-assigned identity
        ``resource_id``: fixed per resource id, so roles can be granted before the pool exists."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, resource_id.lower()))

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no task is running or runnable; False on timeout."""
        return self._svc().wait_idle(timeout)


def _check_mode(mode: str) -> None:
    if mode not in POOL_ALLOCATION_MODES:
        raise ValueError(f"pool_allocation_mode must be one of {POOL_ALLOCATION_MODES}, got {mode!r}")
