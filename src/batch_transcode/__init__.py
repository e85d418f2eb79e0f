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
    ProvisioningError,
    RunTimeoutError,
    ServiceUnavailableError,
    SessionStateError,
    TeardownError,
    TranscodeError,
    TranscodeFailedError,
)
from batch_transcode._job import JobProgress, TranscodeJob
from batch_transcode._naming import discover as find_media
from batch_transcode._plan import Plan
from batch_transcode._presets import PRESETS, Preset
from batch_transcode._report import FileResult, ProgressEvent, Report
from batch_transcode._session import TranscodeSession

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
    "ConfigError",
    "ContainerFFmpeg",
    "FFmpegNotFoundError",
    "FileResult",
    "InputError",
    "JobProgress",
    "LocalConfig",
    "MissingInputError",
    "OutputCollisionError",
    "Plan",
    "Preset",
    "ProgressEvent",
    "ProvisioningError",
    "Report",
    "RetryPolicy",
    "RunTimeoutError",
    "ServiceUnavailableError",
    "SessionStateError",
    "StagedFFmpeg",
    "TeardownError",
    "TranscodeError",
    "TranscodeFailedError",
    "TranscodeJob",
    "TranscodeSession",
    "__version__",
    "find_media",
]
