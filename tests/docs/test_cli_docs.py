"""docs/cli.md and ``batch-transcode --help`` agree: every option the parser knows is
documented in its command's section, and every option a section documents is one its
command takes (both ways), and every command has a section."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from batch_transcode._cli import _backend_options, _parser

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
#: An option as the docs write it: in backticks, ``--name`` or ``-x`` first.
OPTION = re.compile(r"`(--?[A-Za-z][\w-]*)")
HELP = {"-h", "--help"}
#: Sections of docs/cli.md that describe no command.
NOT_COMMANDS = {"What the command refuses"}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings} - HELP


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _sections() -> dict[str, str]:
    """The text before the first ``## `` heading (key ``""``) and each section's, by title."""
    parts = re.split(r"^## (.+)$", DOC, flags=re.M)
    found = {"": parts[0]}
    found.update({title.strip(): text for title, text in zip(parts[1::2], parts[2::2], strict=True)})
    return found


def _documented(text: str) -> set[str]:
    # code blocks are examples; the option tables and the prose document
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    found = {re.sub(r"^-([a-z])\1+$", r"-\1", o) for o in OPTION.findall(prose)}  # -vv is -v twice
    return found - HELP


GLOBAL = _options(_parser())


def test_every_command_has_a_section_and_every_section_a_command() -> None:
    assert set(_commands()) == set(_sections()) - {""} - NOT_COMMANDS


def test_the_options_before_the_command_are_documented_at_the_top() -> None:
    assert _documented(_sections()[""]) == GLOBAL


@pytest.mark.parametrize("command", sorted(_commands()))
def test_a_commands_options_and_its_section_agree_both_ways(command: str) -> None:
    takes = _options(_commands()[command])
    documented = _documented(_sections()[command])
    # plan takes convert's backend options; its section refers to convert's tables
    shared = _options(_backend_options()) if command == "plan" else set()
    undocumented = takes - documented - shared
    unknown = documented - takes - GLOBAL
    assert not undocumented, f"{command} takes {sorted(undocumented)}, which docs/cli.md does not document"
    assert not unknown, f"docs/cli.md documents {sorted(unknown)} under {command}, which it does not take"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_has_a_description_in_its_help(command: str) -> None:
    parser = _commands()[command]
    assert parser.description and len(parser.description) > 40, command
