from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from batch_transcode._cli import main
from helpers import env_without_azure, interruptible, run_python, wait_until


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


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["cleanup", "--older-than", "banana"],
            "--older-than 'banana' is not an age such as 30m, 2h, 1d or 0s",
        ),
        (["attach", "not-an-id", "-o", "out"], "'not-an-id' is not a batch-transcode session or job id"),
    ],
)
def test_a_malformed_argument_is_named_before_any_azure_variable(
    tmp_path: Path, argv: list[str], says: str
) -> None:
    proc = run_python("-m", "batch_transcode", *argv, env=env_without_azure(), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr
    assert "AZURE_" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


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
        preexec_fn=interruptible,
    )  # fmt: skip
    wait_until(lambda: list(out.rglob(".bt-*")), interval=0.02, what="ffmpeg to start writing")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not list(out.rglob(".bt-*"))


# -- JSON reports, flags, plan, help --------------------------------------------------------

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report.schema.json").read_text())


def check_report(data: object) -> dict[str, Any]:
    """``data`` is a report as the docs' JSON schema describes it."""
    jsonschema.validate(data, SCHEMA)
    assert isinstance(data, dict)
    return data


def test_convert_json_report_to_a_file_and_to_stdout(
    tmp_path: Path, make_media: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_media(tmp_path / "in" / "good.mp4")
    silent = make_media(tmp_path / "in" / "sub" / "silent.mp4", "silent")
    out = tmp_path / "out"
    code = main(
        ["convert", str(tmp_path / "in"), "-o", str(out), "--no-progress", "--json", str(tmp_path / "r.json")]
    )
    assert code == 1
    first = check_report(json.loads((tmp_path / "r.json").read_text()))
    assert first["summary"] == {**first["summary"], "total": 2, "converted": 1, "failed": 1, "skipped": 0}
    by_name = {Path(f["source"]).name: f for f in first["files"]}
    assert by_name["good.mp4"]["status"] == "converted"
    assert by_name["good.mp4"]["output"] == str(out / "good.mp3")
    assert by_name["good.mp4"]["seconds"] > 0 and by_name["good.mp4"]["task_id"] is None
    assert by_name["silent.mp4"]["status"] == "failed"
    assert "no audio stream" in by_name["silent.mp4"]["error"]
    assert ".bt-" not in by_name["silent.mp4"]["error"]  # temporary names are "the output"
    assert [f["source"] for f in first["files"]] == [str(good), str(silent)]  # input order
    capsys.readouterr()

    # '-': the JSON alone on stdout, the text on stderr; the good output is kept this time
    assert main(["convert", str(tmp_path / "in"), "-o", str(out), "--no-progress", "--json", "-"]) == 1
    captured = capsys.readouterr()
    second = check_report(json.loads(captured.out))
    assert [f["status"] for f in second["files"]] == ["skipped", "failed"]
    assert "1/2 converted" in captured.err and "(1 already done, skipped), 1 failed:" in captured.err
    assert "sub/silent.mp4: the input has no audio stream" in captured.err  # relative to in/


def test_convert_no_skip_existing_converts_again(
    tmp_path: Path, make_media: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    make_media(tmp_path / "in" / "a.mp4")
    args = ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--no-progress", "--json", "-"]
    assert main(args) == 0
    assert [f["status"] for f in json.loads(capsys.readouterr().out)["files"]] == ["converted"]
    assert main(args) == 0
    assert [f["status"] for f in json.loads(capsys.readouterr().out)["files"]] == ["skipped"]
    assert main([*args, "--no-skip-existing"]) == 0
    assert [f["status"] for f in json.loads(capsys.readouterr().out)["files"]] == ["converted"]


@pytest.mark.parametrize(
    ("flags", "belongs_to"),
    [
        (["--nodes", "2"], "--backend azure"),
        (["--spot-nodes", "1", "--vm-size", "Standard_D4s_v5"], "--backend azure"),
        (["--autoscale"], "--backend azure"),
        (["--keep-pool"], "--backend azure"),
        (["--pool-id", "shared"], "--backend azure"),
        (["--ffmpeg-from", "apt"], "--backend azure"),
        (["--session-timeout", "2h"], "--backend azure"),
        (["--backend", "azure", "--workers", "2"], "--backend local"),
        (["--backend", "azure", "--ffmpeg", "/usr/bin/ffmpeg"], "--backend local"),
    ],
)
@pytest.mark.parametrize("command", ["convert", "plan"])
def test_flags_of_the_other_backend_are_usage_errors(
    tmp_path: Path,
    make_media: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    command: str,
    flags: list[str],
    belongs_to: str,
) -> None:
    src = make_media(tmp_path / "a.mp4")
    argv = [command, str(src), "-o", str(tmp_path / "out"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    given = [f for f in flags if f.startswith("--") and f != "--backend"]
    assert f"only for {belongs_to}" in err and all(f in err for f in given), err
    assert not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.parametrize(
    "flags",
    [
        ["--ffmpeg-from", "brew"],
        ["--ffmpeg-from", "staged"],  # staged needs the binary
        ["--ffmpeg-from", "staged=/no/such/ffmpeg"],
        ["--session-timeout", "0s"],
        ["--session-timeout", "soon"],
        ["--nodes", "-1"],
        ["--nodes", "two"],
    ],
)
def test_bad_flag_values_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["convert", str(tmp_path), "-o", str(tmp_path / "o"), "--backend", "azure", *flags])
    assert info.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_plan_locally_as_text_and_json(
    tmp_path: Path, make_media: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        make_media(tmp_path / "in" / f"{i}.mp4")
    assert main(["plan", str(tmp_path / "in"), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "files" in text and "3" in text and "backend" in text and "local" in text
    assert main(["plan", str(tmp_path / "in"), "--workers", "2", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == "local" and data["files"] == 3 and data["slots_per_node"] == 2
    assert data["estimated_cost"] is None
    assert not (tmp_path / "out").exists()  # a plan creates nothing


def _all_actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{name} {a.dest}", a) for a in sub._actions]
        else:
            found.append((action.dest, action))
    return found


def test_every_option_and_command_has_help() -> None:
    from batch_transcode._cli import COMMANDS, _parser

    parser = _parser()
    missing = [where for where, action in _all_actions(parser) if not action.help]
    assert not missing, f"options without help text: {missing}"
    listing = parser.format_help()
    for command in COMMANDS:
        assert command in listing
    for command in COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0


def test_the_cli_goes_through_the_public_api_not_the_azure_layers() -> None:
    """``sessions`` and ``cleanup`` use ``batch_transcode.list_sessions`` / ``cleanup``,
    which open and close their clients; the CLI imports nothing of ``_azure`` itself."""
    import ast

    import batch_transcode._cli as cli

    tree = ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("batch_transcode._azure")]


def test_cleanup_needs_the_azure_settings() -> None:
    proc = run_python("-m", "batch_transcode", "cleanup", "--dry-run", env=env_without_azure())
    assert proc.returncode == 2 and "AZURE_BATCH_ENDPOINT" in proc.stderr, proc.stderr


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_demo_needs_a_count_of_at_least_one(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--count", count])
    assert info.value.code == 2
    assert "--count" in capsys.readouterr().err
