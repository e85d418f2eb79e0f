"""The docs stay true: marked code blocks run, and the configuration reference is complete."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from batch_transcode import AzureConfig, LocalConfig, RetryPolicy

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUNNABLE = re.compile(r"<!-- docs-test: run -->\s*```python\n(.*?)```", re.S)


def _runnable_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        for i, code in enumerate(RUNNABLE.findall(page.read_text())):
            blocks.append((f"{page.name}#{i}", code))
    return blocks


@pytest.mark.parametrize(("where", "code"), _runnable_blocks(), ids=[w for w, _ in _runnable_blocks()])
def test_marked_code_blocks_run(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})  # noqa: S102 - our own docs


@pytest.mark.parametrize("cls", [LocalConfig, AzureConfig, RetryPolicy])
def test_configuration_reference_lists_every_setting(cls: type) -> None:
    text = (DOCS / "configuration.md").read_text()
    for field in attrs.fields(cls):
        if field.init:
            assert f"`{field.name}`" in text, f"{cls.__name__}.{field.name} is missing from configuration.md"
