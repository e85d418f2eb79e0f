from __future__ import annotations

import _thread
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode import (
    ConfigError,
    FileResult,
    LocalConfig,
    MissingInputError,
    ProgressEvent,
    SessionStateError,
    TranscodeFailedError,
    TranscodeSession,
)
from helpers import alive, group_members, partial_files

HOSTILE_NAMES = [
    "with space.mp4",
    'it\'s "quoted".mp4',
    "$(touch PWNED).mp4",
    "`touch PWNED`.mp4",
    "a; touch PWNED.mp4",
    "a | touch PWNED.mp4",
    "-leading-dash.mp4",
    "üñíçødé 视频 🎵.mp4",
    "new\nline.mp4",
    "colon:name.mp4",
    "x" * 200 + ".mp4",
    "Case.mp4",
    "case.mp4",
    "CASE.mp4",
    "back\\slash.mp4",
    "tab\tand*star?.mp4",
]


def test_hostile_names_convert_and_run_nothing(
    tmp_path: Path,
    make_media: Callable[..., Path],
    duration_of: Callable[[Path], float | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "in"
    sources = [make_media(src / name) for name in HOSTILE_NAMES]
    monkeypatch.chdir(tmp_path)
    with TranscodeSession(LocalConfig(workers=2)) as s:
        report = s.convert(sources, output_dir=tmp_path / "out", preset="mp3")
    assert report.ok, report.summary()
    for name, result in zip(HOSTILE_NAMES, report, strict=True):
        assert result.output == tmp_path / "out" / (name[: -len(".mp4")] + ".mp3")
        duration = duration_of(result.output)
        assert duration is not None and abs(duration - 1.0) < 0.15, (name, duration)
    assert not list(tmp_path.rglob("PWNED")), "a file name was executed"
    assert not partial_files(tmp_path / "out")


def test_equal_basenames_in_different_folders(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    a = make_media(tmp_path / "in" / "day1" / "talk.mp4")
    b = make_media(tmp_path / "in" / "day2" / "talk.mp4")
    with TranscodeSession(LocalConfig(workers=2)) as s:
        report = s.convert([a, b], output_dir=tmp_path / "out")
    assert report.ok
    assert [r.output for r in report] == [tmp_path / "out/day1/talk.mp3", tmp_path / "out/day2/talk.mp3"]
    assert all(r.output is not None and r.output.stat().st_size > 1000 for r in report)


def test_bad_files_fail_cleanly_and_the_rest_convert(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    good1 = make_media(tmp_path / "good1.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    silent = make_media(tmp_path / "silent.mp4", "silent")
    good2 = make_media(tmp_path / "good2.mp4")
    events: list[ProgressEvent] = []
    with TranscodeSession(LocalConfig(workers=2)) as s:
        report = s.convert([good1, text, silent, good2], output_dir=tmp_path / "out", progress=events.append)
    assert [r.source for r in report] == [good1, text, silent, good2]
    assert [r.ok for r in report] == [True, False, False, True]
    assert not report.ok
    assert [r.source for r in report.failed] == [text, silent]
    bad_text, bad_silent = report.failed
    assert bad_text.output is None and bad_text.error is not None
    assert bad_text.error.splitlines()[0] == "ffmpeg cannot read this file as media"
    assert len(bad_text.error.splitlines()) > 1, "the tail of ffmpeg's stderr is included"
    assert bad_silent.error is not None
    assert bad_silent.error.splitlines()[0] == "the input has no audio stream to convert"
    assert not (tmp_path / "out" / "notes.mp3").exists()
    assert not (tmp_path / "out" / "silent.mp3").exists()
    assert not partial_files(tmp_path / "out")
    finished = [e for e in events if e.kind == "finished"]
    assert sorted(e.done for e in finished) == [1, 2, 3, 4]
    assert {e.total for e in events} == {4}
    assert len([e for e in events if e.kind == "started"]) == 4
    with pytest.raises(TranscodeFailedError, match="2 file"):
        report.raise_for_failures()


def test_missing_inputs_raise_before_any_work(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    good = make_media(tmp_path / "good.mp4")
    with TranscodeSession(LocalConfig()) as s, pytest.raises(MissingInputError) as info:
        s.convert([good, tmp_path / "a.mp4", tmp_path / "b.mp4"], output_dir=tmp_path / "out")
    assert set(info.value.paths) == {tmp_path / "a.mp4", tmp_path / "b.mp4"}
    assert not (tmp_path / "out").exists()


def test_keyboard_interrupt_leaves_no_partial_outputs(
    tmp_path: Path, make_media: Callable[..., Path], duration_of: Callable[[Path], float | None]
) -> None:
    sources = [make_media(tmp_path / "in" / f"long{i}.mp4", "long") for i in range(6)]
    out = tmp_path / "out"
    fired = threading.Event()

    def on_progress(event: ProgressEvent) -> None:
        # Interrupt the main thread once ffmpeg processes are busy writing.
        if event.kind == "started" and not fired.is_set():
            fired.set()
            threading.Timer(0.3, _thread.interrupt_main).start()

    session = TranscodeSession(LocalConfig(workers=2))
    with pytest.raises(KeyboardInterrupt), session:
        session.convert(sources, output_dir=out, preset="flac", progress=on_progress)
        time.sleep(5)  # the interrupt may land after a very fast run
    assert fired.is_set()
    assert not partial_files(out), "temporary or half-written outputs were left behind"
    for output in out.rglob("*.flac"):
        assert duration_of(output) == pytest.approx(60.0, abs=0.2), "a final name must be complete"


def test_session_states(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    src = make_media(tmp_path / "a.mp4")
    s = TranscodeSession(LocalConfig())
    with pytest.raises(SessionStateError, match="with TranscodeSession"):
        s.convert([src], output_dir=tmp_path / "o")
    with s, pytest.raises(SessionStateError, match="opened once"), s:
        pass
    s.close()
    s.close()  # harmless
    with pytest.raises(SessionStateError, match="closed"):
        s.convert([src], output_dir=tmp_path / "o")


def test_per_file_timeout(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    src = make_media(tmp_path / "long.mp4", "long")
    slow = tmp_path / "slow.sh"
    pid_file, finished = tmp_path / "pid", tmp_path / "finished"
    real = os.environ.get("PATH", "")
    # a stand-in ffmpeg that would take 30 s, and notes its pid and whether it got to the end
    slow.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nsleep 30\ntouch "{finished}"\n')
    slow.chmod(0o755)
    with TranscodeSession(LocalConfig(ffmpeg=slow, timeout=0.5)) as s:
        report = s.convert([src], output_dir=tmp_path / "out")
    # convert() returned without waiting for it: it was stopped, with its children
    pid = int(pid_file.read_text())
    assert not finished.exists()
    assert not alive(pid) and group_members(pid) == []
    (result,) = report
    assert not result.ok and result.error is not None
    assert result.error.startswith("ffmpeg did not finish in time")
    assert real == os.environ.get("PATH", "")


def test_file_result_shape(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    src = make_media(tmp_path / "a.mp4")
    with TranscodeSession() as s:
        (result,) = s.convert([str(src)], output_dir=str(tmp_path / "out"), preset="opus")
    assert isinstance(result, FileResult)
    assert result.source == src and result.ok and result.error is None
    assert result.output == tmp_path / "out" / "a.opus"


def test_rerun_skips_complete_outputs(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    a = make_media(tmp_path / "in" / "a.mp4")
    b = make_media(tmp_path / "in" / "b.mp4")
    out = tmp_path / "out"
    with TranscodeSession(LocalConfig()) as s:
        first = s.convert([a], output_dir=out)
        assert first.ok and not first[0].skipped
        stamp = (out / "a.mp3").stat().st_mtime_ns
        second = s.convert([a, b], output_dir=out)
        assert [r.skipped for r in second] == [True, False]
        assert second.ok and "1 already done" in second.summary()
        assert (out / "a.mp3").stat().st_mtime_ns == stamp
        third = s.convert([a, b], output_dir=out, skip_existing=False)
        assert [r.skipped for r in third] == [False, False]
        assert (out / "a.mp3").stat().st_mtime_ns != stamp


def test_an_input_newer_than_its_output_is_converted_again(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    a = make_media(tmp_path / "a.mp4")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mp3").write_bytes(b"stale")
    os.utime(out / "a.mp3", (1, 1))
    with TranscodeSession(LocalConfig()) as s:
        (result,) = s.convert([a], output_dir=out)
    assert not result.skipped and (out / "a.mp3").stat().st_size > 1000


_FORGOTTEN_SESSION = """
import logging, sys
from batch_transcode import LocalConfig, TranscodeSession

logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
kept = TranscodeSession(LocalConfig()).open()  # never closed: the program just ends
closed = TranscodeSession(LocalConfig()).open()
closed.close()
"""


def test_open_sessions_are_closed_at_interpreter_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FORGOTTEN_SESSION], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    closing = [line for line in done.stdout.splitlines() if "at interpreter exit" in line]
    assert closing == [
        "closing <TranscodeSession backend=local state=open> at interpreter exit; "
        "use sessions in a 'with' block"
    ]


def test_a_local_session_has_no_session_id_and_cannot_attach(tmp_path: Path) -> None:
    with TranscodeSession(LocalConfig()) as s:
        assert s.session_id is None and s.backend == "local"
    with pytest.raises(ConfigError, match="nothing running to attach to"):
        TranscodeSession.attach("bt-x", LocalConfig(), output_dir=tmp_path)  # type: ignore[arg-type]
