"""TranscodeSession.attach: a process submits, is SIGKILLed mid-run, another attaches.

The submitting process is a real child process talking to OfflineAzure through the
``AZURE_*`` variables. Its ffmpeg (staged on the nodes) lets the first ``FREE`` files
through and holds the rest until the test opens a gate, so the kill lands while some
files are converted and others are not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batch_transcode import AttachError, ConfigError, LocalConfig, TranscodeSession
from batch_transcode._azure.names import manifest_blob
from batch_transcode.testing import OfflineAzure

pytestmark = pytest.mark.azure

MediaFactory = Callable[..., Path]
FREE = 2  # files converted before the crash

CHILD = """
import sys
from pathlib import Path
from batch_transcode import AzureConfig, StagedFFmpeg, TranscodeSession

ffmpeg, out, *paths = sys.argv[1:]
config = AzureConfig.from_env(
    dedicated_nodes=1, task_slots_per_node=1, poll_interval=0.2, poll_interval_max=0.5,
    ffmpeg=StagedFFmpeg(binary=Path(ffmpeg)),
)
with TranscodeSession(config) as session:
    session.convert(paths, output_dir=out)
print("the child was not stopped")
"""


@pytest.fixture(scope="module")
def offline() -> Iterator[OfflineAzure]:
    with OfflineAzure() as oa:
        yield oa


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _session_resources(oa: OfflineAzure, session_id: str) -> dict[str, list[str]]:
    return {
        "pools": [p.id for p in oa.batch.pools() if session_id in p.id],
        "jobs": [j.id for j in oa.batch.jobs() if session_id in j.id],
        "containers": [c for c in oa.containers() if c.startswith(session_id)],
    }


def _crash_mid_run(oa: OfflineAzure, tmp_path: Path, inputs: list[Path], ffmpeg_exe: str) -> tuple[str, str]:
    """Run the child until FREE files are done and the next one is running, SIGKILL it;
    return (session id, job id)."""
    calls, gate = tmp_path / "calls", tmp_path / "gate"
    wrapper = tmp_path / "ffmpeg-gated"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" -i "*)\n'
        f'  echo x >> "{calls}"\n'
        f'  if [ "$(wc -l < "{calls}")" -gt {FREE} ]; then\n'
        f'    while [ ! -e "{gate}" ]; do sleep 0.05; done\n'
        "  fi;;\n"
        "esac\n"
        f'exec "{ffmpeg_exe}" "$@"\n'
    )
    wrapper.chmod(0o755)
    script = tmp_path / "submit.py"
    script.write_text(CHILD)
    jobs_before = {j.id for j in oa.batch.jobs()}
    log = (tmp_path / "child.log").open("w")
    child = subprocess.Popen(
        [sys.executable, str(script), str(wrapper), str(tmp_path / "child-out"), *map(str, inputs)],
        env={**os.environ, **oa.env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def mid_run() -> bool:
            if child.poll() is not None:
                raise AssertionError(f"the child exited early:\n{(tmp_path / 'child.log').read_text()}")
            new = [j.id for j in oa.batch.jobs() if j.id not in jobs_before]
            if not new:
                return False
            tasks = oa.batch.tasks(new[0])
            done = [t for t in tasks if t.state == "completed"]
            running = [t for t in tasks if t.state == "running"]
            return len(tasks) == len(inputs) and len(done) == FREE and len(running) == 1

        _wait(mid_run, "the child's job to be part done")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        log.close()
    assert child.returncode == -signal.SIGKILL
    (job_id,) = [j.id for j in oa.batch.jobs() if j.id not in jobs_before]
    assert job_id.endswith("-job")
    gate.touch()  # the held tasks may finish now
    return job_id[: -len("-job")], job_id


def _layout(tmp_path: Path, make_media: MediaFactory, count: int) -> list[Path]:
    return [make_media(tmp_path / "in" / f"day{i % 2}" / f"talk {i}.mp4") for i in range(count)]


def test_attach_by_session_id_after_the_submitting_process_was_killed(
    offline: OfflineAzure,
    tmp_path: Path,
    make_media: MediaFactory,
    ffmpeg_exe: str,
    duration_of: Callable[[Path], float | None],
) -> None:
    inputs = _layout(tmp_path, make_media, 5)
    session_id, job_id = _crash_mid_run(offline, tmp_path, inputs, ffmpeg_exe)
    left = _session_resources(offline, session_id)
    assert left["pools"] and left["jobs"] == [job_id] and len(left["containers"]) == 2, left
    manifest = offline.blob_service_client().get_blob_client(f"{session_id}-out", manifest_blob(job_id))
    text = manifest.download_blob().readall().decode()
    assert "talk 4.mp4" in text
    assert "sig=" not in text and offline.env["AZURE_BATCH_ACCESS_KEY"] not in text
    assert "AccountKey" not in text

    out = tmp_path / "out"
    with TranscodeSession.attach(session_id, offline.config(), output_dir=out) as job:
        assert job.session is not None and job.session.backend == "azure"
        report = job.wait()
    assert report.ok, report.summary()
    assert [r.source for r in report] == [p.absolute() for p in inputs]
    for i, result in enumerate(report):
        expected = out / f"day{i % 2}" / f"talk {i}.mp3"
        assert result.output == expected.absolute()
        duration = duration_of(expected)
        assert duration is not None and duration > 0.5
    # results stream: the killed process may have downloaded outputs of tasks that finished
    # before it died, each complete (a download lands under its final name only when whole)
    for early in (tmp_path / "child-out").rglob("*.mp3"):
        duration = duration_of(early)
        assert duration is not None and duration > 0.5, early
    _wait(lambda: not any(_session_resources(offline, session_id).values()), "the adopted resources to go")


def test_attach_by_job_id_and_its_session_removes_everything(
    offline: OfflineAzure,
    tmp_path: Path,
    make_media: MediaFactory,
    ffmpeg_exe: str,
    duration_of: Callable[[Path], float | None],
) -> None:
    inputs = _layout(tmp_path, make_media, 4)
    session_id, job_id = _crash_mid_run(offline, tmp_path, inputs, ffmpeg_exe)
    job = TranscodeSession.attach(job_id, offline.config(), output_dir=tmp_path / "out")
    session = job.session
    assert session is not None
    with pytest.raises(Exception, match="only watches the job"):
        session.convert(inputs, output_dir=tmp_path / "other")
    report = job.wait()
    session.close()
    assert report.ok, report.summary()
    assert all(r.output is not None and (duration_of(r.output) or 0) > 0.5 for r in report)
    _wait(lambda: not any(_session_resources(offline, session_id).values()), "the adopted resources to go")


@pytest.mark.parametrize("ident", ["bt-20260101t0000-deadbeef", "bt-20260101t0000-deadbeef-job2", "nonsense"])
def test_attach_to_an_unknown_id_raises_and_touches_nothing(offline: OfflineAzure, ident: str) -> None:
    def everything() -> tuple[list[str], list[str], list[str]]:
        batch = offline.batch
        return [p.id for p in batch.pools()], [j.id for j in batch.jobs()], offline.containers()

    before = everything()
    with pytest.raises(AttachError) as info:
        TranscodeSession.attach(ident, offline.config(), output_dir="never-created")
    assert info.value.ident == ident
    assert "no job" in str(info.value) or "not a batch-transcode" in str(info.value)
    assert isinstance(info.value, LookupError)
    assert everything() == before
    assert not Path("never-created").exists()


def test_attach_on_the_local_backend_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="skipped"):
        TranscodeSession.attach("bt-20260101t0000-deadbeef", LocalConfig(), output_dir=tmp_path)  # type: ignore[arg-type]
