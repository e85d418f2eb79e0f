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
            f"{len(self.duplicates)} repeated input(s) left out (a file named twice, also inside "
            f"a folder given, or through a link); each file is converted once: {names}{more}"
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
    becomes ``out``; links are kept as written). A path that is so already is
    returned as it is (a caller's list of 100,000 paths is not copied)."""
    if isinstance(path, Path):
        text = str(path)  # cached by the path, which is used as text anyway
        if text.startswith("/") and "/.." not in text:  # (``.parts`` would cache a tuple a path)
            return path
    return Path(os.path.abspath(os.fspath(path)))


def _kind_problem(path: Path, st: os.stat_result) -> str | None:
    """Why the file named ``path`` (its status ``st``, links followed) cannot be an
    input, or None."""
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


#: The skip for a file whose status cannot be read, by errno.
_STAT_SKIPS = {errno.ELOOP: Skip.LINK_LOOP, errno.ENOENT: Skip.DANGLING_LINK}

#: A file's identity: two names of one file (links) have the same.
FileId = tuple[int, int] | str


def _identity(path: str | Path, st: os.stat_result) -> FileId:
    """What makes two names one input: a file's inode when it has one name (a symbolic
    link to it, or it named twice, is the same input), its resolved path when it has
    several hard links (each of those names is an input of its own, as a user who sees
    two files expects two outputs)."""
    return (st.st_dev, st.st_ino) if st.st_nlink <= 1 else os.path.realpath(path)


def _file_skip(entry: os.DirEntry[str]) -> Skip | FileId:
    """Why a file met in a folder is passed over, or its identity to take it."""
    if entry.name.startswith("."):
        return Skip.HIDDEN
    if os.path.splitext(entry.name)[1][1:].lower() not in MEDIA_EXTENSIONS:
        return Skip.NOT_MEDIA
    try:
        st = entry.stat()  # links followed
    except OSError as exc:
        return _STAT_SKIPS.get(exc.errno or 0, Skip.UNREADABLE)
    if not stat.S_ISREG(st.st_mode):
        return Skip.NOT_REGULAR
    if not os.access(entry.path, os.R_OK):
        return Skip.UNREADABLE
    return _identity(entry.path, st)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop (ELOOP): _file_skip says so
        return False


class _Search:
    """One search: files in order, skips, and the problems of files named. A folder is
    read with ``os.scandir``: one ``stat`` per media file (its type and identity), none
    for the names passed over by extension."""

    def __init__(self, output_dir: Path | None, *, refuse_output: bool = False) -> None:
        #: The output folder, and whether a folder given may not be it.
        self.output_dir = output_dir
        self.refuse_output = refuse_output
        self.output_id: tuple[int, int] | None = None
        if output_dir is not None:
            try:
                st = os.stat(output_dir)
                self.output_id = (st.st_dev, st.st_ino)
            except OSError:
                pass  # not there yet: nothing to leave out
        self.files: list[Path] = []
        self.skipped: list[Skipped] = []
        self.problems: list[tuple[Path, str]] = []
        self._seen: set[FileId] = set()

    def take(self, path: Path, key: FileId) -> None:
        if key in self._seen:
            self.skipped.append(Skipped(path, Skip.DUPLICATE))
            return
        self._seen.add(key)
        self.files.append(path)

    def named(self, path: Path) -> None:
        """A path given: a folder is searched, a file checked."""
        try:
            st = os.stat(path)
        except OSError as exc:
            self.problems.append((path, _stat_problem(path, exc)))
            return
        if stat.S_ISDIR(st.st_mode):
            if self.refuse_output and (st.st_dev, st.st_ino) == self.output_id:
                raise OutputPathError(
                    f"the output folder {str(self.output_dir)!r} is the input folder {str(path)!r}: "
                    "the outputs would be taken for inputs on the next run (and may overwrite "
                    "inputs of the same name); write them to a folder of their own, such as "
                    f"{str(path) + '-converted'!r}",
                    path=path,
                )
            self.folder(path)
            return
        problem = _kind_problem(path, st)
        if problem is None:
            self.take(path, _identity(path, st))
        else:
            self.problems.append((path, problem))

    def folder(self, top: Path) -> None:
        found: list[tuple[str, FileId]] = []
        pending = [str(top)]
        while pending:
            here = pending.pop()
            try:
                with os.scandir(here) as listing:
                    entries = list(listing)
            except OSError:
                self.skipped.append(Skipped(Path(here), Skip.UNREADABLE))
                continue
            for entry in entries:
                if _is_dir(entry):  # links followed: a link to a folder is one
                    reason = self._folder_skip(entry)
                    if reason is None:
                        pending.append(entry.path)
                        continue
                    verdict: Skip | FileId = reason
                else:
                    verdict = _file_skip(entry)
                if isinstance(verdict, Skip):
                    self.skipped.append(Skipped(Path(entry.path), verdict))
                else:
                    found.append((entry.path, verdict))
        found.sort(key=lambda f: f[0].split(os.sep))  # the order of the paths' parts
        for path, key in found:
            self.take(Path(path), key)

    def _folder_skip(self, entry: os.DirEntry[str]) -> Skip | None:
        if entry.name.startswith("."):
            return Skip.HIDDEN
        if entry.is_symlink():
            return Skip.LINKED_FOLDER
        if self.output_id is not None:
            st = entry.stat()
            if (st.st_dev, st.st_ino) == self.output_id:
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
    search = _Search(out, refuse_output=outputs_are_media)
    for raw in given:
        search.named(normalised(raw))
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
