"""Hostile file names through both backends: every file converts, nothing executes,
no two outputs collide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batch_transcode import LocalConfig, TranscodeSession
from batch_transcode.testing import OfflineAzure
from helpers import NOTHING_LEFT, DurationOf, MediaFactory

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


def _canaries(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        if root.exists():
            found += [p for p in root.rglob(f"{CANARY}*") if p.name == CANARY]
    return found


def _check(report: object, inputs: list[Path], duration_of: DurationOf) -> None:
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
    tmp_path: Path, make_media: MediaFactory, duration_of: DurationOf, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    inputs = [make_media(tmp_path / "in" / name) for name in CORPUS]
    with TranscodeSession(LocalConfig(workers=2)) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    _check(report, inputs, duration_of)
    assert _canaries(tmp_path, Path(os.getcwd())) == []


BACKSLASH = "back\\slash.mp4"


def test_backslash_name_local(tmp_path: Path, make_media: MediaFactory) -> None:
    inputs = [make_media(tmp_path / "in" / BACKSLASH)]
    with TranscodeSession(LocalConfig(workers=1)) as session:
        assert session.convert(inputs, output_dir=tmp_path / "out").ok


@pytest.mark.azure
def test_backslash_name_azure(offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory) -> None:
    # Also the name a backslash is escaped to, which must stay a different blob.
    inputs = [make_media(tmp_path / "in" / name) for name in (BACKSLASH, BACKSLASH.replace("\\", "%5C"))]
    with TranscodeSession(offline.config()) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    assert report.ok, report.summary()
    assert len({r.output for r in report}) == 2


@pytest.mark.azure
def test_hostile_names_azure(
    offline: OfflineAzure,
    tmp_path: Path,
    make_media: MediaFactory,
    duration_of: DurationOf,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    inputs = [make_media(tmp_path / "in" / name) for name in CORPUS]
    with TranscodeSession(offline.config()) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    _check(report, inputs, duration_of)
    workdir = offline.batch.workdir
    assert workdir is not None
    assert _canaries(tmp_path, workdir) == []
    assert offline.leaks(timeout=30) == NOTHING_LEFT


@pytest.mark.azure
def test_hostile_names_azure_keyless(
    tmp_path: Path,
    make_media: MediaFactory,
    duration_of: DurationOf,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The corpus on Microsoft Entra ID alone: no key or connection string in the process
    environment or the config, Shared Key refused by both services, user-delegation SAS."""
    monkeypatch.chdir(tmp_path)
    for name in ("AZURE_BATCH_ACCESS_KEY", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY"):
        monkeypatch.delenv(name, raising=False)
    inputs = [make_media(tmp_path / "in" / name) for name in [*CORPUS, BACKSLASH]]
    with OfflineAzure(entra_id=True) as oa:
        config = oa.config()
        assert (config.batch_key, config.storage_key, config.storage_connection_string) == (None, None, None)
        assert not [k for k in os.environ if k.startswith("AZURE_") and ("KEY" in k or "CONNECTION" in k)]
        with TranscodeSession(config) as session:
            report = session.convert(inputs, output_dir=tmp_path / "out")
        _check(report, inputs, duration_of)
        assert oa.storage_proxy is not None and oa.storage_proxy.refused == 0
        workdir = oa.batch.workdir
        assert workdir is not None
        assert _canaries(tmp_path, workdir) == []
        assert oa.leaks(timeout=30) == NOTHING_LEFT
