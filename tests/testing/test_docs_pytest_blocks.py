"""The pytest examples in docs/offline-testing.md run as a user's test suite would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import run_python

PAGE = Path(__file__).resolve().parents[2] / "docs" / "offline-testing.md"
BLOCK = re.compile(r"<!-- docs-test: pytest -->\s*```python\n(.*?)```", re.S)

pytestmark = pytest.mark.azure


def test_pytest_examples_pass(tmp_path: Path) -> None:
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert blocks
    for i, code in enumerate(blocks):
        (tmp_path / f"test_example_{i}.py").write_text(code, encoding="utf-8")
    result = run_python(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", tmp_path, cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
