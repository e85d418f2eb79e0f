"""Wrong keys on the offline Azure, as a newcomer meets them: a Batch or storage key that
is well formed but not the account's makes ``batch-transcode`` exit 2 with one line
naming the variable to fix, before anything is created (no pool, job or container; no
output folder), without a traceback unless ``-v``."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode import AuthenticationError, TranscodeSession
from batch_transcode.testing import OfflineAzure
from helpers import NOTHING_LEFT, env_without_azure

pytestmark = pytest.mark.azure

#: Well formed (base64, 64 bytes like a real key) but no account's key.
WRONG_KEY = base64.b64encode(b"k" * 64).decode()


def _cli(oa: OfflineAzure, cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batch_transcode", *argv],
        cwd=cwd,
        env={**env_without_azure(), **oa.env, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _storage_env(oa: OfflineAzure) -> dict[str, str]:
    """The storage settings of ``oa`` with the account key replaced by a wrong one."""
    conn = oa.env.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn is not None:
        parts = [f"AccountKey={WRONG_KEY}" if p.startswith("AccountKey=") else p for p in conn.split(";")]
        return {"AZURE_STORAGE_CONNECTION_STRING": ";".join(parts)}
    return {"AZURE_STORAGE_KEY": WRONG_KEY}


@pytest.mark.parametrize(
    ("which", "variable"),
    [("batch", "AZURE_BATCH_ACCESS_KEY"), ("storage", "AZURE_STORAGE")],
)
def test_a_wrong_key_exits_2_before_anything_is_created(
    offline: OfflineAzure, tmp_path: Path, make_media: Callable[..., Path], which: str, variable: str
) -> None:
    make_media(tmp_path / "in" / "a.mp4")
    env = {"AZURE_BATCH_ACCESS_KEY": WRONG_KEY} if which == "batch" else _storage_env(offline)
    argv = ["convert", "in", "-o", "out", "--backend", "azure", "--no-progress", "--json", "r.json"]
    proc = _cli(offline, tmp_path, *argv, **env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("batch-transcode: error:"), proc.stderr
    assert variable in lines[0], lines[0]
    assert WRONG_KEY not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["in"]  # no output folder, no report
    assert offline.leaks(timeout=10) == NOTHING_LEFT

    verbose = _cli(offline, tmp_path, "-v", *argv, **env)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
    assert WRONG_KEY not in verbose.stderr


def test_a_wrong_key_through_the_python_api(
    offline: OfflineAzure, tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    source = make_media(tmp_path / "a.mp4")
    config = offline.config(batch_key=WRONG_KEY)
    with (
        pytest.raises(AuthenticationError, match="AZURE_BATCH_ACCESS_KEY"),
        TranscodeSession(config) as session,
    ):
        session.convert([source], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert offline.leaks(timeout=10) == NOTHING_LEFT
