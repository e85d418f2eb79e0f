"""Configuration objects: small, frozen, keyword-only, validated on construction."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import attrs

from batch_transcode._errors import ConfigError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = [
    "AptFFmpeg",
    "AzureConfig",
    "ContainerFFmpeg",
    "FFmpegProvisioning",
    "LocalConfig",
    "RetryPolicy",
    "StagedFFmpeg",
]

#: Default VM size: a current general-purpose size with 2 vCPUs (Dv5 family).
DEFAULT_VM_SIZE = "Standard_D2s_v5"
#: Ubuntu 24.04 LTS marketplace image and its Batch node agent.
DEFAULT_IMAGE = ("canonical", "ubuntu-24_04-lts", "server")
DEFAULT_NODE_AGENT = "batch.node.ubuntu 24.04"

_REDACTED = "***"


def _secret_repr(value: object) -> str:
    return "None" if value is None else _REDACTED


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float | int | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{attr.name} must be > 0, got {value!r}")


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: float | int) -> None:
    if value < 0:
        raise ConfigError(f"{attr.name} must be >= 0, got {value!r}")


def _default_workers() -> int:
    return os.cpu_count() or 1


@attrs.define(frozen=True, kw_only=True)
class RetryPolicy:
    """How operations against Azure are retried (pool/job/task creation, deletes, polls).

    Transport-level retries are the Azure SDK's own; this policy wraps whole
    operations. ``attempts`` and ``timeout`` both cap the retries; waits grow
    exponentially from ``wait_initial`` up to ``wait_max`` seconds, with jitter.
    """

    attempts: int = attrs.field(default=6, validator=_positive)
    timeout: float = attrs.field(default=120.0, validator=_positive)
    wait_initial: float = attrs.field(default=0.5, validator=_non_negative)
    wait_max: float = attrs.field(default=20.0, validator=_non_negative)
    wait_jitter: float = attrs.field(default=1.0, validator=_non_negative)


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


@attrs.define(frozen=True, kw_only=True)
class LocalConfig:
    """Run ffmpeg on this machine.

    ``workers`` ffmpeg processes run at once (default: the CPU count).
    ``ffmpeg`` is the executable to use; when ``None`` it is looked up on
    ``PATH``, then the one bundled by the ``local`` extra (imageio-ffmpeg).
    ``timeout`` (seconds) bounds each file's conversion.
    """

    workers: int = attrs.field(factory=_default_workers, validator=_positive)
    ffmpeg: str | Path | None = None
    timeout: float | None = attrs.field(default=3600.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int):
            raise ConfigError(f"workers must be a whole number, got {self.workers!r}")


@attrs.define(frozen=True, kw_only=True)
class AptFFmpeg:
    """Install Ubuntu's ffmpeg package with a start task (the tutorial's way)."""

    kind: Literal["apt"] = attrs.field(default="apt", init=False)


@attrs.define(frozen=True, kw_only=True)
class StagedFFmpeg:
    """Upload a static Linux ffmpeg binary to Blob Storage; the start task fetches it.

    Faster and more reproducible than apt: no package mirror involved.
    """

    kind: Literal["staged"] = attrs.field(default="staged", init=False)
    binary: Path = attrs.field(converter=Path)


@attrs.define(frozen=True, kw_only=True)
class ContainerFFmpeg:
    """Run each task in a container image that provides ``ffmpeg``."""

    kind: Literal["container"] = attrs.field(default="container", init=False)
    image: str = "linuxserver/ffmpeg:latest"


FFmpegProvisioning = AptFFmpeg | StagedFFmpeg | ContainerFFmpeg

_POOL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IDENTITY_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ManagedIdentity/"
    r"userAssignedIdentities/[^/]+$",
    re.IGNORECASE,
)


def _account_from_endpoint(endpoint: str) -> str | None:
    host = urlsplit(endpoint).hostname or ""
    if host.endswith(".batch.azure.com") or (host.count(".") >= 3 and not host[0].isdigit()):
        return host.split(".", 1)[0]
    return None


@attrs.define(frozen=True, kw_only=True)
class AzureConfig:
    """Run on Azure Batch, staging through Azure Blob Storage.

    Authentication: a Batch account key (``batch_key``) signs requests with
    Shared Key; without one, ``credential`` (any ``TokenCredential``) or
    ``DefaultAzureCredential`` authenticates with Microsoft Entra ID. Storage
    takes a connection string, or an account name with a key or the same
    credential (then SAS tokens are user-delegation SAS).

    ``ca_bundle``: a PEM file of CA certificates to trust for https to Batch and Storage
    (a TLS-inspecting proxy's, or :class:`batch_transcode.testing.OfflineAzure`'s).

    ``node_identity``: the ARM resource id of a user-assigned managed identity of the pool
    (``pool_id``). Tasks then fetch inputs and upload outputs as that identity
    (``identityReference``), with no SAS at all; the identity needs Storage Blob Data
    Reader on inputs and Contributor on outputs (docs/azure.md).

    Staging: inputs go to a container of the session's own, deleted at the
    end. ``input_container`` names a container that is kept instead and
    reused across sessions: an input already there with the same size and
    MD5 is not uploaded again.

    Compute: by default a session pool is created for the session and deleted
    when it closes. ``pool_id`` uses an existing pool instead (never deleted),
    ``auto_pool=True`` lets Batch create a pool whose lifetime is the job.
    """

    batch_endpoint: str
    batch_account: str | None = None
    batch_key: str | None = attrs.field(default=None, repr=_secret_repr)
    credential: TokenCredential | None = attrs.field(default=None, repr=False)

    storage_connection_string: str | None = attrs.field(default=None, repr=_secret_repr)
    storage_account: str | None = None
    storage_key: str | None = attrs.field(default=None, repr=_secret_repr)
    storage_endpoint: str | None = None
    ca_bundle: str | None = attrs.field(default=None, converter=attrs.converters.optional(str))
    node_identity: str | None = None

    pool_id: str | None = None
    auto_pool: bool = False
    vm_size: str = DEFAULT_VM_SIZE
    dedicated_nodes: int = attrs.field(default=1, validator=_non_negative)
    spot_nodes: int = attrs.field(default=0, validator=_non_negative)
    autoscale: bool = False
    max_nodes: int = attrs.field(default=10, validator=_positive)
    task_slots_per_node: int = attrs.field(default=2, validator=_positive)
    image: tuple[str, str, str] = DEFAULT_IMAGE
    node_agent_sku: str = DEFAULT_NODE_AGENT
    ffmpeg: FFmpegProvisioning = attrs.field(factory=AptFFmpeg)

    max_task_retry_count: int = attrs.field(default=2)
    task_timeout: float = attrs.field(default=3600.0, validator=_positive)
    session_timeout: float = attrs.field(default=6 * 3600.0, validator=_positive)
    poll_interval: float = attrs.field(default=1.0, validator=_positive)
    poll_interval_max: float = attrs.field(default=15.0, validator=_positive)
    upload_concurrency: int = attrs.field(default=16, validator=_positive)
    download_concurrency: int = attrs.field(default=16, validator=_positive)
    keep_pool: bool = False
    keep_outputs_in_storage: bool = False
    input_container: str | None = None
    resource_prefix: str = "bt"
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)

    def __attrs_post_init__(self) -> None:
        # in this order: the first problem found is the one raised
        self._check_batch()
        self._check_storage()
        self._check_keys()
        self._check_pool()
        self._check_run()
        self._check_names()
        self._check_node_identity()
        if self.task_timeout > self.session_timeout:
            raise ConfigError("task_timeout must not exceed session_timeout")

    def _check_batch(self) -> None:
        """The Batch endpoint is a URL; the account is derived from it when not given."""
        parts = urlsplit(self.batch_endpoint or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"batch_endpoint must be an https URL such as "
                f"'https://ACCOUNT.REGION.batch.azure.com', got {self.batch_endpoint!r}; "
                "pass AzureConfig(batch_endpoint=...) or export AZURE_BATCH_ENDPOINT"
            )
        if self.batch_account is None:
            account = _account_from_endpoint(self.batch_endpoint)
            if account is None and self.batch_key is not None:
                raise ConfigError(
                    "batch_account cannot be derived from the endpoint "
                    f"{self.batch_endpoint!r}; pass AzureConfig(batch_account=...) "
                    "or export AZURE_BATCH_ACCOUNT"
                )
            object.__setattr__(self, "batch_account", account)

    def _check_storage(self) -> None:
        if not (self.storage_connection_string or self.storage_account or self.storage_endpoint):
            raise ConfigError(
                "no storage account configured; pass AzureConfig("
                "storage_connection_string=...) or storage_account=..., or export "
                "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT"
            )

    def _check_keys(self) -> None:
        """Account keys are base64 (Shared Key signs with the decoded bytes): a key cut
        short or with a stray character is named here, not met as a decoding error, or
        a refusal, on the first request. The key itself is never shown."""
        keys = [
            (self.batch_key, "batch_key", "AZURE_BATCH_ACCESS_KEY", "the Batch account's Keys page"),
            (self.storage_key, "storage_key", "AZURE_STORAGE_KEY", "the storage account's Access keys page"),
        ]
        if self.storage_connection_string:
            parts = [p for p in self.storage_connection_string.split(";") if p.strip()]
            if any("=" not in p for p in parts):
                raise ConfigError(
                    "storage_connection_string is not a list of Name=value pairs separated by ';'; "
                    "copy it again from the storage account's Access keys page into "
                    "AZURE_STORAGE_CONNECTION_STRING"
                )
            fields = dict(p.strip().split("=", 1) for p in parts)
            keys.append(
                (
                    fields.get("AccountKey"),
                    "the AccountKey of storage_connection_string",
                    "AZURE_STORAGE_CONNECTION_STRING",
                    "the storage account's Access keys page",
                )
            )
        for key, what, variable, where in keys:
            if key is not None and not _is_base64(key):
                raise ConfigError(
                    f"{what} is not a valid account key (keys are base64 text, such as the 88 "
                    f"characters ending in '==' shown on {where}); copy it again into {variable}"
                )

    def _check_pool(self) -> None:
        """The pool: an existing one or a new one, with nodes and a sane slot count."""
        if self.pool_id is not None and not _POOL_ID.match(self.pool_id):
            raise ConfigError(
                f"pool_id {self.pool_id!r} is not a valid Batch pool id (1-64 letters, digits, '-' or '_')"
            )
        if self.pool_id is not None and self.auto_pool:
            raise ConfigError("pass either pool_id (an existing pool) or auto_pool=True, not both")
        if not self.autoscale and self.pool_id is None and self.dedicated_nodes + self.spot_nodes == 0:
            raise ConfigError(
                "the pool would have no nodes; set dedicated_nodes or spot_nodes above 0, or autoscale=True"
            )
        if self.task_slots_per_node > 256:
            raise ConfigError(
                f"task_slots_per_node must be <= 256 (and <= 4 x the VM's cores), "
                f"got {self.task_slots_per_node}"
            )

    def _check_run(self) -> None:
        """Task retries and polling."""
        if self.max_task_retry_count < -1:
            raise ConfigError("max_task_retry_count must be >= 0, or -1 for unlimited")
        if self.poll_interval_max < self.poll_interval:
            raise ConfigError("poll_interval_max must be >= poll_interval")

    def _check_names(self) -> None:
        """The resource prefix and the input container are valid Azure names."""
        if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", self.resource_prefix):
            raise ConfigError(
                "resource_prefix must be 1-10 lowercase letters or digits, starting with a letter"
            )
        if self.input_container is not None and not re.fullmatch(
            r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", self.input_container
        ):
            raise ConfigError(
                f"input_container {self.input_container!r} is not a valid container name "
                "(3-63 lowercase letters, digits and single hyphens)"
            )

    def _check_node_identity(self) -> None:
        """A node identity is an ARM resource id, of an existing pool's identity."""
        if self.node_identity is None:
            return
        if not _IDENTITY_ID.match(self.node_identity):
            raise ConfigError(
                f"node_identity must be the ARM resource id of a user-assigned managed identity "
                "('/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ManagedIdentity/"
                f"userAssignedIdentities/NAME'), got {self.node_identity!r}"
            )
        if self.pool_id is None:
            raise ConfigError(
                "node_identity needs pool_id: the Batch API this library speaks cannot give a "
                "pool an identity, so create the pool with that identity through Azure Resource "
                "Manager (portal, `az batch pool create` with an ARM template, Bicep) and pass "
                "AzureConfig(pool_id=..., node_identity=...)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> AzureConfig:
        """Build a config from the conventional environment variables.

        ``AZURE_BATCH_ENDPOINT`` (required), ``AZURE_BATCH_ACCOUNT``,
        ``AZURE_BATCH_ACCESS_KEY`` (absent: Microsoft Entra ID through
        ``DefaultAzureCredential``), and ``AZURE_STORAGE_CONNECTION_STRING`` or
        ``AZURE_STORAGE_ACCOUNT`` (+ optional ``AZURE_STORAGE_KEY``, and
        ``AZURE_STORAGE_ENDPOINT`` for a blob endpoint other than
        ``https://{account}.blob.core.windows.net``).
        Keyword overrides win over the environment.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        values: dict[str, Any] = {
            "batch_endpoint": get("AZURE_BATCH_ENDPOINT"),
            "batch_account": get("AZURE_BATCH_ACCOUNT"),
            "batch_key": get("AZURE_BATCH_ACCESS_KEY"),
            "storage_connection_string": get("AZURE_STORAGE_CONNECTION_STRING"),
            "storage_account": get("AZURE_STORAGE_ACCOUNT"),
            "storage_key": get("AZURE_STORAGE_KEY"),
            "storage_endpoint": get("AZURE_STORAGE_ENDPOINT"),
        }
        values.update(overrides)
        missing = []
        if not values["batch_endpoint"]:
            missing.append("AZURE_BATCH_ENDPOINT")
        if not (values["storage_connection_string"] or values["storage_account"]):
            missing.append("AZURE_STORAGE_CONNECTION_STRING (or AZURE_STORAGE_ACCOUNT)")
        if missing:
            raise ConfigError(
                "missing environment variable(s): "
                + ", ".join(missing)
                + "; export them or pass the matching AzureConfig(...) arguments"
            )
        return cls(**{k: v for k, v in values.items() if v is not None})
