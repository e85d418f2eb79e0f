from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode._cli import main
from helpers import env_without_azure, run_python, wait_until


def test_convert_walks_folders_and_keeps_layout(
    tmp_path: Path, make_media: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    make_media(tmp_path / "in" / "a.mp4")
    make_media(tmp_path / "in" / "sub" / "b.mkv")
    (tmp_path / "in" / "readme.txt").write_text("not media")
    code = main(
        ["convert", str(tmp_path / "in"), "--to", "wav", "-o", str(tmp_path / "out"), "--no-progress"]
    )
    assert code == 0
    assert (tmp_path / "out" / "a.wav").stat().st_size > 1000
    assert (tmp_path / "out" / "sub" / "b.wav").stat().st_size > 1000
    assert "2/2 converted" in capsys.readouterr().out


def test_convert_exit_1_when_a_file_fails(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    good = make_media(tmp_path / "good.mp4")
    silent = make_media(tmp_path / "silent.mp4", "silent")
    code = main(["convert", str(good), str(silent), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    assert (tmp_path / "out" / "good.mp3").exists()


def test_convert_exit_2_on_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o")]) == 2
    assert "missing.mp4" in capsys.readouterr().err
    assert main(["convert", str(tmp_path), "-o", str(tmp_path / "o")]) == 2  # no media found
    with pytest.raises(SystemExit) as info:
        main(["convert", str(tmp_path), "-o", str(tmp_path / "o"), "--to", "mp5"])
    assert info.value.code == 2
    proc = run_python(
        "-m", "batch_transcode", "convert", tmp_path, "-o", "x", "--backend", "azure", env=env_without_azure()
    )
    assert proc.returncode == 2
    assert "AZURE_BATCH_ENDPOINT" in proc.stderr


def test_demo_converts_generated_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-o", str(tmp_path / "demo"), "--count", "2", "--no-progress"]) == 0
    outputs = sorted((tmp_path / "demo").glob("*.mp3"))
    assert [p.name for p in outputs] == ["sample 01.mp3", "sample 02.mp3"]
    assert str(tmp_path / "demo") in capsys.readouterr().out


def test_ctrl_c_on_the_cli_leaves_no_partial_files(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    for i in range(6):
        make_media(tmp_path / "in" / f"long{i}.mp4", "long")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_transcode", "convert", str(tmp_path / "in"), "--to", "flac",
         "-o", str(out), "--workers", "2", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    wait_until(lambda: list(out.rglob(".bt-*")), interval=0.02, what="ffmpeg to start writing")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not list(out.rglob(".bt-*"))
