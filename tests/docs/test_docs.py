"""The docs stay true: every code block in docs/ and README.md is executed.

- ``python`` blocks run in a scratch folder holding sample media (``talk.mp4``,
  ``talks/``, ``videos/``; the name ``paths`` is bound to sample files), with the
  ``AZURE_*`` variables pointing at an OfflineAzure, so ``AzureConfig.from_env()``
  examples run for real. A block that defines pytest tests is run by pytest.
- ``bash``/``text`` blocks: every line that runs ``batch-transcode`` is executed
  (``emulator``, which runs until Ctrl-C, is covered by the harness's own tests);
  install lines (``pip``/``npm``) are not run here. In a block that attaches to the
  docs' example session id (``DOCS_SESSION_ID``), that id stands for a session left
  behind by a process that converted the sample talks and died without closing it.
- A block preceded by ``<!-- docs-test: skip -->`` is a fragment and is not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from batch_transcode import AzureConfig, LocalConfig, RetryPolicy
from batch_transcode.samples import make_sample_media
from batch_transcode.testing import OfflineAzure
from helpers import NOTHING_LEFT, leave_session_behind, run_python

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- docs-test: skip -->\s*)?^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(languages: set[str]) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for i, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8"))):
            skip, lang, code = match.groups()
            if not skip and lang in languages:
                found.append((f"{page.relative_to(ROOT)}#{i}", code))
    return found


PYTHON = _blocks({"python"})
SHELL = _blocks({"bash", "sh", "text", "console"})


@pytest.fixture
def scratch(
    tmp_path: Path,
    offline: OfflineAzure,
    monkeypatch: pytest.MonkeyPatch,
    point_env_at: Callable[[OfflineAzure], None],
) -> list[Path]:
    """A folder like a user's: sample media under the names the docs use."""
    monkeypatch.chdir(tmp_path)
    point_env_at(offline)
    made = make_sample_media(tmp_path / "talks", count=2)
    (tmp_path / "talks" / "day 2").mkdir()
    made[1].rename(tmp_path / "talks" / "day 2" / "panel.mov")
    made[0].rename(tmp_path / "talks" / "keynote.mp4")
    make_sample_media(tmp_path / "videos", count=2)
    (tmp_path / "talk.mp4").write_bytes((tmp_path / "talks" / "keynote.mp4").read_bytes())
    return [tmp_path / "talks" / "keynote.mp4", tmp_path / "talks" / "day 2" / "panel.mov"]


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[w for w, _ in PYTHON])
def test_python_blocks_run(where: str, code: str, scratch: list[Path], offline: OfflineAzure) -> None:
    if re.search(r"^def test_", code, re.M):
        test_file = Path("test_from_docs.py")
        test_file.write_text(code, encoding="utf-8")
        proc = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", test_file, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return
    exec(compile(code, where, "exec"), {"__name__": "__docs__", "paths": scratch})  # noqa: S102
    # Whatever a docs example did on Azure, it left nothing behind.
    assert offline.leaks(timeout=15) == NOTHING_LEFT


def _cli_lines(code: str) -> list[list[str]]:
    commands = []
    for line in code.splitlines():
        line = line.strip().removeprefix("$ ")
        if not line.startswith("batch-transcode "):
            continue
        argv = shlex.split(line, comments=True)
        if argv[1] == "emulator":
            continue
        commands.append(argv)
    return commands


#: The session id of the docs' ``attach`` examples (see the module docstring).
DOCS_SESSION_ID = "bt-20261201t0930-5e6f7a8b"


SHELL_WITH_CLI = [(w, c) for w, c in SHELL if _cli_lines(c)]


@pytest.mark.parametrize(("where", "code"), SHELL_WITH_CLI, ids=[w for w, _ in SHELL_WITH_CLI])
def test_command_lines_run(where: str, code: str, scratch: list[Path], offline: OfflineAzure) -> None:
    exe = Path(sys.executable).with_name("batch-transcode")
    env = {**os.environ, "TQDM_DISABLE": "1"}
    if any(argv[1] == "attach" and DOCS_SESSION_ID in argv for argv in _cli_lines(code)):
        real_id = leave_session_behind(offline, scratch, Path("crashed-run"))
        code = code.replace(DOCS_SESSION_ID, real_id)
    for argv in _cli_lines(code):
        proc = subprocess.run(
            [str(exe), *argv[1:]], capture_output=True, text=True, timeout=300, env=env, check=False
        )
        assert proc.returncode == 0, f"{where}: {shlex.join(argv)}\n{proc.stdout}\n{proc.stderr}"
    # Whatever a command did on Azure, it left nothing behind (a session attached to included).
    assert offline.leaks(timeout=30) == NOTHING_LEFT


@pytest.mark.parametrize("cls", [LocalConfig, AzureConfig, RetryPolicy])
def test_configuration_reference_lists_every_setting(cls: type) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for field in attrs.fields(cls):
        if field.init:
            assert f"`{field.name}`" in text, f"{cls.__name__}.{field.name} is missing from configuration.md"
