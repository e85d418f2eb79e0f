"""Shared fixtures: real ffmpeg and small generated media, an OfflineAzure per module,
fast retries, a scripted Batch endpoint, the cleanup command.

The plain helpers behind them are in ``helpers.py`` (this folder is put on ``sys.path``
here, so test modules can ``from helpers import ...``)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from batch_transcode import AzureConfig, LocalConfig, TranscodeSession
from batch_transcode._ffmpeg import find_ffmpeg
from batch_transcode.samples import decoded_duration
from batch_transcode.testing import OfflineAzure
from helpers import (
    Answer,
    DurationOf,
    MediaFactory,
    ScriptedEndpoint,
    azure_config,
    copy_file,
    make_clip,
)
from split_media import H264, H264_SMALL, make_split_clips


@pytest.fixture(scope="session", autouse=True)
def _interruptible() -> None:
    """Ctrl-C tests need Python's KeyboardInterrupt handler: a test run started as a
    background job of a shell without job control has SIGINT ignored, and then
    ``_thread.interrupt_main()`` does nothing."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return find_ffmpeg()


@pytest.fixture(scope="session")
def media_templates(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> dict[str, Path]:
    """Generated once per test run: a short video with audio, one without audio, a longer one."""
    root = tmp_path_factory.mktemp("media-templates")
    return {
        "video": make_clip(ffmpeg_exe, root / "video.mp4", seconds=1),
        "silent": make_clip(ffmpeg_exe, root / "silent.mp4", seconds=1, audio=False),
        "long": make_clip(ffmpeg_exe, root / "long.mp4", seconds=60),
    }


@pytest.fixture
def make_media(media_templates: dict[str, Path]) -> MediaFactory:
    """``make_media(path, kind="video"|"silent"|"long")`` copies a template to ``path``."""

    def make(path: Path, kind: str = "video") -> Path:
        return copy_file(media_templates[kind], path)

    return make


@pytest.fixture
def duration_of(ffmpeg_exe: str) -> DurationOf:
    return lambda p: decoded_duration(p, ffmpeg=ffmpeg_exe)


@pytest.fixture(scope="module")
def offline() -> Iterator[OfflineAzure]:
    """One OfflineAzure (Azurite and the Batch emulator) for the test module."""
    with OfflineAzure() as oa:
        yield oa


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """Operation retries without waits (the attempt caps stay)."""
    from batch_transcode import _retry

    _retry.set_testing(True)
    yield
    _retry.set_testing(False)


@pytest.fixture
def point_env_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[OfflineAzure], None]:
    """``point_env_at(oa)``: set the ``AZURE_*`` variables to ``oa``'s for this test."""

    def point(oa: OfflineAzure) -> None:
        for name, value in oa.env.items():
            monkeypatch.setenv(name, value)

    return point


@pytest.fixture
def run_cleanup(point_env_at: Callable[[OfflineAzure], None]) -> Callable[..., int]:
    """``run_cleanup(oa, session_id, dry_run=False)``: ``batch-transcode cleanup --session
    <session_id> --older-than 0s [--dry-run]`` in this process, against ``oa``."""
    from batch_transcode._cli import main

    def run(oa: OfflineAzure, session_id: str, *, dry_run: bool = False) -> int:
        point_env_at(oa)
        flags = ["--dry-run"] if dry_run else []
        return main(["cleanup", "--session", session_id, "--older-than", "0s", *flags])

    return run


@pytest.fixture
def scripted_batch() -> Iterator[Callable[..., tuple[ScriptedEndpoint, AzureConfig]]]:
    """``scripted_batch(answer, **config) -> (endpoint, config)``: a :class:`ScriptedEndpoint`
    answering with ``answer`` and an AzureConfig pointing at it (``config`` overrides);
    closed when the test ends."""
    started: list[ScriptedEndpoint] = []

    def start(answer: Answer, **config: Any) -> tuple[ScriptedEndpoint, AzureConfig]:
        endpoint = ScriptedEndpoint(answer)
        started.append(endpoint)
        return endpoint, azure_config(batch_endpoint=endpoint.url, batch_account="acct", **config)

    yield start
    for endpoint in started:
        endpoint.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> dict[str, Path]:
    """The clips the split tests cut (tests/split_media.py), made once per module."""
    return make_split_clips(ffmpeg_exe, tmp_path_factory.mktemp("split-clips"))


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path], ffmpeg_exe: str) -> Path:
    """The split tests' clips (tests/split_media.py), each encoded whole (no segments), to compare with."""
    out = tmp_path_factory.mktemp("whole")
    with TranscodeSession(LocalConfig(workers=2, ffmpeg=ffmpeg_exe)) as s:
        s.convert(list(clips.values()), output_dir=out, preset=[H264, H264_SMALL]).raise_for_failures()
    return out
