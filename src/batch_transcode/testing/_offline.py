"""``OfflineAzure``: Azurite plus the Batch REST emulator on loopback, as one context manager."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from batch_transcode._config import AzureConfig, RetryPolicy
from batch_transcode._errors import SessionStateError

from ._azurite import AZURITE_ACCOUNT, AzuriteProcess, wait_for_http
from ._entra import STORAGE_DATA_ROLES, OfflineCredential, RoleAssignments
from ._serving import StartStop, new_account_key

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

    from ._batch_emulator import BatchEmulator, Faults
    from ._identity import IdentityEndpoint
    from ._intercept import InterceptProxy
    from ._proxy import StorageProxy

__all__ = ["OfflineAzure", "StorageFaults"]

log = logging.getLogger(__name__)

_STARTUP_TIMEOUT = 30.0


def _rate(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attr.name} must be in [0, 1], got {value!r}")


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attr.name} must be >= 0, got {value!r}")


def _positive_or_none(_inst: object, attr: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attr.name} must be > 0 or None, got {value!r}")


@attrs.define(frozen=True, kw_only=True)
class StorageFaults:
    """Latency and failures added to every storage request (a proxy in front of Azurite).

    ``latency`` seconds per request; a ``failure_rate`` fraction of requests fails
    with ``503 ServerBusy`` or, for a ``drop_share`` of those, a dropped connection;
    ``seed`` makes the sequence reproducible. ``bandwidth`` (bytes per second, each way)
    caps the client's link to storage, shared by all its transfers at once; the emulated
    Batch nodes' own transfers are not capped, as nodes sit next to the storage account.
    """

    latency: float = attrs.field(default=0.0, validator=_non_negative)
    failure_rate: float = attrs.field(default=0.0, validator=_rate)
    seed: int = 0
    drop_share: float = attrs.field(default=0.2, validator=_rate)
    bandwidth: float | None = attrs.field(default=None, validator=_positive_or_none)


#: The inspection client's transport retry (straight to Azurite, no faults in the way):
#: Azurite closes a keep-alive connection idle for 5 s (Node.js ``server.keepAliveTimeout``,
#: https://nodejs.org/api/http.html#serverkeepalivetimeout), and a request sent on it as
#: it closes is reset; sent again on a new connection it is answered.
_DIRECT_RETRY: dict[str, Any] = {"retry_total": 2, "initial_backoff": 0, "increment_base": 0}


class OfflineAzure(StartStop):
    """Azurite (blob service) and the Batch emulator on free loopback ports.

    ``OfflineAzure(faults=None, allocation_delay=0.0, tls=False, storage_faults=None,
    workdir=None, entra_id=False)``. Use it as a context manager: both services are up and
    answering inside the ``with`` block and stopped (processes killed, temporary
    files removed) when it ends, whatever happened inside.

    - ``faults``: :class:`Faults` of the Batch emulator (switch later with ``.batch.set_faults``).
    - ``allocation_delay``: seconds each pool's nodes take to allocate.
    - ``tls``: serve Batch over https with a throwaway CA (``.ca_bundle``); needed for
      Microsoft Entra ID credentials, which the Azure SDK only sends over https.
    - ``storage_faults``: :class:`StorageFaults`; routes storage through a proxy
      (``.storage_proxy``) that adds latency and failures. Switch later with
      :meth:`set_storage_faults`.
    - ``workdir``: where Azurite's data and the emulated nodes live (default: a temporary
      directory, removed at exit; a given directory is kept).
    - ``entra_id``: keyless, as an organisation with Shared Key disabled runs it. Batch and
      storage both serve https (implies ``tls``) and take Microsoft Entra ID bearer tokens
      from :attr:`credential`, a ``TokenCredential`` whose principal holds Storage Blob Data
      Contributor and Azure Batch Data Contributor (:attr:`roles`; revoke them to see what a
      missing role does). :meth:`config` then has that credential and no key or connection
      string; tasks get user-delegation SAS. :meth:`add_pool` makes a pool with
      user-assigned identities, as Azure Resource Manager would, for ``node_identity``.
      Another process's ``DefaultAzureCredential()`` gets the same principal's tokens from
      a managed-identity endpoint on loopback (:attr:`identity_endpoint`, in :attr:`env`).
    - ``service_errors``: storage answers a failed SAS or Shared Key check as the service
      does (``403 AuthenticationFailed`` with its ``AuthenticationErrorDetail``, where
      Azurite answers ``AuthorizationFailure``), through the proxy in front of Azurite
      (:attr:`storage_proxy`). ``False`` routes storage straight to Azurite: a little
      faster (no relay in this process), with Azurite's codes.
    - ``intercept``: a program written for the public cloud runs offline unchanged. An
      HTTPS proxy on loopback (:attr:`intercept_proxy`) answers for
      ``{storage account}.blob.core.windows.net`` and ``{batch account}.{region}.batch.azure.com``
      (``region``, default ``"westeurope"``) with certificates of the throwaway CA
      (:attr:`ca_bundle`) and relays to Azurite and the Batch emulator; every other host is
      refused. :attr:`env` then gives the public endpoint names, ``HTTPS_PROXY`` and the CA
      (``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``); :meth:`config` still talks to the
      loopback ports directly.
    """

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        allocation_delay: float = 0.0,
        tls: bool = False,
        storage_faults: StorageFaults | None = None,
        workdir: str | Path | None = None,
        entra_id: bool = False,
        intercept: bool = False,
        region: str = "westeurope",
        service_errors: bool = True,
    ) -> None:
        self._faults = faults
        self._intercept_on = intercept
        self._service_errors = service_errors
        self.region = region
        self._allocation_delay = allocation_delay
        self._tls = tls or entra_id
        self._entra_id = entra_id
        #: Data-plane role assignments the offline services enforce (``entra_id=True``).
        self.roles = RoleAssignments()
        #: The ``TokenCredential`` of the test principal (``entra_id=True``).
        self.credential = OfflineCredential()
        self._inspector = OfflineCredential()  # the harness's own reads: every role, no proxy
        if entra_id:
            self.roles.grant(
                self.credential.principal_id, "Storage Blob Data Contributor", "Azure Batch Data Contributor"
            )
        self._storage_faults = storage_faults
        # per run: nobody who has not been given them can use these services (tasks run on the host)
        self._storage_key = new_account_key()
        self._batch_key = new_account_key()
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self._state = "unopened"
        self._workdir: Path | None = None
        self._azurite: AzuriteProcess | None = None
        self._batch: BatchEmulator | None = None
        self._proxy: StorageProxy | None = None
        self._identity: IdentityEndpoint | None = None
        self._intercept: InterceptProxy | None = None
        self._ca: Any = None  # the throwaway CA (a trustme.CA), when there is one
        self._blob_clients: list[BlobServiceClient] = []
        #: PEM file of the CA that signed the emulator's certificate (``tls=True`` only).
        self.ca_bundle: Path | None = None

    def __repr__(self) -> str:
        if self._state != "open":
            return f"<OfflineAzure {self._state}>"
        return f"<OfflineAzure batch={self.batch.endpoint} blob={self.blob_endpoint}>"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> OfflineAzure:
        if self._state != "unopened":
            raise SessionStateError(f"OfflineAzure cannot start: it is {self._state}")
        self._state = "open"
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from ._batch_emulator import BatchEmulator

        if self._workdir_arg is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="offline-azure-"))
        else:
            self._workdir = self._workdir_arg
            self._workdir.mkdir(parents=True, exist_ok=True)
        tls_files: tuple[str, str] | None = None
        if self._tls or self._intercept_on:
            tls_files = self._make_certificate(self._workdir / "tls")
            if not self._tls:
                tls_files = None  # the CA is for intercept mode's names only
        azurite = AzuriteProcess(
            self._workdir / "azurite",
            startup_timeout=_STARTUP_TIMEOUT,
            tls=tls_files if self._entra_id else None,
            accounts={AZURITE_ACCOUNT: self._storage_key},
        )
        self._azurite = azurite
        azurite.start()
        if self._storage_faults is not None or self._entra_id or self._service_errors:
            self._start_proxy(self._storage_faults or StorageFaults(), tls_files if self._entra_id else None)
        ca = str(self.ca_bundle) if self.ca_bundle is not None else None
        if self._intercept_on:
            self._start_intercept()
        self._batch = BatchEmulator(
            node_proxy=self._intercept.url if self._intercept is not None else None,
            key=self._batch_key,
            workdir=self._workdir / "batch",
            tls=tls_files,
            faults=self._faults,
            allocation_delay=self._allocation_delay,
            ca_bundle=ca,
            roles=self.roles if self._entra_id else None,
        )
        self._batch.start()
        if self._intercept is not None:
            host = f"{self._batch.account}.{self.region}.batch.azure.com"
            self._intercept.route(host, self._batch.endpoint, rewrite=True)
        if self._entra_id:
            from ._identity import IdentityEndpoint

            self._identity = IdentityEndpoint(self.credential).start()
        parts = urlsplit(self._batch.endpoint)
        if not wait_for_http(
            parts.hostname or "127.0.0.1", parts.port or 443, timeout=_STARTUP_TIMEOUT, https=self._tls
        ):
            raise RuntimeError(f"the Batch emulator did not answer within {_STARTUP_TIMEOUT:.0f} s")
        log.info("OfflineAzure ready: Batch %s, storage %s", self._batch.endpoint, self.blob_endpoint)

    def _start_proxy(self, faults: StorageFaults, tls: tuple[str, str] | None) -> None:
        from ._proxy import StorageProxy

        if self._azurite is None:
            raise SessionStateError("Azurite is not running")
        self._proxy = StorageProxy(
            self._azurite.port,
            latency=faults.latency,
            failure_rate=faults.failure_rate,
            seed=faults.seed,
            drop_share=faults.drop_share,
            tls=tls,
            ca_bundle=str(self.ca_bundle) if tls is not None else None,
            roles=self.roles if self._entra_id else None,
            storage_roles=STORAGE_DATA_ROLES,
            bandwidth=faults.bandwidth,
        ).start()

    def _start_intercept(self) -> None:
        from ._intercept import InterceptProxy

        port = self._proxy.port if self._proxy is not None else self.azurite_port
        scheme = "https" if self._entra_id else "http"
        if self._ca is None:
            raise SessionStateError("intercept mode needs the throwaway CA")
        self._intercept = InterceptProxy(self._ca, ca_bundle=str(self.ca_bundle)).start()
        self._intercept.route(f"{AZURITE_ACCOUNT}.blob.core.windows.net", f"{scheme}://127.0.0.1:{port}")

    def _make_certificate(self, directory: Path) -> tuple[str, str]:
        try:
            import trustme
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                "OfflineAzure's https modes need trustme, part of the 'testing' extra: "
                "pip install 'batch-transcode[testing]'",
                name="trustme",
            ) from exc

        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        self._ca = ca  # intercept mode issues the public names' certificates from it
        cert = ca.issue_cert("127.0.0.1", "localhost")
        certfile, keyfile, cafile = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
        cert.cert_chain_pems[0].write_to_path(str(certfile))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(certfile), append=True)
        cert.private_key_pem.write_to_path(str(keyfile))
        ca.cert_pem.write_to_path(str(cafile))
        self.ca_bundle = cafile
        return str(certfile), str(keyfile)

    def stop(self) -> None:
        """Stop everything that was started; harmless twice."""
        if self._state == "closed":
            return
        self._state = "closed"
        errors: list[BaseException] = []
        for client in self._blob_clients:
            with contextlib.suppress(Exception):
                client.close()
        self._blob_clients.clear()
        for stop in (
            self._intercept.stop if self._intercept is not None else None,
            self._identity.stop if self._identity is not None else None,
            self._batch.stop if self._batch is not None else None,
            self._proxy.stop if self._proxy is not None else None,
            self._azurite.stop if self._azurite is not None else None,
        ):
            if stop is None:
                continue
            try:
                stop()
            except Exception as exc:  # stop the others regardless
                log.warning("OfflineAzure: stopping failed: %s", exc)
                errors.append(exc)
        if self._workdir_arg is None and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        log.info("OfflineAzure stopped")

    def _require_open(self) -> None:
        if self._state != "open":
            raise SessionStateError(
                f"OfflineAzure is {self._state}; use it inside `with OfflineAzure() as oa:`"
            )

    # -- what tests and users need ------------------------------------------------------

    @property
    def batch(self) -> BatchEmulator:
        """The Batch emulator: ``.set_faults()``, ``.pools()``, ``.jobs()``, ``.tasks()``, ..."""
        self._require_open()
        if self._batch is None:
            raise SessionStateError("the Batch emulator is not running")
        return self._batch

    @property
    def storage_proxy(self) -> StorageProxy | None:
        """The proxy in front of Azurite (unless ``service_errors=False`` without
        ``storage_faults`` or ``entra_id``); with ``entra_id=True`` it also checks roles."""
        return self._proxy

    @property
    def entra_id(self) -> bool:
        return self._entra_id

    @property
    def intercept_proxy(self) -> InterceptProxy | None:
        """With ``intercept=True``: the HTTPS proxy that answers for the public host names."""
        return self._intercept

    @property
    def identity_endpoint(self) -> IdentityEndpoint | None:
        """With ``entra_id=True``: the managed-identity endpoint on loopback that hands other
        processes the tokens of :attr:`credential` (its variables are in :attr:`env`)."""
        return self._identity

    @property
    def azurite_port(self) -> int:
        self._require_open()
        if self._azurite is None:
            raise SessionStateError("Azurite is not running")
        return self._azurite.port

    @property
    def blob_endpoint(self) -> str:
        """The blob endpoint clients use (through the proxy when there is one)."""
        self._require_open()
        port = self._proxy.port if self._proxy is not None else self.azurite_port
        scheme = "https" if self._entra_id else "http"
        return f"{scheme}://127.0.0.1:{port}/{AZURITE_ACCOUNT}"

    @property
    def storage_account(self) -> str:
        """The storage account's name."""
        return AZURITE_ACCOUNT

    @property
    def storage_key(self) -> str:
        """The storage account's key: fresh and random for each ``OfflineAzure`` (the Batch
        account's is ``.batch.key``). With ``entra_id=True`` requests signed with it are
        refused, as on an account with Shared Key access disallowed."""
        return self._storage_key

    @property
    def storage_connection_string(self) -> str:
        if self._entra_id:
            raise SessionStateError(
                "OfflineAzure(entra_id=True) has no connection string: storage takes the bearer "
                "tokens of .credential (see .config() and .env)"
            )
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={self._storage_key};BlobEndpoint={self.blob_endpoint};"
        )

    @property
    def env(self) -> dict[str, str]:
        """The environment variables :meth:`AzureConfig.from_env` reads, pointing here.

        With ``tls=True`` also ``REQUESTS_CA_BUNDLE``: the CA for the emulator's certificate.
        With ``entra_id=True`` no key and no connection string: ``AZURE_STORAGE_ACCOUNT`` and
        ``AZURE_STORAGE_ENDPOINT``, and ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``, where
        ``DefaultAzureCredential()`` in another process gets the tokens of :attr:`credential`'s
        principal (the App Service managed-identity protocol; the header is a fresh secret).
        With ``intercept=True`` the public endpoint names instead of the loopback ports, with
        ``HTTPS_PROXY`` (and ``NO_PROXY`` for loopback), ``REQUESTS_CA_BUNDLE`` and
        ``SSL_CERT_FILE``: what a program written for the public cloud needs.
        """
        if self._intercept is not None:
            return self._intercept_env()
        return self._direct_env()

    def _direct_env(self) -> dict[str, str]:
        batch = self.batch
        if self._entra_id:
            identity = self._identity.env if self._identity is not None else {}
            return {
                "AZURE_BATCH_ENDPOINT": batch.endpoint,
                "AZURE_BATCH_ACCOUNT": batch.account,
                "AZURE_STORAGE_ACCOUNT": AZURITE_ACCOUNT,
                "AZURE_STORAGE_ENDPOINT": self.blob_endpoint,
                "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
                **identity,
            }
        env = {
            "AZURE_BATCH_ENDPOINT": batch.endpoint,
            "AZURE_BATCH_ACCOUNT": batch.account,
            "AZURE_BATCH_ACCESS_KEY": batch.key,
            "AZURE_STORAGE_CONNECTION_STRING": self.storage_connection_string,
        }
        if self.ca_bundle is not None:
            env["REQUESTS_CA_BUNDLE"] = str(self.ca_bundle)
        return env

    def _intercept_env(self) -> dict[str, str]:
        batch, proxy = self.batch, self._intercept
        if proxy is None:
            raise SessionStateError("intercept mode is off: start with OfflineAzure(intercept=True)")
        public = {
            "AZURE_BATCH_ENDPOINT": f"https://{batch.account}.{self.region}.batch.azure.com",
            "AZURE_BATCH_ACCOUNT": batch.account,
            "AZURE_STORAGE_ACCOUNT": AZURITE_ACCOUNT,
        }
        if self._entra_id:
            public["AZURE_STORAGE_ENDPOINT"] = f"https://{AZURITE_ACCOUNT}.blob.core.windows.net"
            public.update(self._identity.env if self._identity is not None else {})
        else:
            public["AZURE_BATCH_ACCESS_KEY"] = batch.key
            public["AZURE_STORAGE_CONNECTION_STRING"] = (
                f"DefaultEndpointsProtocol=https;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={self._storage_key};EndpointSuffix=core.windows.net"
            )
        return {
            **public,
            "HTTPS_PROXY": proxy.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
            "SSL_CERT_FILE": str(self.ca_bundle),
        }

    def config(self, **overrides: Any) -> AzureConfig:
        """An :class:`AzureConfig` for this emulator, with test-friendly defaults (fast
        polls and retries, 2 nodes of 2 slots); ``overrides`` win."""
        defaults: dict[str, Any] = {
            "poll_interval": 0.2,
            "poll_interval_max": 1.0,
            "retry": RetryPolicy(attempts=6, timeout=30.0, wait_initial=0.05, wait_max=0.5, wait_jitter=0.05),
            "dedicated_nodes": 2,
            "task_slots_per_node": 2,
        }
        if self._entra_id:
            defaults.update(credential=self.credential, ca_bundle=str(self.ca_bundle))
        defaults.update(overrides)
        env = {k: v for k, v in self._direct_env().items() if k != "REQUESTS_CA_BUNDLE"}
        return AzureConfig.from_env(env, **defaults)

    def blob_service_client(self, **kwargs: Any) -> BlobServiceClient:
        """A ``BlobServiceClient`` for inspecting storage (retries near zero; closed at exit)."""
        from azure.storage.blob import BlobServiceClient

        options: dict[str, Any] = {"retry_total": 1, "initial_backoff": 0, "increment_base": 0}
        options.update(kwargs)
        if self._entra_id:
            options.setdefault("credential", self.credential)
            options.setdefault("connection_verify", str(self.ca_bundle))
            client = BlobServiceClient(self.blob_endpoint, **options)
        else:
            client = BlobServiceClient.from_connection_string(self.storage_connection_string, **options)
        self._blob_clients.append(client)
        return client

    def set_faults(self, faults: Faults | None = None) -> None:
        """Switch the Batch emulator's faults (``None``: none)."""
        from ._batch_emulator import Faults

        self.batch.set_faults(faults if faults is not None else Faults())

    def set_storage_faults(self, faults: StorageFaults | None = None) -> None:
        """Switch storage latency/failures (``None``: none). Needs the proxy: not with
        ``service_errors=False`` unless ``storage_faults=`` was given at start."""
        self._require_open()
        if self._proxy is None:
            if faults is None:
                return
            raise SessionStateError(
                "storage faults need the proxy: start with OfflineAzure(storage_faults=StorageFaults())"
            )
        f = faults or StorageFaults()
        self._proxy.set_faults(
            latency=f.latency,
            failure_rate=f.failure_rate,
            seed=f.seed,
            drop_share=f.drop_share,
            bandwidth=f.bandwidth,
        )

    def containers(self) -> list[str]:
        """Names of the containers in Azurite."""
        client = self._direct_client()
        return [c.name for c in client.list_containers()]

    def _direct_client(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        if not hasattr(self, "_direct") and self._entra_id:
            # straight to Azurite (no role check), as a principal the tests never revoke
            self._direct = BlobServiceClient(
                f"https://127.0.0.1:{self.azurite_port}/{AZURITE_ACCOUNT}",
                credential=self._inspector,
                connection_verify=str(self.ca_bundle),
                **_DIRECT_RETRY,
            )
            self._blob_clients.append(self._direct)
        if not hasattr(self, "_direct"):
            conn = (
                f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={self._storage_key};"
                f"BlobEndpoint=http://127.0.0.1:{self.azurite_port}/{AZURITE_ACCOUNT};"
            )
            self._direct = BlobServiceClient.from_connection_string(conn, **_DIRECT_RETRY)
            self._blob_clients.append(self._direct)
        return self._direct

    def add_pool(
        self, pool_id: str, *, identities: Sequence[str] = (), nodes: int = 2, slots: int = 2
    ) -> str:
        """A pool made as Azure Resource Manager makes one (the only way to give a pool
        user-assigned ``identities``): ``nodes`` dedicated nodes of ``slots`` task slots, the
        default image. Delete it with the Batch client when done. Returns its id."""
        from batch_transcode._config import DEFAULT_IMAGE, DEFAULT_NODE_AGENT, DEFAULT_VM_SIZE

        publisher, offer, sku = DEFAULT_IMAGE
        spec = {
            "id": pool_id,
            "vmSize": DEFAULT_VM_SIZE,
            "virtualMachineConfiguration": {
                "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"},
                "nodeAgentSKUId": DEFAULT_NODE_AGENT,
            },
            "taskSlotsPerNode": slots,
            "targetDedicatedNodes": nodes,
        }
        return self.batch.add_pool(spec, identities=identities)

    def identity_principal(self, resource_id: str) -> str:
        """The principal id of user-assigned identity ``resource_id`` (grant it roles with
        ``.roles.grant(principal, "Storage Blob Data Contributor")``)."""
        from ._batch_emulator import BatchEmulator

        return BatchEmulator.identity_principal(resource_id)

    def leaks(self, *, timeout: float = 0.0) -> dict[str, list[str]]:
        """Pools, jobs and containers that still exist (pools and jobs being deleted count
        until they are gone). Polls up to ``timeout`` seconds for them to disappear."""
        deadline = time.monotonic() + timeout
        while True:
            found = {
                "pools": [p.id for p in self.batch.pools()],
                "jobs": [j.id for j in self.batch.jobs()],
                "containers": self.containers(),
            }
            if not any(found.values()) or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)
