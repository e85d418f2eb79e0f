"""batch_transcode: transcode media files in parallel with ffmpeg, on Azure Batch or locally.

::

    from batch_transcode import TranscodeSession, LocalConfig

    with TranscodeSession(LocalConfig()) as s:
        report = s.convert(paths, output_dir="out", preset="mp3")
    report.raise_for_failures()
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from batch_transcode._config import (
    AptFFmpeg,
    AzureConfig,
    ContainerFFmpeg,
    LocalConfig,
    RetryPolicy,
    StagedFFmpeg,
)
from batch_transcode._errors import (
    AttachError,
    AuthenticationError,
    AzureError,
    ConfigError,
    FFmpegNotFoundError,
    InputError,
    MissingInputError,
    OutputCollisionError,
    OutputPathError,
    ProvisioningError,
    QualityError,
    RunTimeoutError,
    ServiceUnavailableError,
    SessionStateError,
    StitchCheckError,
    TeardownError,
    TranscodeError,
    TranscodeFailedError,
)
from batch_transcode._job import JobProgress, TranscodeJob
from batch_transcode._maintenance import CleanupReport, cleanup, list_sessions
from batch_transcode._naming import discover as find_media
from batch_transcode._plan import Plan
from batch_transcode._presets import PRESETS, Preset
from batch_transcode._quality import Metric, Score
from batch_transcode._report import FileResult, PieceKind, ProgressEvent, Report, Status, TaskSpan
from batch_transcode._session import TranscodeSession
from batch_transcode._usage import NodeSpan, Usage

if _TYPE_CHECKING:
    from batch_transcode._azure.cleanup import Orphan, OrphanKind
    from batch_transcode._azure.sessions import JobState, PoolState, SessionInfo

#: Public names whose modules import the Azure SDK: loaded on first use (``import
#: batch_transcode`` stays fast and works without touching azure-batch).
_LAZY = {
    "JobState": "batch_transcode._azure.sessions",
    "Orphan": "batch_transcode._azure.cleanup",
    "OrphanKind": "batch_transcode._azure.cleanup",
    "PoolState": "batch_transcode._azure.sessions",
    "SessionInfo": "batch_transcode._azure.sessions",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'batch_transcode' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


try:
    __version__ = _version("batch-transcode")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "PRESETS",
    "AptFFmpeg",
    "AttachError",
    "AuthenticationError",
    "AzureConfig",
    "AzureError",
    "CleanupReport",
    "ConfigError",
    "ContainerFFmpeg",
    "FFmpegNotFoundError",
    "FileResult",
    "InputError",
    "JobProgress",
    "JobState",
    "LocalConfig",
    "Metric",
    "MissingInputError",
    "NodeSpan",
    "Orphan",
    "OrphanKind",
    "OutputCollisionError",
    "OutputPathError",
    "PieceKind",
    "Plan",
    "PoolState",
    "Preset",
    "ProgressEvent",
    "ProvisioningError",
    "QualityError",
    "Report",
    "RetryPolicy",
    "RunTimeoutError",
    "Score",
    "ServiceUnavailableError",
    "SessionInfo",
    "SessionStateError",
    "StagedFFmpeg",
    "Status",
    "StitchCheckError",
    "TaskSpan",
    "TeardownError",
    "TranscodeError",
    "TranscodeFailedError",
    "TranscodeJob",
    "TranscodeSession",
    "Usage",
    "__version__",
    "cleanup",
    "find_media",
    "list_sessions",
]
