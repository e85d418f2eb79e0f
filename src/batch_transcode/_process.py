"""Child processes started in a session of their own (``start_new_session=True``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

__all__ = ["kill_process_group"]


def kill_process_group(proc: subprocess.Popen[bytes], wait: float = 5.0) -> None:
    """Kill ``proc`` and everything in its process group, then reap it (up to ``wait`` s).

    A process that already exited is left alone. ``proc`` must have been started with
    ``start_new_session=True`` so that its group is its own.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=wait)
