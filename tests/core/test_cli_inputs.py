"""How ``convert`` finds its inputs and says so: the output folder is never searched, the
same file named twice is converted once with a note, what a search passes over is
counted (and listed with ``-v``), empty files fail as such, paths are normalised."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import batch_transcode
from batch_transcode import LocalConfig, TranscodeSession
from batch_transcode._cli import main

MediaFactory = Callable[..., Path]


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, dict[str, Any], str]:
    """``batch-transcode convert ... --json -``: exit code, report, standard error."""
    capsys.readouterr()
    code = main(["convert", *map(str, argv), "--workers", "2", "--no-progress", "--json", "-"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_an_output_folder_inside_the_input_folder_is_never_searched(
    tmp_path: Path, make_media: MediaFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    make_media(tmp_path / "nest" / "a.mp4")
    make_media(tmp_path / "nest" / "b.mp4")
    statuses = []
    for _ in range(3):
        code, report, err = _run(capsys, tmp_path / "nest", "-o", tmp_path / "nest" / "out")
        assert code == 0, err
        assert report["summary"]["total"] == 2
        statuses.append([f["status"] for f in report["files"]])
    assert statuses == [["converted"] * 2, ["skipped"] * 2, ["skipped"] * 2]
    assert "1 the output folder (never searched for inputs)" in err
    assert not (tmp_path / "nest" / "out" / "out").exists()
    assert sorted(p.name for p in (tmp_path / "nest" / "out").iterdir()) == ["a.mp3", "b.mp3"]


def test_outputs_that_are_no_media_may_go_next_to_their_inputs(
    tmp_path: Path, make_media: MediaFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rule for -o equal to an input folder: allowed only when no output has a media
    extension, so that no later search takes an output for an input (thumbnails)."""
    make_media(tmp_path / "in" / "a.mp4")
    for expected in ("converted", "skipped"):
        code, report, err = _run(capsys, tmp_path / "in", "-o", tmp_path / "in", "--to", "thumbnail")
        assert code == 0, err
        assert [f["status"] for f in report["files"]] == [expected]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.jpg", "a.mp4"]
    assert main(["convert", str(tmp_path / "in"), "-o", str(tmp_path / "in"), "--to", "mp3,thumbnail"]) == 2
    assert "folder of their own" in capsys.readouterr().err


def test_the_same_file_named_twice_is_converted_once_with_a_note(
    tmp_path: Path, make_media: MediaFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_media(tmp_path / "in" / "a.mp4")
    make_media(tmp_path / "in" / "b.mp4")
    (tmp_path / "in" / "also-a.mp4").symlink_to("a.mp4")
    code, report, err = _run(capsys, a, a, tmp_path / "in", "-o", tmp_path / "out")
    assert code == 0, err
    assert [Path(f["source"]).name for f in report["files"]] == ["a.mp4", "b.mp4"]
    assert "3 repeated input(s) left out" in err and "each file is converted once" in err
    assert str(a) in err


def test_what_a_search_passes_over_is_counted_and_listed_with_v(
    tmp_path: Path, make_media: MediaFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    make_media(folder / "a.mp4")
    passed_over = {
        "readme.txt": lambda p: p.write_text("notes"),
        "noextension": lambda p: p.write_text("?"),
        "gone.mp4": lambda p: p.symlink_to("moved.mp4"),
        "loop.mp4": lambda p: p.symlink_to("loop.mp4"),
        "pipe.mp4": os.mkfifo,
        "._a.mp4": lambda p: p.write_bytes(b"\0" * 10),
        "linked": lambda p: p.symlink_to(folder.parent),
    }
    for name, make in passed_over.items():
        make(folder / name)
    code, report, err = _run(capsys, folder, "-o", tmp_path / "out")
    assert code == 0 and report["summary"]["total"] == 1
    note = "passed over 7 path(s) in the folders given"
    assert note in err and "(-v lists them)" in err
    assert not any(name in err for name in passed_over)

    capsys.readouterr()
    assert main(["-v", "convert", str(folder), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    for name, reason in [
        ("readme.txt", "no media file extension"),
        ("noextension", "no media file extension"),
        ("gone.mp4", "a link whose target does not exist"),
        ("loop.mp4", "a link loop"),
        ("pipe.mp4", "not a regular file"),
        ("._a.mp4", "hidden"),
        ("linked", "a link to a folder (not followed)"),
    ]:
        assert f"passed over {folder / name}: {reason}" in err, err


def test_an_empty_file_fails_as_an_empty_file_and_the_others_convert(
    tmp_path: Path, make_media: MediaFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    make_media(tmp_path / "in" / "a.mp4")
    (tmp_path / "in" / "empty.mp4").touch()
    code, report, _ = _run(capsys, tmp_path / "in", "-o", tmp_path / "out")
    assert code == 1
    by_name = {Path(f["source"]).name: f for f in report["files"]}
    assert by_name["a.mp4"]["status"] == "converted"
    assert by_name["empty.mp4"]["status"] == "failed"
    assert by_name["empty.mp4"]["error"].startswith("empty file (0 bytes)")
    assert not (tmp_path / "out" / "empty.mp3").exists()


def test_paths_are_normalised_in_the_text_and_the_json(
    tmp_path: Path,
    make_media: MediaFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_media(tmp_path / "in" / "a.mp4")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["convert", "work/../in", "-o", "work/../out1", "--no-progress", "--json", "r.json"]) == 0
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["files"][0]["source"] == str(tmp_path / "in" / "a.mp4")
    assert report["files"][0]["output"] == str(tmp_path / "out1" / "a.mp3")
    assert f"outputs are in {tmp_path / 'out1'}\n" in text and ".." not in text


def test_v_on_a_run_that_ended_normally_does_not_log_cancelling(
    tmp_path: Path, make_media: MediaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    make_media(tmp_path / "a.mp4")
    caplog.set_level(logging.INFO, logger="batch_transcode")
    with TranscodeSession(LocalConfig(workers=1)) as session:
        assert session.convert([tmp_path / "a.mp4"], output_dir=tmp_path / "out").ok
    assert "cancelling" not in caplog.text
    assert "converted" in caplog.text  # the log was captured


def test_a_rerun_bar_says_how_many_were_done_before(
    tmp_path: Path, make_media: MediaFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    make_media(tmp_path / "in" / "a.mp4")
    make_media(tmp_path / "in" / "b.mp4")
    argv = ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "1"]
    assert main(argv) == 0
    (tmp_path / "out" / "b.mp3").unlink()
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "to mp3 (1 of 2 already done)" in captured.err
    assert "2/2 converted" in captured.out and "(1 already done, skipped)" in captured.out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"batch-transcode {batch_transcode.__version__}"


def test_through_the_python_api_too(
    tmp_path: Path, make_media: MediaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The same file twice is converted once (a warning says so); the output folder
    inside the input folder is never searched; what a search passed over is logged."""
    a = make_media(tmp_path / "in" / "a.mp4")
    (tmp_path / "in" / "notes.txt").write_text("notes")
    caplog.set_level(logging.INFO, logger="batch_transcode")
    with TranscodeSession(LocalConfig(workers=1)) as session:
        first = session.convert([a, tmp_path / "in", a], output_dir=tmp_path / "in" / "mp3")
        second = session.convert([tmp_path / "in"], output_dir=tmp_path / "in" / "mp3")
    assert [r.source for r in first] == [a] and first.ok
    assert [(r.source, r.status.value) for r in second] == [(a, "skipped")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 repeated input(s) left out" in w for w in warnings), warnings
    assert "1 the output folder (never searched for inputs)" in caplog.text
    assert "1 no media file extension" in caplog.text
