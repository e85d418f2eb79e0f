"""Hostile file names through both backends: every file converts, nothing executes,
no two outputs collide."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode import LocalConfig, TranscodeSession
from batch_transcode.testing import OfflineAzure

CANARY = "CANARY-bt-hostile"

CORPUS = [
    "it's.mp4",
    'say "hi".mp4',
    f"$(touch {CANARY}).mp4",
    f"`touch {CANARY}`.mp4",
    f"a; touch {CANARY}.mp4",
    f"a | touch {CANARY}.mp4",
    f"a && touch {CANARY} #.mp4",
    f"new\nline; touch {CANARY}.mp4",
    "-y.mp4",
    "--help.mp4",
    "-i.mp4",
    "x" * 200 + ".mp4",
    "ünïcødé 日本語 🎵.mp4",
    "Case.mp4",
    "case.mp4",
    "CASE.mp4",
    "ß.mp4",
    "SS.mp4",
    "tab\there.mp4",
    "*.mp4",
    "?.mp4",
    "%s %n %x.mp4",
    "${HOME}.mp4",
    "sub dir/$(touch " + CANARY + ")/inner.mp4",
]


def _corpus(root: Path, clip: Path) -> list[Path]:
    return _corpus_of(CORPUS, root, clip)


def _corpus_of(names: list[str], root: Path, clip: Path) -> list[Path]:
    paths = []
    for name in names:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, target)
        paths.append(target)
    return paths


def _canaries(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        if root.exists():
            found += [p for p in root.rglob(f"{CANARY}*") if p.name == CANARY]
    return found


def _check(report: object, inputs: list[Path], duration_of: Callable[[Path], float | None]) -> None:
    results = list(report)  # type: ignore[call-overload]
    assert [r.source for r in results] == inputs
    bad = [(r.source.name, r.error) for r in results if not r.ok]
    assert bad == []
    outputs = [r.output for r in results]
    assert len(set(outputs)) == len(outputs), "two inputs wrote the same output"
    for r in results:
        assert r.output is not None and r.output.is_file()
        assert r.output.stem == r.source.stem  # named after its own input
        d = duration_of(r.output)
        assert d is not None and abs(d - 1.0) < 0.15, (r.output, d)


def test_hostile_names_local(
    tmp_path: Path, clip: Path, duration_of: Callable[[Path], float | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    inputs = _corpus(tmp_path / "in", clip)
    with TranscodeSession(LocalConfig(workers=2)) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    _check(report, inputs, duration_of)
    assert _canaries(tmp_path, Path(os.getcwd())) == []


BACKSLASH = "back\\slash.mp4"


def test_backslash_name_local(tmp_path: Path, clip: Path) -> None:
    inputs = _corpus_of([BACKSLASH], tmp_path / "in", clip)
    with TranscodeSession(LocalConfig(workers=1)) as session:
        assert session.convert(inputs, output_dir=tmp_path / "out").ok


@pytest.mark.azure
def test_backslash_name_azure(offline: OfflineAzure, tmp_path: Path, clip: Path) -> None:
    # Also the name a backslash is escaped to, which must stay a different blob.
    inputs = _corpus_of([BACKSLASH, BACKSLASH.replace("\\", "%5C")], tmp_path / "in", clip)
    with TranscodeSession(offline.config()) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    assert report.ok, report.summary()
    assert len({r.output for r in report}) == 2


@pytest.mark.azure
def test_hostile_names_azure(
    offline: OfflineAzure,
    tmp_path: Path,
    clip: Path,
    duration_of: Callable[[Path], float | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    inputs = _corpus(tmp_path / "in", clip)
    with TranscodeSession(offline.config()) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    _check(report, inputs, duration_of)
    workdir = offline.batch.workdir
    assert workdir is not None
    assert _canaries(tmp_path, workdir) == []
    assert offline.leaks(timeout=30) == {"pools": [], "jobs": [], "containers": []}
