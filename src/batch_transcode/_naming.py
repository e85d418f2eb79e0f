"""Input validation, discovery and output naming (pure, except for reading the file system)."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from batch_transcode._errors import OutputCollisionError
from batch_transcode._inputs import MEDIA_EXTENSIONS, find_inputs, media_in, normalised
from batch_transcode._presets import Preset

log = logging.getLogger(__name__)

__all__ = [
    "MEDIA_EXTENSIONS",
    "WorkItem",
    "discover",
    "output_suffixes",
    "outputs_are_media",
    "plan_work",
    "validate_inputs",
]


@attrs.define(frozen=True, kw_only=True)
class WorkItem:
    """One file to convert: its index in the input order, its source and its path
    relative to the inputs' common folder (POSIX form), and its outputs (one per preset,
    in the presets' order)."""

    index: int
    source: Path
    relative_source: str
    outputs: tuple[Path, ...]

    @property
    def relative_outputs(self) -> tuple[str, ...]:
        """The outputs' paths relative to ``output_dir`` (POSIX form, also their blob
        names): each output's name in the folder of ``relative_source``. Made when asked
        (a tuple and a string a file kept for a whole run otherwise)."""
        folder = self.relative_source.rpartition("/")[0]
        return tuple(f"{folder}/{o.name}" if folder else o.name for o in self.outputs)


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand folders into the media files below them (sorted); keep files as given
    (absolute). What a search passes over is left out (see :mod:`batch_transcode._inputs`)."""
    found: list[Path] = []
    for raw in paths:
        path = normalised(raw)
        if path.is_dir():
            found.extend(media_in(path))
        else:
            found.append(path)
    return found


def validate_inputs(
    paths: Iterable[str | os.PathLike[str]],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    outputs_are_media: bool = True,
) -> list[Path]:
    """Absolute, normalised input paths, each file once; raise :class:`MissingInputError`
    naming every bad one (see :func:`~batch_transcode._inputs.find_inputs`). What the
    search passed over is logged: the duplicates as a warning, the rest at INFO (each
    path at DEBUG)."""
    found = find_inputs(paths, output_dir=output_dir, outputs_are_media=outputs_are_media)
    for skipped in found.skipped:
        log.debug("passed over %s", skipped)
    duplicates, passed_over = found.duplicates_note(), found.passed_over_note()
    if duplicates:
        log.warning("%s", duplicates)
    if passed_over:
        log.info("%s", passed_over)
    return list(found.files)


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


def outputs_are_media(presets: Sequence[Preset]) -> bool:
    """Whether some output of ``presets`` has a media extension (a later search of its
    folder would take it for an input)."""
    return any(p.extension.lower() in MEDIA_EXTENSIONS for p in presets)


def plan_work(
    sources: Sequence[Path], output_dir: str | os.PathLike[str], suffixes: Sequence[str]
) -> list[WorkItem]:
    """Map each source to its outputs under ``output_dir``, one output per suffix (as
    many as the run has presets: :func:`output_suffixes`; an extension is a suffix).

    Every output of a source is named ``<stem>.<suffix>``. Outputs keep the sources'
    directory layout relative to their common parent and keep inner dots
    (``a.b.mp4`` -> ``a.b.mp3``). Two sources mapping to one output, two outputs of
    one source with one name, or an output that would overwrite a source (its own or
    another's), raise :class:`OutputCollisionError` before any work starts.
    """
    out_root = str(normalised(output_dir))
    root = str(_common_parent(sources))
    cut = 0 if root == "." else len(root) if root.endswith(os.sep) else len(root) + 1
    # Text throughout: a Path a step (relative_to, with_name, /) and Paths as dict keys
    # would leave parsed copies and cached hashes on each of 100,000 files. Keys are
    # os.path.normcase'd: Windows compares paths without case, as Path equality does.
    items: list[WorkItem] = []
    # The first source of each output; a list only for an output claimed twice (a
    # list per output would be a hundred bytes a file for nothing at 100,000 files).
    first: dict[str, Path] = {}
    shared: dict[str, list[Path]] = {}
    for index, source in enumerate(sources):
        rel = str(source)[cut:]
        folder, _, name = rel.rpartition(os.sep)
        dot = name.rfind(".")  # Path.stem: the name without its last suffix, if any
        stem = name[:dot] if 0 < dot < len(name) - 1 else name
        texts = [os.path.join(out_root, folder, f"{stem}.{suffix}") for suffix in suffixes]
        for text in texts:
            key = os.path.normcase(text)
            if key in first:
                shared.setdefault(key, [first[key]]).append(source)
            else:
                first[key] = source
        items.append(
            WorkItem(
                index=index,
                source=source,
                relative_source=rel if os.sep == "/" else rel.replace(os.sep, "/"),
                outputs=tuple(Path(t) for t in texts),
            )
        )
    inputs = {os.path.normcase(str(s)) for s in sources}
    collisions = [
        (Path(key), shared.get(key, [src]))
        for key, src in first.items()
        if key in shared or key in inputs
    ]
    if collisions:
        raise OutputCollisionError(collisions, inputs=[Path(key) for key in inputs.intersection(first)])
    return items
