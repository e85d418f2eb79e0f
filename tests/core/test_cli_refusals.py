"""What the command refuses, as a newcomer meets it: for each path, permission, key or
argument problem, ``batch-transcode`` (a real process on a real file system) exits 2
with one error line that names the path (or variable) and the fix, shows no traceback
unless ``-v``, and creates or changes no file. The same problems through the Python
API raise the typed error.

Tests run as root here, and permission bits do not stop root: the read-only cases use
a read-only tmpfs mount, else an immutable folder (``chattr +i``), else (not root)
permission bits; they are skipped only when none of these works.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from batch_transcode import (
    AzureConfig,
    ConfigError,
    InputError,
    LocalConfig,
    MissingInputError,
    OutputCollisionError,
    OutputPathError,
    TranscodeSession,
)
from helpers import env_without_azure

#: A syntactically valid Azure environment that no request ever reaches in these cases.
AZURE_ENV = {
    "AZURE_BATCH_ENDPOINT": "https://acct.westeurope.batch.azure.com",
    "AZURE_BATCH_ACCOUNT": "acct",
    "AZURE_BATCH_ACCESS_KEY": "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
    "AZURE_STORAGE_ACCOUNT": "acct",
    "AZURE_STORAGE_KEY": "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
}


# -- the tree each case starts from -------------------------------------------------------


def _read_only_folder(path: Path) -> Iterator[str]:
    """Make ``path`` a folder nothing can be written in; yield how (``mount``,
    ``chattr`` or ``chmod``), undo it afterwards. Skips the test if nothing works."""
    path.mkdir()
    if shutil.which("mount") and _run("mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)):
        try:
            yield "mount"
        finally:
            _run("umount", str(path))
        return
    if shutil.which("chattr") and _run("chattr", "+i", str(path)):
        try:
            yield "chattr"
        finally:
            _run("chattr", "-i", str(path))
        return
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield "chmod"
        finally:
            path.chmod(0o755)
        return
    pytest.skip("no way to make a read-only folder here (no mount, no chattr, running as root)")


def _run(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


@attrs.define
class Tree:
    """The files a case runs in: ``root`` (the working folder), ``in/a.mp4``,
    ``in/b.mp4``, ``afile`` (a plain file), and read-only folders made on demand
    (``ro`` by default)."""

    root: Path
    media: Path
    _read_only: dict[Path, Iterator[str]] = attrs.Factory(dict)

    def read_only(self, relative: str = "ro") -> Path:
        """``root / relative`` made a read-only folder (once)."""
        path = self.root / relative
        if path not in self._read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._read_only[path] = _read_only_folder(path)
            next(self._read_only[path])
        return path

    def close(self) -> None:
        for undo in self._read_only.values():
            for _ in undo:
                pass


@pytest.fixture
def tree(tmp_path: Path, make_media: Callable[..., Path]) -> Iterator[Tree]:
    root = tmp_path / "work"
    make_media(root / "in" / "a.mp4")
    make_media(root / "in" / "b.mp4")
    (root / "afile").write_text("a file where a folder belongs\n")
    t = Tree(root, root / "in" / "a.mp4")
    yield t
    t.close()


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path below ``root`` (links not followed): kind, size and mtime of files."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if path.is_symlink() else "file"
            size, mtime = (0, 0) if kind == "dir" else (st.st_size, st.st_mtime_ns)
            found[str(path.relative_to(root))] = (kind, size, mtime)
    return found


# -- the cases ------------------------------------------------------------------------------


@attrs.frozen
class Case:
    """``argv`` (after ``batch-transcode``), the path the message must name, a piece of
    its fix, extra environment; ``api`` makes the same mistake through the Python API
    and says which error it must raise."""

    argv: list[str]
    names: str
    fix: str
    env: dict[str, str] = attrs.field(factory=dict)
    api: Callable[[], object] | None = None
    error: type[Exception] = InputError


def _convert(paths: list[Path | str], out: Path | str, preset: str = "mp3") -> Callable[[], object]:
    def go() -> object:
        with TranscodeSession(LocalConfig(workers=1)) as s:
            return s.convert(paths, output_dir=out, preset=preset)

    return go


def _from_env(**env: str) -> Callable[[], object]:
    return lambda: AzureConfig.from_env({**AZURE_ENV, **env})


def _symlink(link: Path, target: str) -> Path:
    link.symlink_to(target)
    return link


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


CASES: dict[str, Callable[[Tree], Case]] = {
    # the output folder
    "output is an existing file": lambda t: Case(
        ["convert", "in", "-o", "afile"], "afile", "choose another output folder",
        api=_convert([t.root / "in"], t.root / "afile"), error=OutputPathError,
    ),
    "output below a file": lambda t: Case(
        ["convert", "in", "-o", "afile/out"], "afile", "choose another output folder",
        api=_convert([t.root / "in"], t.root / "afile" / "out"), error=OutputPathError,
    ),
    "output is a dangling link": lambda t: Case(
        ["convert", "in", "-o", str(_symlink(t.root / "gone", "nowhere"))], "gone", "choose another",
        api=_convert([t.root / "in"], t.root / "gone"), error=OutputPathError,
    ),
    "output folder read-only": lambda t: Case(
        ["convert", "in", "-o", str(t.read_only())], "ro", "choose another output folder",
        api=_convert([t.root / "in"], t.read_only()), error=OutputPathError,
    ),
    "output folder to be made in a read-only folder": lambda t: Case(
        ["convert", "in", "-o", str(t.read_only() / "new")], "ro", "choose another output folder",
        api=_convert([t.root / "in"], t.read_only() / "new"), error=OutputPathError,
    ),
    "output is an empty name": lambda t: Case(
        ["convert", "in", "-o", ""], "empty name", "such as 'out'",
        api=_convert([t.root / "in"], ""), error=OutputPathError,
    ),
    "output is a link to the input folder": lambda t: Case(
        ["convert", "in", "-o", str(_symlink(t.root / "mirror", "in"))], "mirror", "folder of their own",
        api=_convert([t.root / "in"], t.root / "mirror"), error=OutputPathError,
    ),
    "output is the input folder": lambda t: Case(
        ["convert", "in", "-o", "in"], "in", "folder of their own",
        api=_convert([t.root / "in"], t.root / "in"), error=OutputPathError,
    ),
    "output would overwrite an input": lambda t: Case(
        ["convert", "in/a.mp4", str(shutil.copyfile(t.media, t.root / "in" / "a.mp3")), "-o", "in"],
        "a.mp3", "would overwrite the input",
        api=_convert([t.root / "in" / "a.mp4", t.root / "in" / "a.mp3"], t.root / "in"),
        error=OutputCollisionError,
    ),
    "plan: output is an existing file": lambda t: Case(
        ["plan", "in", "-o", "afile"], "afile", "choose another output folder",
        api=lambda: TranscodeSession(LocalConfig()).plan([t.root / "in"], output_dir=t.root / "afile"),
        error=OutputPathError,
    ),
    "demo: output is an existing file": lambda t: Case(
        ["demo", "-o", "afile", "--count", "1"], "afile", "choose another output folder",
    ),
    "attach: output below a file": lambda t: Case(
        ["attach", "bt-20261101t1200-1a2b3c4d", "-o", "afile/out"], "afile", "choose another",
        env=AZURE_ENV,
    ),
    # the JSON report
    "report into a folder that does not exist": lambda t: Case(
        ["convert", "in", "-o", "out", "--json", "nodir/r.json"], "nodir", "folder that exists",
    ),
    "report is an empty name": lambda t: Case(
        ["convert", "in", "-o", "out", "--json", ""], "--json is an empty name", "standard output",
    ),
    "report is a folder": lambda t: Case(
        ["convert", "in", "-o", "out", "--json", "in"], "in", "report.json",
    ),
    "report would overwrite an input": lambda t: Case(
        ["convert", "in", "-o", "out", "--json", "in/a.mp4"], "a.mp4", "one of the inputs",
    ),
    "report below a file": lambda t: Case(
        ["convert", "in", "-o", "out", "--json", "afile/r.json"], "afile", "is a file",
    ),
    "report in a read-only folder": lambda t: Case(
        ["convert", "in", "-o", "out", "--json", str(t.read_only() / "r.json")], "ro", "--json a file name",
    ),
    "sessions: report below a file": lambda t: Case(
        ["sessions", "--json", "afile/s.json"], "afile", "is a file", env=AZURE_ENV,
    ),
    "attach: report into a folder that does not exist": lambda t: Case(
        ["attach", "bt-20261101t1200-1a2b3c4d", "-o", "out", "--json", "nodir/r.json"], "nodir",
        "folder that exists", env=AZURE_ENV,
    ),
    "plan: report into a folder that does not exist": lambda t: Case(
        ["plan", "in", "--json", "nodir/plan.json"], "nodir", "folder that exists",
    ),
    # the inputs
    "input does not exist": lambda t: Case(
        ["convert", "in/c.mp4", "-o", "out"], "c.mp4", "check the path",
        api=_convert([t.root / "in" / "c.mp4"], t.root / "out"), error=MissingInputError,
    ),
    "input is a link loop": lambda t: Case(
        ["convert", str(_symlink(t.root / "loop.mp4", "loop.mp4")), "-o", "out"], "loop.mp4", "link loop",
        api=_convert([t.root / "loop.mp4"], t.root / "out"), error=MissingInputError,
    ),
    "input is a dangling link": lambda t: Case(
        ["convert", str(_symlink(t.root / "gone.mp4", "moved.mp4")), "-o", "out"], "gone.mp4",
        "point it at a file", api=_convert([t.root / "gone.mp4"], t.root / "out"), error=MissingInputError,
    ),
    "input is a FIFO": lambda t: Case(
        ["convert", str(_fifo(t.root / "pipe.mp4")), "-o", "out"], "pipe.mp4", "save the stream to a file",
        api=_convert([t.root / "pipe.mp4"], t.root / "out"), error=MissingInputError,
    ),
    "input is a device": lambda t: Case(
        ["convert", "/dev/null", "-o", "out"], "/dev/null", "name a media file",
        api=_convert(["/dev/null"], t.root / "out"), error=MissingInputError,
    ),
    "input below a file": lambda t: Case(
        ["convert", "afile/a.mp4", "-o", "out"], "afile", "check the path",
        api=_convert([t.root / "afile" / "a.mp4"], t.root / "out"), error=MissingInputError,
    ),
    "folder without media": lambda t: Case(
        ["convert", "empty", "-o", "out"], "empty", "name the files",
        api=_convert([t.root / "empty"], t.root / "out"),
    ),
    "folder with only links that lead nowhere": lambda t: Case(
        ["convert", "links", "-o", "out"], "links", "link loop",
        api=_convert([t.root / "links"], t.root / "out"),
    ),
    # settings and keys
    "Batch key not base64": lambda t: Case(
        ["convert", "in", "-o", "out", "--backend", "azure"], "AZURE_BATCH_ACCESS_KEY", "copy it again",
        env={**AZURE_ENV, "AZURE_BATCH_ACCESS_KEY": "not a key!"},
        api=_from_env(AZURE_BATCH_ACCESS_KEY="not a key!"), error=ConfigError,
    ),
    "storage key cut short": lambda t: Case(
        ["convert", "in", "-o", "out", "--backend", "azure"], "AZURE_STORAGE_KEY", "copy it again",
        env={**AZURE_ENV, "AZURE_STORAGE_KEY": "a2V5a2V5a"},
        api=_from_env(AZURE_STORAGE_KEY="a2V5a2V5a"), error=ConfigError,
    ),
    "connection string with a broken AccountKey": lambda t: Case(
        ["sessions"], "AZURE_STORAGE_CONNECTION_STRING", "copy it again",
        env={**AZURE_ENV, "AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct;AccountKey=zz*z"},
        api=_from_env(AZURE_STORAGE_CONNECTION_STRING="AccountName=acct;AccountKey=zz*z"),
        error=ConfigError,
    ),
    "connection string that is no list of pairs": lambda t: Case(
        ["cleanup", "--dry-run"], "AZURE_STORAGE_CONNECTION_STRING", "Name=value",
        env={**AZURE_ENV, "AZURE_STORAGE_CONNECTION_STRING": "just-some-text"},
        api=_from_env(AZURE_STORAGE_CONNECTION_STRING="just-some-text"), error=ConfigError,
    ),
    "Batch endpoint that is no URL": lambda t: Case(
        ["plan", "in", "--backend", "azure"], "AZURE_BATCH_ENDPOINT", "https URL",
        env={**AZURE_ENV, "AZURE_BATCH_ENDPOINT": "acct.westeurope"},
        api=_from_env(AZURE_BATCH_ENDPOINT="acct.westeurope"), error=ConfigError,
    ),
    "attach with a malformed id": lambda t: Case(
        ["attach", "my-run", "-o", "out"], "my-run", "batch-transcode sessions", env=AZURE_ENV,
    ),
}  # fmt: skip


def _prepare(t: Tree, case_id: str) -> Case:
    (t.root / "empty").mkdir()
    (t.root / "empty" / "notes.txt").write_text("no media here\n")
    (t.root / "links").mkdir()
    _symlink(t.root / "links" / "loop.mp4", "loop.mp4")
    _symlink(t.root / "links" / "gone.mp4", "moved.mp4")
    return CASES[case_id](t)


def _cli(t: Tree, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batch_transcode", *argv],
        cwd=t.root,
        env={**env_without_azure(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("case_id", list(CASES))
def test_the_command_refuses_with_one_line_and_touches_nothing(tree: Tree, case_id: str) -> None:
    case = _prepare(tree, case_id)
    before = snapshot(tree.root)
    proc = _cli(tree, case.argv, case.env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("batch-transcode: note")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("batch-transcode: error:")
    assert case.names in errors[0] and case.fix in errors[0], errors[0]
    assert snapshot(tree.root) == before
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "case_id", ["output below a file", "report into a folder that does not exist", "Batch key not base64"]
)
def test_with_v_the_traceback_comes_too(tree: Tree, case_id: str) -> None:
    case = _prepare(tree, case_id)
    before = snapshot(tree.root)
    proc = _cli(tree, ["-v", *case.argv], case.env)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("batch-transcode: error:")
    assert snapshot(tree.root) == before


#: Cases of command-line options without a Python twin (``--json``, ``demo``, ``attach -o``).
CLI_ONLY = {c for c in CASES if c.startswith(("report", "plan: report", "demo", "attach", "sessions"))}


@pytest.mark.parametrize("case_id", [c for c in CASES if c not in CLI_ONLY])
def test_the_python_api_raises_the_typed_error(tree: Tree, case_id: str) -> None:
    case = _prepare(tree, case_id)
    assert case.api is not None
    before = snapshot(tree.root)
    with pytest.raises(case.error) as info:
        case.api()
    assert case.names in str(info.value)
    assert snapshot(tree.root) == before


def test_emulator_without_the_testing_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['jsonschema'] = None\n"
        "from batch_transcode._cli import main\n"
        "sys.exit(main(['emulator']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'batch-transcode[testing]'" in proc.stderr and "jsonschema" in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root from reading")
def test_an_unreadable_input_is_named(tree: Tree) -> None:
    tree.media.chmod(0)
    try:
        before = snapshot(tree.root)
        proc = _cli(tree, ["convert", "in/a.mp4", "-o", "out"], {})
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "a.mp4" in proc.stderr and "check its permissions" in proc.stderr
        assert snapshot(tree.root) == before
    finally:
        tree.media.chmod(0o644)


def test_a_folder_of_the_outputs_that_turns_out_read_only_fails_its_files_only(
    tree: Tree, make_media: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The output folder passes the checks, but one of the folders below it, where the
    inputs' layout puts an output, is read-only: that file fails saying why, the others
    convert (exit 1)."""
    from batch_transcode._cli import main

    make_media(tree.root / "in" / "sub" / "c.mp4")
    tree.read_only("out/sub")
    code = main(["convert", str(tree.root / "in"), "-o", str(tree.root / "out"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "2/3 converted" in captured.out
    assert "sub/c.mp4: could not write the output (read-only file system)" in captured.out.lower()
    assert "check that the output folder can be written" in captured.out
    assert sorted(p.name for p in (tree.root / "out").glob("*.mp3")) == ["a.mp3", "b.mp3"]


def test_ffmpeg_refused_by_a_read_only_folder_is_said_so(tree: Tree, ffmpeg_exe: str) -> None:
    """ffmpeg's own words when the file system refuses its output become the reason."""
    from batch_transcode._ffmpeg import describe_ffmpeg_failure
    from batch_transcode._presets import resolve_presets

    target = tree.read_only() / "a.mp3"
    proc = subprocess.run(
        [ffmpeg_exe, "-hide_banner", "-nostdin", "-i", str(tree.media), "-y", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    why = describe_ffmpeg_failure(proc.returncode, proc.stderr, resolve_presets("mp3")).splitlines()[0]
    assert why.startswith("ffmpeg could not write the output (")
    assert "check that the output folder can be written" in why
