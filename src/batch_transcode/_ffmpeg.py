"""ffmpeg itself: locating the executable, checking it has the encoders and filters a
run needs, reading an input's header, naming its temporary outputs, and saying why a
run failed (one line, then the tail of its stderr), for both backends."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from batch_transcode._commands import ffmpeg_argv
from batch_transcode._errors import ConfigError, FFmpegNotFoundError
from batch_transcode._presets import Preset
from batch_transcode._process import kill_process_group

__all__ = [
    "DURATION_UNKNOWN_LINE",
    "EMPTY_OUTPUT_LINE",
    "FFmpegBuild",
    "InputInfo",
    "check_build",
    "check_encoders",
    "describe_ffmpeg_failure",
    "ffmpeg_build",
    "find_ffmpeg",
    "parse_build",
    "parse_duration",
    "parse_input",
    "parse_version",
    "probe_duration",
    "probe_input",
    "required_encoders",
    "required_filters",
    "stderr_tail",
    "temporary_output",
]

log = logging.getLogger(__name__)

_INSTALL_HINT = (
    "install ffmpeg (e.g. 'apt-get install ffmpeg' or 'brew install ffmpeg'), "
    "or install the bundled one with: pip install 'batch-transcode[local]'"
)


def find_ffmpeg(explicit: str | os.PathLike[str] | None = None) -> str:
    """The ffmpeg to run: ``explicit``, else ``ffmpeg`` on PATH, else the bundled binary."""
    if explicit is not None:
        path = shutil.which(str(explicit))
        if path is None:
            raise FFmpegNotFoundError(
                f"ffmpeg {str(explicit)!r} was not found or is not executable; "
                f"pass LocalConfig(ffmpeg=...) a valid path, or {_INSTALL_HINT}"
            )
        return path
    on_path = shutil.which("ffmpeg")
    if on_path is not None:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError:
        pass
    else:
        try:
            bundled = str(imageio_ffmpeg.get_ffmpeg_exe())
        except RuntimeError:
            pass
        else:
            if Path(bundled).is_file():
                return bundled
    raise FFmpegNotFoundError(f"no ffmpeg found on PATH; {_INSTALL_HINT}")


STDERR_TAIL_LINES = 15
STDERR_TAIL_CHARS = 2000


def temporary_output(output: Path) -> Path:
    """A unique hidden name beside ``output`` with the same extension (ffmpeg picks the
    format from it). Outputs are renamed to their final name only once complete."""
    return output.with_name(f".bt-{uuid.uuid4().hex[:12]}.part{output.suffix}")


def stderr_tail(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-STDERR_TAIL_LINES:])[-STDERR_TAIL_CHARS:]


#: What a run says when it cannot read its input's duration for a ``seek_fraction``.
DURATION_UNKNOWN_LINE = (
    "batch-transcode: the input's duration is unknown, so an output at a fraction of it "
    "cannot be placed; give the thumbnail a time instead: Preset.thumbnail(at=seconds)"
)
_DURATION = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?),", re.M)


def parse_duration(stderr: str) -> float | None:
    """The container duration ffmpeg prints for an input (``Duration: 00:01:02.50,``), in
    seconds; ``None`` when it prints none or ``N/A``."""
    found = _DURATION.search(stderr)
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@attrs.frozen
class InputInfo:
    """What an input's header says: its duration (seconds) and the size its first video
    stream is shown at (width, height: rotation applied, as ffmpeg filters it), each
    ``None`` when unknown."""

    duration: float | None = None
    video_size: tuple[int, int] | None = None


_VIDEO_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: Video: (.*)$")
_SIZE = re.compile(r", (\d{1,5})x(\d{1,5})(?=[ ,]|$)")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.I)


def _video_size(stderr: str) -> tuple[int, int] | None:
    """The size of the first video stream ffmpeg describes that is not a cover picture,
    turned a quarter when its display matrix rotates it by 90 or 270 degrees (ffmpeg
    rotates such video before filtering it)."""
    lines = stderr.splitlines()
    for n, line in enumerate(lines):
        found = _VIDEO_STREAM.match(line)
        if found is None or "(attached pic)" in line:
            continue
        size = _SIZE.search(found.group(1))
        if size is None:
            continue
        width, height = int(size.group(1)), int(size.group(2))
        for after in lines[n + 1 :]:
            if re.match(r"^\s*(Stream #|Input #|Output #)", after):
                break
            turned = _ROTATION.search(after)
            if turned is not None and round(abs(float(turned.group(1)))) % 180 == 90:
                width, height = height, width
        return width, height
    return None


def parse_input(stderr: str) -> InputInfo:
    """An :class:`InputInfo` from ffmpeg's description of an input (``ffmpeg -i FILE``)."""
    return InputInfo(duration=parse_duration(stderr), video_size=_video_size(stderr))


def probe_input(ffmpeg: str, source: str, timeout: float = 60.0) -> InputInfo:
    """``source``'s header (ffmpeg with no output reads the header, prints the input's
    description and stops; nothing is decoded); an empty :class:`InputInfo` if ffmpeg
    could not run."""
    try:
        proc = subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", "-i", "file:" + source],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return InputInfo()
    return parse_input(proc.stderr)


def probe_duration(ffmpeg: str, source: str, timeout: float = 60.0) -> float | None:
    """``source``'s duration from its header (see :func:`probe_input`)."""
    return probe_input(ffmpeg, source, timeout).duration


# -- what a build has ---------------------------------------------------------------------

#: Options naming an encoder (``copy`` names none).
_CODEC_OPTIONS = frozenset(
    {"-c:v", "-c:a", "-c:s", "-codec:v", "-codec:a", "-codec:s", "-vcodec", "-acodec", "-scodec"}
)
#: Options whose value is a filter graph.
_GRAPH_OPTIONS = frozenset({"-vf", "-af", "-filter:v", "-filter:a", "-filter_complex", "-lavfi"})
_FILTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _graph_filters(graph: str) -> set[str]:
    """The names of the filters in a filter graph (``[0:v]split=2[a][b];[a]scale=...``):
    split on the ``,`` and ``;`` that are neither escaped (``\\``) nor quoted (``'``),
    each filter's labels dropped and its name read up to ``=`` or ``@``."""
    names: set[str] = set()
    part: list[str] = []
    quoted = escaped = False
    for ch in [*graph, ";"]:
        if escaped:
            escaped = False
            part.append(ch)
        elif ch == "\\":
            escaped = True
            part.append(ch)
        elif ch == "'":
            quoted = not quoted
            part.append(ch)
        elif ch in ",;" and not quoted:
            text = re.sub(r"^\s*(\[[^\]]*\]\s*)*", "", "".join(part))
            name = re.split(r"[=@\[\s]", text, maxsplit=1)[0]
            if _FILTER_NAME.match(name):
                names.add(name)
            part = []
        else:
            part.append(ch)
    return names


def _sample_argv(presets: Sequence[Preset]) -> list[str]:
    """The argv a run of ``presets`` uses, on placeholder names (a placed output at 1 s)."""
    outputs = [(f"output{n}.{p.extension}", p) for n, p in enumerate(presets)]
    return ffmpeg_argv("ffmpeg", "input", outputs, duration=1.0)


def _option_values(argv: Sequence[str], options: Iterable[str]) -> list[str]:
    wanted = frozenset(options)
    return [value for option, value in itertools.pairwise(argv) if option in wanted]


def required_encoders(presets: Sequence[Preset]) -> set[str]:
    """The encoders a run of ``presets`` names (``-c:v libx264``...); an encoder ffmpeg
    picks for a format by itself (a thumbnail's MJPEG) is not named, so not here."""
    return set(_option_values(_sample_argv(presets), _CODEC_OPTIONS)) - {"copy"}


def required_filters(presets: Sequence[Preset]) -> set[str]:
    """The filters a run of ``presets`` uses: ``scale``, ``format``, ``split``, ``fps``,
    ``thumbnail``, ``loudnorm``, and those in custom presets' ``-vf``/``-af``."""
    graphs = _option_values(_sample_argv(presets), _GRAPH_OPTIONS)
    return set().union(*map(_graph_filters, graphs)) if graphs else set()


@attrs.frozen
class FFmpegBuild:
    """The encoders and filters an ffmpeg build lists (``-encoders``, ``-filters``), and
    its release (``-version``: ``(7, 1)``; ``None`` for a build from a git snapshot)."""

    encoders: frozenset[str]
    filters: frozenset[str]
    version: tuple[int, int] | None = None


_VERSION = re.compile(r"ffmpeg version n?(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int] | None:
    """The release ``ffmpeg -version`` names (``ffmpeg version 6.1.1-3ubuntu5``,
    ``ffmpeg version n9.0.2-17-g...``), or None."""
    found = _VERSION.search(text)
    return (int(found.group(1)), int(found.group(2))) if found else None


def _listed(stdout: str) -> frozenset[str]:
    """The names ``ffmpeg -encoders`` or ``-filters`` lists: the second word of each line
    after the legend, which ends with a line of dashes."""
    _, dashes, table = stdout.partition("------")
    if not dashes:
        return frozenset()
    return frozenset(words[1] for line in table.splitlines() if len(words := line.split()) >= 2)


def _run_listing(ffmpeg: str, option: str, timeout: float) -> str | None:
    try:
        proc = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-nostdin", option],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a stuck ffmpeg (or a script standing in) is stopped with its children
        )
    except OSError as exc:
        log.warning("could not run %s %s: %s", ffmpeg, option, exc)
        return None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process_group(proc)
        proc.communicate()
        log.warning("%s %s did not answer within %g s", ffmpeg, option, timeout)
        return None
    return out.decode("utf-8", "replace") if proc.returncode == 0 else None


def parse_build(encoders: str, filters: str, version: str = "") -> FFmpegBuild | None:
    """The build that printed ``encoders`` (``ffmpeg -encoders``), ``filters``
    (``ffmpeg -filters``) and ``version`` (``ffmpeg -version``); ``None`` when either
    list is empty."""
    build = FFmpegBuild(encoders=_listed(encoders), filters=_listed(filters), version=parse_version(version))
    return build if build.encoders and build.filters else None


@functools.lru_cache(maxsize=32)
def _build(ffmpeg: str, _changed: tuple[int, int], timeout: float) -> FFmpegBuild | None:
    encoders = _run_listing(ffmpeg, "-encoders", timeout)
    filters = _run_listing(ffmpeg, "-filters", timeout) if encoders is not None else None
    if encoders is None or filters is None:
        return None
    return parse_build(encoders, filters, _run_listing(ffmpeg, "-version", timeout) or "")


def ffmpeg_build(ffmpeg: str, *, timeout: float = 30.0) -> FFmpegBuild | None:
    """What ``ffmpeg`` (a path) has, asked once per executable (and again if the file
    changes); ``None`` when it cannot tell (it did not run, or listed nothing)."""
    try:
        stat = os.stat(ffmpeg)
        changed = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        changed = (0, 0)
    return _build(ffmpeg, changed, timeout)


def _names(presets: Sequence[Preset]) -> str:
    return ", ".join(repr(p.name) for p in presets)


#: What to do about a missing encoder or filter on this machine.
LOCAL_HINT = (
    "pass LocalConfig(ffmpeg=...) an ffmpeg built with it; the bundled one has every encoder "
    "and filter of the named presets: pip install 'batch-transcode[local]', then "
    "LocalConfig(ffmpeg=imageio_ffmpeg.get_ffmpeg_exe())"
)


def check_encoders(
    ffmpeg: str,
    presets: Sequence[Preset],
    *,
    where: str,
    hint: str = LOCAL_HINT,
    timeout: float = 30.0,
) -> None:
    """Raise :class:`ConfigError` naming each preset whose encoder or filter ``ffmpeg``
    lacks, and what to do (``hint``), before anything runs. ``where`` says which ffmpeg it
    is (``"on this machine"``). The build is asked once per executable
    (:func:`ffmpeg_build`); when it cannot tell, nothing is refused (a warning is logged
    and ffmpeg's own error will say it per file)."""
    check_build(ffmpeg_build(ffmpeg, timeout=timeout), presets, where=f"{where} ({ffmpeg})", hint=hint)


def check_build(
    build: FFmpegBuild | None,
    presets: Sequence[Preset],
    *,
    where: str,
    hint: str,
    extra: Mapping[str, str] | None = None,
    min_version: tuple[tuple[int, int], str] | None = None,
) -> None:
    """:func:`check_encoders` for a build already listed (``where`` names it: "on this
    machine (/usr/bin/ffmpeg)", "on the nodes of pool p"); ``extra`` filters are needed
    besides the presets' own, each for what it names (``{"quality metric vmaf": "libvmaf"}``);
    ``min_version`` is a release the build must be at least, and what needs it."""
    if build is None:
        log.warning("could not list the encoders and filters of the ffmpeg %s; not checking them", where)
        return
    problems: list[str] = [
        f"{what} needs the {f} filter" for what, f in (extra or {}).items() if f not in build.filters
    ]
    if min_version is not None and build.version is not None and build.version < min_version[0]:
        (major, minor), what = min_version
        have = ".".join(map(str, build.version))
        problems.append(f"{what} needs FFmpeg {major}.{minor} or newer (this one is {have})")
    alone: set[str] = set()
    for preset in presets:
        filters = required_filters([preset])
        alone |= filters
        problems += [
            f"preset {preset.name!r} needs the {e} encoder"
            for e in sorted(required_encoders([preset]) - build.encoders)
        ]
        problems += [f"preset {preset.name!r} needs the {f} filter" for f in sorted(filters - build.filters)]
    together = required_filters(presets) - alone  # renditions' split
    problems += [
        f"presets {_names(presets)} together need the {f} filter" for f in sorted(together - build.filters)
    ]
    if problems:
        raise ConfigError(f"{'; '.join(problems)}, which the ffmpeg {where} lacks; {hint}")


#: A line the backends add to ffmpeg's stderr when it exits 0 without writing an output.
EMPTY_OUTPUT_LINE = "batch-transcode: ffmpeg wrote nothing to output #{index} ({extension})"

_OUTPUT_INDEX = re.compile(r"(?:out#|output file #|output #)(\d+)")
_NO_STREAM = ("does not contain any stream", "matches no streams")
_NOTHING_WRITTEN = ("nothing was written into output file", "output file is empty", "ffmpeg wrote nothing to")


def _failed_output(low: str, presets: Sequence[Preset]) -> tuple[int, Preset, bool] | None:
    """The output ffmpeg names in a "no stream" or "nothing written" line: its index,
    preset, and whether it had no stream at all (else: nothing was written)."""
    videos = [(n, p) for n, p in enumerate(presets) if p.is_video]
    for line in low.splitlines():
        no_stream = any(m in line for m in _NO_STREAM)
        if not no_stream and not any(m in line for m in _NOTHING_WRITTEN):
            continue
        # A video preset's video (-map 0:V:0, or the renditions' filter graph) is the only
        # stream a run maps without a '?': an input without video fails on it.
        if no_stream and videos and ("filtergraph" in line or line.startswith("stream map")):
            return videos[0][0], videos[0][1], True
        found = _OUTPUT_INDEX.search(line)
        index = int(found.group(1)) if found else 0
        if 0 <= index < len(presets):
            return index, presets[index], no_stream
    return None


def _output_reason(preset: Preset, no_stream: bool) -> str | None:
    if preset.audio_only and no_stream:
        return "the input has no audio stream to convert"
    if preset.is_video and no_stream:
        return f"the input has no video stream for the {preset.name} preset"
    if preset.video_only and no_stream:
        return f"the input has no video stream for the {preset.name}"
    if preset.video_only:
        at = (
            f" at {preset.seek:g} s"
            if preset.seek is not None
            else f" {preset.seek_fraction:.0%} through"
            if preset.seek_fraction is not None
            else ""
        )
        return f"no video frame{at} for the {preset.name} (the input is shorter, or has no video)"
    return None


#: What ffmpeg's standard error says when the file system refuses its output (strerror texts).
_WRITE_ERRORS = (
    "read-only file system",
    "no space left on device",
    "disk quota exceeded",
    "permission denied",
    "operation not permitted",
)


def _write_error(low: str) -> str | None:
    """The reason ffmpeg could not write its output, from its (lower-cased) stderr: an
    output it could not open, or a disk that filled up while it wrote."""
    for cause in _WRITE_ERRORS:
        if cause in low and ("error opening output" in low or cause in _WRITE_ERRORS[1:3]):
            return cause
    return None


def describe_ffmpeg_failure(exit_code: int | None, stderr: str, presets: Sequence[Preset]) -> str:
    """One line saying why (naming the output that failed when ``presets``, the run's
    outputs in order, are several), then the tail of ffmpeg's stderr."""
    chosen = tuple(presets)
    low = stderr.lower()
    failed = _failed_output(low, chosen)
    reason = _output_reason(failed[1], failed[2]) if failed is not None else None
    if DURATION_UNKNOWN_LINE in stderr:
        why = DURATION_UNKNOWN_LINE.removeprefix("batch-transcode: ")
    elif reason is not None and failed is not None:
        why = reason if len(chosen) == 1 else f"{reason} (output {failed[1].name}, .{failed[1].extension})"
    elif "invalid data found when processing input" in low or "could not find codec parameters" in low:
        why = "ffmpeg cannot read this file as media"
    elif (cause := _write_error(low)) is not None:
        why = (
            f"ffmpeg could not write the output ({cause}); check that the output folder can be "
            "written and has space"
        )
    elif "no such file or directory" in low:
        why = "ffmpeg could not open the input"
    elif exit_code is None:
        why = "ffmpeg did not finish in time and was stopped"
    elif exit_code < 0:
        why = f"ffmpeg was killed by signal {-exit_code}"
    elif failed is not None:
        why = f"ffmpeg wrote nothing to output {failed[1].name} (.{failed[1].extension})"
    else:
        why = f"ffmpeg exited with code {exit_code}"
    tail = stderr_tail(stderr)
    return f"{why}\n{tail}" if tail else why
