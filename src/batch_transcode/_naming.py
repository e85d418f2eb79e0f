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
    relative to the inputs' common folder, and its outputs (one per preset, in the
    presets' order) with their paths relative to ``output_dir`` (POSIX form, also
    their blob names)."""

    index: int
    source: Path
    relative_source: str
    outputs: tuple[Path, ...]
    relative_outputs: tuple[str, ...]


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
    out_root = normalised(output_dir)
    root = _common_parent(sources)
    items: list[WorkItem] = []
    # The first source of each output; a list only for an output claimed twice (a
    # list per output would be a hundred bytes a file for nothing at 100,000 files).
    first: dict[Path, Path] = {}
    shared: dict[Path, list[Path]] = {}
    for index, source in enumerate(sources):
        rel = source.relative_to(root)
        stem = rel.stem if rel.suffix else rel.name
        rel_outs = [rel.with_name(f"{stem}.{suffix}") for suffix in suffixes]
        outputs = [out_root / r for r in rel_outs]
        for output in outputs:
            if output in first:
                shared.setdefault(output, [first[output]]).append(source)
            else:
                first[output] = source
        items.append(
            WorkItem(
                index=index,
                source=source,
                relative_source=rel.as_posix(),
                outputs=tuple(outputs),
                relative_outputs=tuple(r.as_posix() for r in rel_outs),
            )
        )
    inputs = set(sources)
    collisions = [
        (out, shared.get(out, [src])) for out, src in first.items() if out in shared or out in inputs
    ]
    if collisions:
        raise OutputCollisionError(collisions, inputs=inputs)
    return items
