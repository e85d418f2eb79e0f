"""Shared fixtures: real ffmpeg and small generated media."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode._ffmpeg import find_ffmpeg
from batch_transcode.samples import decoded_duration


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return find_ffmpeg()


def _generate(ffmpeg: str, path: Path, *, seconds: float, audio: bool, video: bool = True) -> Path:
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=64x48:rate=5"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    if video:
        args += ["-c:v", "mpeg4"]
    if audio:
        args += ["-c:a", "aac"]
    args += ["-shortest", str(path)]
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
    return path


@pytest.fixture(scope="session")
def media_templates(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> dict[str, Path]:
    """Generated once per test run: a short video with audio, one without audio, a longer one."""
    root = tmp_path_factory.mktemp("media-templates")
    return {
        "video": _generate(ffmpeg_exe, root / "video.mp4", seconds=1, audio=True),
        "silent": _generate(ffmpeg_exe, root / "silent.mp4", seconds=1, audio=False),
        "long": _generate(ffmpeg_exe, root / "long.mp4", seconds=60, audio=True),
    }


MediaFactory = Callable[..., Path]


@pytest.fixture
def make_media(media_templates: dict[str, Path]) -> MediaFactory:
    """``make_media(path, kind="video"|"silent"|"long")`` copies a template to ``path``."""

    def make(path: Path, kind: str = "video") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(media_templates[kind], path)
        return path

    return make


@pytest.fixture
def duration_of(ffmpeg_exe: str) -> Callable[[Path], float | None]:
    return lambda p: decoded_duration(p, ffmpeg=ffmpeg_exe)
