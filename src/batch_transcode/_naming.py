"""Input validation, discovery and output naming (pure, except for reading the file system)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from batch_transcode._errors import InputError, MissingInputError, OutputCollisionError
from batch_transcode._presets import Preset

__all__ = ["MEDIA_EXTENSIONS", "WorkItem", "discover", "output_suffixes", "plan_work", "validate_inputs"]

#: File extensions picked up when a directory is given to the CLI.
MEDIA_EXTENSIONS = frozenset(
    {
        "3gp", "aac", "aif", "aiff", "amr", "ape", "avi", "flac", "flv", "m2ts", "m4a",
        "m4b", "m4v", "mka", "mkv", "mov", "mp2", "mp3", "mp4", "mpeg", "mpg", "mts",
        "oga", "ogg", "ogv", "opus", "ts", "vob", "wav", "webm", "wma", "wmv",
    }
)  # fmt: skip


@attrs.define(frozen=True, kw_only=True)
class WorkItem:
    """One file to convert: its index in the input order, its source and its path
    relative to the inputs' common folder, and its outputs (one per preset, in the
    presets' order) with their paths relative to ``output_dir`` (POSIX form, also
    their blob names)."""

    index: int
    source: Path
    relative_source: str
    outputs: tuple[Path, ...]
    relative_outputs: tuple[str, ...]


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand directories into the media files below them (sorted); keep files as given."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix[1:].lower() in MEDIA_EXTENSIONS)
            )
        else:
            found.append(path)
    return found


def validate_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Absolute input paths; raise :class:`MissingInputError` naming every bad one.

    A folder stands for the media files below it (see :func:`discover`).
    """
    if isinstance(paths, (str, os.PathLike)):
        raise InputError("pass a list of paths, not a single path: convert([path], ...)")
    result: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for path in discover(paths):
        try:
            if not path.exists():
                problems.append((path, "does not exist"))
            elif not path.is_file():
                problems.append((path, "is not a regular file or a folder"))
            elif not os.access(path, os.R_OK):
                problems.append((path, "is not readable (permission denied)"))
            else:
                result.append(path.absolute())
        except OSError as exc:
            problems.append((path, str(exc)))
    if problems:
        raise MissingInputError(problems)
    if not result:
        raise InputError("no input files given (or no media files in the folders given)")
    return result


def _common_parent(sources: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(s.parent) for s in sources]))


def output_suffixes(presets: Sequence[Preset]) -> tuple[str, ...]:
    """What follows a source's stem in each output's name, one per preset in order: the
    preset's extension (``mp3``), or, when another preset of the run writes the same
    extension (renditions), its name and extension (``h264-720p.mp4``).
    :func:`~batch_transcode._presets.resolve_presets` made sure those names differ."""
    counts: dict[str, int] = defaultdict(int)
    for p in presets:
        counts[p.extension.lower()] += 1
    return tuple(
        f"{p.name}.{p.extension}" if counts[p.extension.lower()] > 1 else p.extension for p in presets
    )


def plan_work(
    sources: Sequence[Path], output_dir: str | os.PathLike[str], suffixes: Sequence[str]
) -> list[WorkItem]:
    """Map each source to its outputs under ``output_dir``, one output per suffix (as
    many as the run has presets: :func:`output_suffixes`; an extension is a suffix).

    Every output of a source is named ``<stem>.<suffix>``. Outputs keep the sources'
    directory layout relative to their common parent and keep inner dots
    (``a.b.mp4`` -> ``a.b.mp3``). Two sources mapping to one output, two outputs of
    one source with one name, or an output that would overwrite its own source,
    raise :class:`OutputCollisionError` before any work starts.
    """
    out_root = Path(output_dir).absolute()
    root = _common_parent(sources)
    items: list[WorkItem] = []
    by_output: dict[Path, list[Path]] = defaultdict(list)
    for index, source in enumerate(sources):
        rel = source.relative_to(root)
        stem = rel.stem if rel.suffix else rel.name
        rel_outs = [rel.with_name(f"{stem}.{suffix}") for suffix in suffixes]
        outputs = [out_root / r for r in rel_outs]
        for output in outputs:
            by_output[output].append(source)
        items.append(
            WorkItem(
                index=index,
                source=source,
                relative_source=rel.as_posix(),
                outputs=tuple(outputs),
                relative_outputs=tuple(r.as_posix() for r in rel_outs),
            )
        )
    collisions = [(out, srcs) for out, srcs in by_output.items() if len(srcs) > 1]
    collisions += [(out, [i.source]) for i in items for out in i.outputs if out == i.source]
    if collisions:
        raise OutputCollisionError(collisions)
    return items
