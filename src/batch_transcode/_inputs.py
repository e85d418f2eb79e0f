"""Finding the files to convert: folders searched, named files checked, the output folder
left out, the same file named twice kept once, and every file passed over counted with
its reason (reading the file system only; nothing is written).

Links to files are followed; links to folders are not (a folder tree with a link back
up would otherwise be walked forever). Hidden files and folders (names starting with a
dot: ``.git``, macOS ``._clip.mp4`` resource forks) are passed over.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from batch_transcode._errors import InputError, MissingInputError, OutputPathError

__all__ = ["MEDIA_EXTENSIONS", "FoundInputs", "Skip", "Skipped", "find_inputs", "media_in", "normalised"]

#: File extensions picked up when a folder is searched.
MEDIA_EXTENSIONS = frozenset(
    {
        "3gp", "aac", "aif", "aiff", "amr", "ape", "avi", "flac", "flv", "m2ts", "m4a",
        "m4b", "m4v", "mka", "mkv", "mov", "mp2", "mp3", "mp4", "mpeg", "mpg", "mts",
        "oga", "ogg", "ogv", "opus", "ts", "vob", "wav", "webm", "wma", "wmv",
    }
)  # fmt: skip


class Skip(enum.Enum):
    """Why a file (or folder) met in a search was not taken as an input."""

    NOT_MEDIA = "no media file extension"
    HIDDEN = "hidden (the name starts with a dot)"
    LINKED_FOLDER = "a link to a folder (not followed)"
    DANGLING_LINK = "a link whose target does not exist"
    LINK_LOOP = "a link loop"
    NOT_REGULAR = "not a regular file (a pipe, socket or device)"
    UNREADABLE = "not readable"
    OUTPUT_FOLDER = "the output folder (never searched for inputs)"
    DUPLICATE = "named more than once (converted once)"


@attrs.frozen
class Skipped:
    """A path passed over, and why."""

    path: Path
    reason: Skip

    def __str__(self) -> str:
        return f"{self.path}: {self.reason.value}"


@attrs.frozen(kw_only=True)
class FoundInputs:
    """The files to convert (absolute, normalised, in the order given; a folder's files
    sorted), and what was passed over."""

    files: tuple[Path, ...]
    skipped: tuple[Skipped, ...] = ()

    @property
    def duplicates(self) -> tuple[Path, ...]:
        return tuple(s.path for s in self.skipped if s.reason is Skip.DUPLICATE)

    def duplicates_note(self) -> str | None:
        """A line naming the files named more than once, if any."""
        if not self.duplicates:
            return None
        unique = list(dict.fromkeys(self.duplicates))
        names = ", ".join(repr(str(p)) for p in unique[:3])
        more = f" and {len(unique) - 3} more" if len(unique) > 3 else ""
        return (
            f"{len(self.duplicates)} input(s) named more than once (or also inside a folder "
            f"given), converted once: {names}{more}"
        )

    def passed_over_note(self) -> str | None:
        """A line counting what the searches passed over, by reason, if anything."""
        counts = Counter(s.reason for s in self.skipped if s.reason is not Skip.DUPLICATE)
        if not counts:
            return None
        parts = ", ".join(f"{n} {reason.value}" for reason, n in counts.most_common())
        return f"passed over {sum(counts.values())} path(s) in the folders given: {parts}"


def normalised(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute, with ``.`` and ``..`` resolved by name (``work/../out``
    becomes ``out``; links are kept as written)."""
    return Path(os.path.abspath(os.fspath(path)))


def _file_problem(path: Path) -> str | None:
    """Why the file named ``path`` cannot be an input, or None."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return _stat_problem(path, exc)
    if stat.S_ISFIFO(st.st_mode):
        return (
            "is a named pipe (FIFO), not a file: ffmpeg would wait on it for ever; "
            "save the stream to a file and convert that"
        )
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file or a folder (a socket or a device); name a media file"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied); check its permissions"
    return None


def _stat_problem(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop (it leads back to itself); point it at a file or remove it"
    if exc.errno == errno.ENOTDIR:
        blocker = next((p for p in path.parents if p.is_file()), path.parent)
        return f"cannot exist: {str(blocker)!r} is a file, not a folder; check the path"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return (
            f"is a symbolic link to {os.readlink(path)!r}, which does not exist; point it at a "
            "file or remove it"
        )
    if exc.errno == errno.ENOENT:
        return "does not exist; check the path (relative paths start in the current folder)"
    return f"cannot be read ({exc.strerror or exc}); check its permissions"


def _search_skip(path: Path) -> Skip | None:
    """Why a file met in a folder is passed over, or None to take it."""
    if path.name.startswith("."):
        return Skip.HIDDEN
    if path.suffix[1:].lower() not in MEDIA_EXTENSIONS:
        return Skip.NOT_MEDIA
    try:
        st = os.stat(path)
    except OSError as exc:
        return {errno.ELOOP: Skip.LINK_LOOP, errno.ENOENT: Skip.DANGLING_LINK}.get(
            exc.errno or 0, Skip.UNREADABLE
        )
    if not stat.S_ISREG(st.st_mode):
        return Skip.NOT_REGULAR
    return None if os.access(path, os.R_OK) else Skip.UNREADABLE


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class _Search:
    """One search: files in order, skips, and the problems of files named."""

    def __init__(self, output_dir: Path | None) -> None:
        self.output_id = _file_id(output_dir) if output_dir is not None else None
        self.files: list[Path] = []
        self.skipped: list[Skipped] = []
        self.problems: list[tuple[Path, str]] = []
        self._seen: set[tuple[int, int]] = set()

    def take(self, path: Path) -> None:
        key = _file_id(path)
        if key is not None and key in self._seen:
            self.skipped.append(Skipped(path, Skip.DUPLICATE))
            return
        if key is not None:
            self._seen.add(key)
        self.files.append(path)

    def named_file(self, path: Path) -> None:
        problem = _file_problem(path)
        if problem is None:
            self.take(path)
        else:
            self.problems.append((path, problem))

    def folder(self, top: Path) -> None:
        found: list[Path] = []

        def unreadable(exc: OSError) -> None:
            self.skipped.append(Skipped(Path(exc.filename or top), Skip.UNREADABLE))

        for folder, dirs, names in os.walk(top, onerror=unreadable):
            here = Path(folder)
            for name in list(dirs):
                sub = here / name
                reason = self._folder_skip(sub)
                if reason is not None:
                    dirs.remove(name)
                    self.skipped.append(Skipped(sub, reason))
            for name in names:
                reason = _search_skip(here / name)
                if reason is None:
                    found.append(here / name)
                else:
                    self.skipped.append(Skipped(here / name, reason))
        for path in sorted(found):
            self.take(path)

    def _folder_skip(self, sub: Path) -> Skip | None:
        if sub.name.startswith("."):
            return Skip.HIDDEN
        if sub.is_symlink():
            return Skip.LINKED_FOLDER
        if self.output_id is not None and _file_id(sub) == self.output_id:
            return Skip.OUTPUT_FOLDER
        return None


def media_in(folder: Path) -> list[Path]:
    """The media files below ``folder``, sorted, as a search finds them."""
    search = _Search(None)
    search.folder(folder)
    return search.files


def find_inputs(
    paths: Iterable[str | os.PathLike[str]],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    outputs_are_media: bool = True,
) -> FoundInputs:
    """The files ``paths`` name, folders searched for media files.

    The output folder is never searched. ``output_dir`` equal to a folder given raises
    :class:`OutputPathError` when ``outputs_are_media`` (the outputs carry a media
    extension, so a later run would take them for inputs); outputs that are not media
    (thumbnails) may go next to their inputs. Files named that cannot be read raise
    :class:`MissingInputError` naming each; no file at all raises :class:`InputError`.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise InputError("pass a list of paths, not a single path: convert([path], ...)")
    given = list(paths)
    out = normalised(output_dir) if output_dir is not None else None
    search = _Search(out)
    for raw in given:
        path = normalised(raw)
        if not path.is_dir():
            search.named_file(path)
            continue
        if search.output_id is not None and _file_id(path) == search.output_id and outputs_are_media:
            raise OutputPathError(
                f"the output folder {str(out)!r} is the input folder {str(path)!r}: the outputs "
                "would be taken for inputs on the next run (and may overwrite inputs of the same "
                f"name); write them to a folder of their own, such as {str(path) + '-converted'!r}",
                path=path,
            )
        search.folder(path)
    if search.problems:
        raise MissingInputError(search.problems)
    found = FoundInputs(files=tuple(search.files), skipped=tuple(search.skipped))
    if not given:
        raise InputError("no input files given; pass a list of files or folders to convert")
    if not found.files:
        names = ", ".join(repr(os.fspath(p)) for p in given)
        notes = found.passed_over_note()
        raise InputError(
            f"no media files found in {names}"
            + (f" ({notes})" if notes else "")
            + f"; name the files, or folders holding files ending in .{', .'.join(_COMMON)}"
        )
    return found


#: Extensions named in the "no media files" message.
_COMMON: Sequence[str] = ("mp4", "mkv", "mov", "mp3", "wav", "flac")
