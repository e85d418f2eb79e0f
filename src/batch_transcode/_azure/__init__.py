"""The Azure Batch backend."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from batch_transcode._config import AzureConfig
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._progress import ProgressSink
from batch_transcode._report import FileResult
from batch_transcode._teardown import Teardown

__all__ = ["AzureBackend"]


class AzureBackend:
    name = "azure"

    def __init__(self, config: AzureConfig) -> None:
        self.config = config

    def open(self, teardown: Teardown) -> None:
        raise NotImplementedError("the Azure backend is not implemented yet; use LocalConfig")

    def run(
        self,
        items: Sequence[WorkItem],
        preset: Preset,
        progress: ProgressSink,
        teardown: Teardown,
        cancel: threading.Event,
    ) -> list[FileResult]:
        raise NotImplementedError
