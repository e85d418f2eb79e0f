"""The client SIGKILLed mid-run: the job ends by itself, and ``batch-transcode cleanup
--older-than 0s`` removes every tagged resource left behind."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from batch_transcode.testing import OfflineAzure
from helpers import NOTHING_LEFT, MediaFactory, kill_once_watching, run_python, wait_until

pytestmark = pytest.mark.azure

CLIENT = """
import sys
from pathlib import Path
from batch_transcode import AzureConfig, TranscodeSession

config = AzureConfig.from_env(poll_interval=0.2, poll_interval_max=0.5, dedicated_nodes=1,
                              task_slots_per_node=1, session_timeout=600, task_timeout=300)
inputs = sorted(Path(sys.argv[1]).glob("*.mp4"))
with TranscodeSession(config) as session:
    session.convert(inputs, output_dir=sys.argv[2])
"""


def test_killed_client_job_ends_and_cleanup_sweeps(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    src = tmp_path / "in"
    for i in range(10):
        make_media(src / f"clip{i}.mp4")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {**os.environ, **offline.env}
    before = len(offline.batch.request_log)
    returncode = kill_once_watching(offline, [sys.executable, str(script), str(src), str(tmp_path / "out")])
    assert returncode == -signal.SIGKILL

    jobs = offline.batch.jobs()
    assert len(jobs) == 1
    job = jobs[0]
    create = next(r for r in offline.batch.request_log[before:] if r.operation == "Jobs_CreateJob")
    constraints = json.loads(create.request_body)["constraints"]
    assert constraints["maxWallClockTime"].startswith("PT")  # a bound even if never updated
    # the job ends by itself once its tasks are done (terminate-on-complete)
    wait_until(
        lambda: offline.batch.jobs()[0].state == "completed",
        timeout=60,
        what=lambda: f"the job to complete: {offline.batch.jobs()}",
    )
    assert all(t.state == "completed" for t in offline.batch.tasks(job.id))
    leftover = offline.leaks()
    assert leftover["pools"] and leftover["jobs"] and leftover["containers"]

    result = run_python("-m", "batch_transcode", "cleanup", "--older-than", "0s", env=env)
    assert result.returncode == 0, result.stderr
    assert offline.leaks(timeout=30) == NOTHING_LEFT
