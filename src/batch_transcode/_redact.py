"""Secrets out of text: the one redaction used by logs, errors, reprs and the emulator.

SAS signatures (``sig=``), Shared Key signatures and account keys in connection
strings (``AccountKey=``) become ``REDACTED``. Azure SDK guidelines: "never log
... SAS tokens, account keys or connection strings"
(https://azure.github.io/azure-sdk/general_logging.html).
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_SECRET = re.compile(r"(?i)\b(sig|signature|accountkey|sharedaccesssignature)=([^&\s'\"<>;#]+)")


def redact(text: str) -> str:
    """``text`` with SAS signatures and account keys replaced by ``REDACTED``."""
    return _SECRET.sub(lambda m: f"{m.group(1)}=REDACTED", text)
