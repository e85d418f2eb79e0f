"""Where results go: the output folder and report files, checked before a run starts
(nothing is written by the checks), then made and written.

The checks read the file system: a path that exists must be of the right kind, a
path that does not must have a writable folder as its nearest existing parent, and a
read-only file system (``statvfs`` ``ST_RDONLY``) or missing write permission is
named as such. Permission bits do not stop root, nor do they show an immutable folder
(``chattr +i``): :func:`make_output_folder` therefore also proves the folder writable
with a file it makes and removes at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from batch_transcode._errors import OutputPathError
from batch_transcode._inputs import normalised

__all__ = ["check_output_folder", "check_report_file", "make_output_folder", "write_report_file"]


def _not_writable(folder: Path) -> str | None:
    """Why files cannot be made in the existing ``folder``, or None."""
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return "is on a read-only file system"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "is not writable (permission denied)"
    return None


def _nearest_existing(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists (links followed)."""
    for candidate in (path, *path.parents):
        try:
            os.stat(candidate)
            return candidate
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutputPathError(
                    f"{str(candidate)!r} is a symbolic link loop; remove it or choose another path",
                    path=candidate,
                ) from None
            raise OutputPathError(
                f"{str(candidate)!r} cannot be read ({exc.strerror}); choose another path", path=candidate
            ) from None
    raise AssertionError("the root folder always exists")  # pragma: no cover


def _folder_problem(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be (made into) a folder to write in, or None."""
    if path.is_symlink() and not path.exists():
        return f"{what} {str(path)!r} is a symbolic link to {os.readlink(path)!r}, which does not exist"
    existing = _nearest_existing(path)
    is_dir = os.path.isdir(existing)
    if existing == path and not is_dir:
        return f"{what} {str(path)!r} is an existing file, not a folder"
    if not is_dir:
        return f"{what} {str(path)!r} cannot be made: {str(existing)!r} is a file, not a folder"
    reason = _not_writable(existing)
    if reason is None:
        return None
    if existing == path:
        return f"{what} {str(path)!r} {reason}"
    return f"{what} {str(path)!r} cannot be made: {str(existing)!r} {reason}"


def check_output_folder(output_dir: str | os.PathLike[str]) -> Path:
    """The output folder, absolute and normalised, once it is known to be a folder that
    exists or can be made, and can be written; else :class:`OutputPathError`."""
    if not os.fspath(output_dir).strip():
        raise OutputPathError(
            "the output folder is an empty name; give a folder such as 'out' ('.' for the current folder)",
            path=Path(os.fspath(output_dir)),
        )
    path = normalised(output_dir)
    problem = _folder_problem(path, "the output folder")
    if problem is not None:
        raise OutputPathError(f"{problem}; choose another output folder", path=path)
    return path


def make_output_folder(path: Path) -> None:
    """Make ``path`` (and its parents) and prove it writable; :class:`OutputPathError` if not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe(path)
    except OSError as exc:
        raise OutputPathError(
            f"the output folder {str(path)!r} cannot be written ({exc.strerror or exc}); "
            "choose another output folder",
            path=path,
        ) from exc


def _probe(folder: Path) -> None:
    """Make a file in ``folder`` and remove it: the one test of writing that permission
    bits cannot fool (root, immutable folders, ACLs). Raises ``OSError``."""
    fd, probe = tempfile.mkstemp(prefix=".batch-transcode-write-check-", dir=folder)
    os.close(fd)
    os.unlink(probe)


def check_report_file(
    target: str | os.PathLike[str] | None, *, option: str = "--json", inputs: Iterable[Path] = ()
) -> None:
    """Raise :class:`OutputPathError` unless a report can be written to ``target``
    (``None`` or ``"-"``, standard output, always can): not a folder, not one of the
    ``inputs``, in an existing folder that can be written. ``option`` names the setting
    in the message. Pipes and devices (``/dev/stdout``, ``>(jq .)``) are fine."""
    if target is None or os.fspath(target) == "-":
        return
    fix = f"give {option} a file name in a folder that exists"
    if not os.fspath(target).strip():
        raise OutputPathError(f"{option} is an empty name; {fix}, or '-' for standard output", path=Path())
    path = normalised(target)
    if os.path.isdir(path):
        raise OutputPathError(
            f"{option} {str(path)!r} is a folder; {fix}, such as {str(path / 'report.json')!r}", path=path
        )
    if os.path.exists(path):
        if any(_same(path, source) for source in inputs):
            raise OutputPathError(
                f"{option} {str(path)!r} is one of the inputs and would be overwritten; {fix}", path=path
            )
        if not os.path.isfile(path):  # a pipe or a device is written to as it is
            if not os.access(path, os.W_OK):
                raise OutputPathError(f"{option} {str(path)!r} is not writable; {fix}", path=path)
            return
    elif path.is_symlink():
        raise OutputPathError(f"{option} {str(path)!r} is a link to nothing; {fix}", path=path)
    parent = path.parent
    if not os.path.isdir(parent):
        what = "is a file, not a folder" if os.path.exists(parent) else "does not exist"
        raise OutputPathError(f"{option} {str(path)!r}: the folder {str(parent)!r} {what}; {fix}", path=path)
    # a file is replaced whole by a new one made in its folder (write_report_file)
    reason = _not_writable(parent)
    if reason is None:
        try:
            _probe(parent)
        except OSError as exc:
            reason = f"cannot be written ({exc.strerror or exc})"
    if reason is not None:
        raise OutputPathError(
            f"{option} {str(path)!r}: the folder {str(parent)!r} {reason}; {fix}", path=path
        )


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_report_file(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``target``: a regular file (or a new one) is replaced whole, so
    a failed write leaves the old file, never half a report; pipes and devices are
    written directly."""
    path = normalised(target)
    if path.exists() and not path.is_file():
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)
        return
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temp, mode)  # mkstemp makes files only their owner may read
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
