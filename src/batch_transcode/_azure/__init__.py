"""The Azure Batch backend (see :mod:`batch_transcode._azure.backend`)."""

from __future__ import annotations

from batch_transcode._azure.backend import AzureBackend

__all__ = ["AzureBackend"]
