"""Offline Azure for tests: Azurite plus the Batch REST emulator.

``OfflineAzure`` starts both on free loopback ports; the unmodified
``azure-batch`` and ``azure-storage-blob`` clients talk to them::

    from batch_transcode import TranscodeSession
    from batch_transcode.testing import OfflineAzure

    with OfflineAzure() as oa, TranscodeSession(oa.config()) as session:
        report = session.convert(paths, output_dir="out")

Azurite comes from npm (``npm install azurite@3.37.0``); see ``AzuriteNotFoundError``.
The pytest plugin (``offline_azure``, ``offline_azure_factory``) is registered
automatically when batch_transcode is installed. ``OfflineAzure(entra_id=True)`` is
keyless: Microsoft Entra ID tokens from ``OfflineCredential``, roles in ``RoleAssignments``.

``set_testing(True)`` turns batch_transcode's retry waits off for your own tests (like
``stamina.set_testing``): an operation that keeps failing still stops at
``RetryPolicy.attempts``, only without waiting between attempts. ``set_testing(False)``
turns the waits back on.
"""

from importlib.util import find_spec as _find_spec

#: What the ``testing`` extra brings (pyproject.toml) that importing this package needs: say
#: so rather than fail deep inside (``trustme`` is looked for when a certificate is made).
_MISSING = [name for name in ("jsonschema",) if _find_spec(name) is None]
if _MISSING:
    raise ModuleNotFoundError(
        f"batch_transcode.testing needs the 'testing' extra ({', '.join(_MISSING)} not installed): "
        "pip install 'batch-transcode[testing]'",
        name=_MISSING[0],
    )

from batch_transcode._retry import set_testing  # noqa: E402 - after the check above

from ._azurite import AzuriteNotFoundError  # noqa: E402
from ._batch_emulator import BatchEmulator, Faults  # noqa: E402
from ._entra import OfflineCredential, RoleAssignments  # noqa: E402
from ._identity import IdentityEndpoint  # noqa: E402
from ._intercept import InterceptProxy  # noqa: E402
from ._offline import OfflineAzure, StorageFaults  # noqa: E402
from ._proxy import StorageProxy  # noqa: E402

__all__ = [
    "AzuriteNotFoundError",
    "BatchEmulator",
    "Faults",
    "IdentityEndpoint",
    "InterceptProxy",
    "OfflineAzure",
    "OfflineCredential",
    "RoleAssignments",
    "StorageFaults",
    "StorageProxy",
    "set_testing",
]
