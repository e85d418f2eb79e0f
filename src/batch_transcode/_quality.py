"""Objective video quality of an output against its source: VMAF, PSNR and SSIM.

One ffmpeg run measures every requested metric (:func:`quality_argv`); each metric's
filter writes a per-frame log (libvmaf JSON, psnr/ssim ``stats_file``) under a name
fixed by the output's index (:func:`log_names`), and the parsers turn those logs into
a :class:`Score` (mean, min, 5th percentile, frames compared). :func:`measure` runs it
here; on an Azure Batch node the task runs the same argv (as a quoted shell line) in its
working directory, uploads the logs, and the client parses them with :func:`parse_logs`.

Conventions (the same for every metric):

- ``output`` is the distorted video, ``source`` the reference; the first video stream
  of each is compared.
- Measured at the output's size: the source is scaled to the output's width and height
  (bicubic) before comparing, so a 480p rendition is scored as a 480p picture against
  the source seen at 480p. That is not Netflix's "upscale the distorted to the display
  size" convention: scores of a downscaled rendition read higher here than there, and
  renditions of different sizes are not directly comparable.
- Both pictures are converted to ``yuv420p`` (8 bits; :data:`PIXEL_FORMAT`) and their
  sample aspect ratio set to 1, so the metrics compare like with like.
- Timestamps are aligned from zero on both (``setpts=PTS-STARTPTS``); each output frame
  is compared with the source frame shown at its time. An output with a different frame
  rate is therefore compared with the nearest earlier source frame (its scores read low
  on fast motion).
- Frames are compared until either stream ends (``shortest=1``): an output cut shorter
  than its source is measured over the frames it has, and :attr:`Score.frames` says how
  many that was.
- VMAF uses libvmaf's built-in default model (``vmaf_v0.6.1``), ``n_threads`` threads.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import attrs

from batch_transcode._errors import ConfigError, QualityError
from batch_transcode._ffmpeg import stderr_tail
from batch_transcode._process import kill_process_group

__all__ = [
    "FILTERS",
    "PIXEL_FORMAT",
    "PSNR_CAP",
    "Metric",
    "OutputQuality",
    "Score",
    "filters_needed",
    "log_names",
    "measure",
    "parse_logs",
    "parse_metrics",
    "parse_psnr_stats",
    "parse_ssim_stats",
    "parse_vmaf_json",
    "quality_argv",
    "version_needed",
]


class Metric(enum.StrEnum):
    """A quality metric; a ``str``: ``Metric.VMAF == "vmaf"``."""

    #: Peak signal-to-noise ratio in dB (ffmpeg's ``psnr`` filter, all planes).
    PSNR = "psnr"
    #: Structural similarity, 0 to 1 (ffmpeg's ``ssim`` filter, its ``All`` value).
    SSIM = "ssim"
    #: Netflix's Video Multi-method Assessment Fusion, 0 to 100 (``libvmaf``).
    VMAF = "vmaf"


#: The pixel format both pictures are converted to before they are compared.
PIXEL_FORMAT = "yuv420p"

#: The PSNR reported for identical pictures (infinite dB) and the most ever reported, so
#: every figure is a finite number (JSON has no infinity). Only nearly identical pictures
#: come near it (one sample off by one in a 1080p frame is 111 dB); visible differences
#: score far below 60 dB.
PSNR_CAP = 100.0

#: The fraction whose percentile :attr:`Score.p5` is.
_P5 = 0.05

#: What a log directory given to :func:`quality_argv` may contain: filter option values
#: are parsed by ffmpeg's filtergraph syntax, where ``: ' \\ , ; [ ] =`` and blanks mean
#: something; names made of these characters need no escaping at all.
_SAFE_LOG_DIR = re.compile(r"[A-Za-z0-9_./+-]*")


def parse_metrics(spec: str | Iterable[str] | None) -> tuple[Metric, ...]:
    """The metrics named by ``spec``: a comma-separated string (``"vmaf,psnr"``, as the
    CLI's ``--quality`` takes it), a sequence of names or :class:`Metric` values, or
    ``None`` (none). Names are case-insensitive; repeats are dropped, the order kept.

    An unknown name raises :class:`ConfigError` listing the valid ones.
    """
    if spec is None:
        return ()
    words: Iterable[Any] = spec.split(",") if isinstance(spec, str) else spec
    chosen: list[Metric] = []
    unknown: list[str] = []
    for word in words:
        name = word.strip().lower() if isinstance(word, str) else word
        if name == "":
            continue
        try:
            metric = Metric(name)
        except ValueError:
            unknown.append(repr(word))
            continue
        if metric not in chosen:
            chosen.append(metric)
    if unknown:
        valid = ", ".join(Metric)
        raise ConfigError(
            f"unknown quality metric {', '.join(unknown)}; choose from {valid} "
            "(quality=('vmaf', 'psnr') or --quality vmaf,psnr)"
        )
    return tuple(chosen)


@attrs.frozen(kw_only=True)
class Score:
    """One metric over the frames of one output: the ``mean`` as ffmpeg reports it, the
    worst frame (``min``), the 5th percentile of the frames (``p5``: 95 % of the frames
    score at least this; linear interpolation between ranks, as numpy's default), and
    how many ``frames`` were compared."""

    mean: float
    min: float
    p5: float
    frames: int


#: The scores of one output, by metric.
OutputQuality: TypeAlias = Mapping[Metric, Score]


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    at = fraction * (len(ordered) - 1)
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _score(what: str, values: Sequence[float], mean: float | None = None) -> Score:
    if not values:
        raise QualityError(
            f"the {what} log holds no frames: nothing was compared (does the output have a video stream?)"
        )
    ordered = sorted(values)
    return Score(
        mean=math.fsum(values) / len(values) if mean is None else mean,
        min=ordered[0],
        p5=_percentile(ordered, _P5),
        frames=len(values),
    )


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise QualityError(f"the {what} log has {text!r} where a number belongs") from None


def parse_vmaf_json(text: str) -> Score:
    """The VMAF :class:`Score` from libvmaf's JSON log (``log_fmt=json``): the per-frame
    ``frames[].metrics.vmaf`` values, and libvmaf's own pooled mean where it wrote one
    (the arithmetic mean of the frames; it is what ffmpeg prints as "VMAF score")."""
    try:
        data = json.loads(text)
        frames = data.get("frames") or []
        values = [float(frame["metrics"]["vmaf"]) for frame in frames]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise QualityError(f"the VMAF log is not libvmaf's JSON ({type(exc).__name__}: {exc})") from None
    pooled = (data.get("pooled_metrics") or {}).get("vmaf") or {}
    mean = pooled.get("mean")
    return _score("VMAF", values, None if mean is None else float(mean))


_PSNR_AVG = re.compile(r"(?:^|\s)psnr_avg:(\S+)")
_SSIM_ALL = re.compile(r"(?:^|\s)All:(\S+)")


def parse_psnr_stats(text: str) -> Score:
    """The PSNR :class:`Score` from the psnr filter's ``stats_file`` (either version).

    Each line's ``psnr_avg`` is the frame's PSNR over all planes (from its plane-size
    weighted MSE). The mean is the one ffmpeg's own summary prints as ``average:``: the
    PSNR of the mean MSE over the frames, not the mean of the frames' dB values (a few
    bad frames weigh more). It is recomputed here from ``psnr_avg`` (printed with more
    significant digits than ``mse_avg``), which needs no peak value: the peak cancels
    out. Identical frames (``inf``) count as MSE 0; every figure is capped at
    :data:`PSNR_CAP` dB.
    """
    values = [_number(m.group(1), "PSNR") for m in _PSNR_AVG.finditer(text)]
    if not values:
        return _score("PSNR", values)
    mean_error = math.fsum(10 ** (-v / 10) for v in values) / len(values)  # MSE / peak²
    mean = PSNR_CAP if mean_error == 0 else min(PSNR_CAP, -10 * math.log10(mean_error))
    return _score("PSNR", [min(PSNR_CAP, v) for v in values], mean)


def parse_ssim_stats(text: str) -> Score:
    """The SSIM :class:`Score` from the ssim filter's ``stats_file``: each line's ``All``
    (all planes, weighted by their size); the mean is their arithmetic mean, as ffmpeg's
    own summary ``All:`` is."""
    return _score("SSIM", [_number(m.group(1), "SSIM") for m in _SSIM_ALL.finditer(text)])


_PARSERS: dict[Metric, Callable[[str], Score]] = {
    Metric.PSNR: parse_psnr_stats,
    Metric.SSIM: parse_ssim_stats,
    Metric.VMAF: parse_vmaf_json,
}
_LOG_SUFFIX = {Metric.PSNR: "psnr.log", Metric.SSIM: "ssim.log", Metric.VMAF: "vmaf.json"}


def log_names(index: int, metrics: Iterable[str]) -> dict[Metric, str]:
    """The log file name of each metric for output number ``index`` (0 for the first
    output of an input): ``quality-<index>-vmaf.json``, ``quality-<index>-psnr.log``,
    ``quality-<index>-ssim.log``. Plain names, safe in a filtergraph and a shell line."""
    if not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    return {m: f"quality-{index}-{_LOG_SUFFIX[m]}" for m in parse_metrics(metrics)}


def _metric_filter(metric: Metric, log: str, threads: int) -> str:
    if metric is Metric.VMAF:
        return f"libvmaf=n_threads={threads}:shortest=1:log_fmt=json:log_path={log}"
    return f"{metric.value}=shortest=1:stats_file={log}"


def _labels(stem: str, count: int) -> list[str]:
    return [f"[{stem}{i}]" for i in range(count)]


def _graph(metrics: Sequence[Metric], logs: Sequence[str], threads: int) -> str:
    """The filtergraph: input 0 is the source (reference), input 1 the output (distorted)."""
    n = len(metrics)
    fan = (lambda labels: f",split={n}{''.join(labels)}") if n > 1 else (lambda labels: labels[0])
    common = f"format={PIXEL_FORMAT},setsar=1"
    dist, ref = _labels("dist", n), _labels("ref", n)
    chains = [
        # The output twice: once to be measured, once to give its size to the scaler.
        "[1:v:0]setpts=PTS-STARTPTS,split=2[dist][size]",
        "[0:v:0]setpts=PTS-STARTPTS[src]",
        # scale with a second input: rw/rh are that input's width and height.
        f"[src][size]scale=w=rw:h=rh:flags=bicubic,{common}{fan(ref)}",
        f"[dist]{common}{fan(dist)}",
    ]
    chains += [
        f"{d}{r}{_metric_filter(m, log, threads)}[q{i}]"
        for i, (m, log, d, r) in enumerate(zip(metrics, logs, dist, ref, strict=True))
    ]
    return ";".join(chains)


def quality_argv(
    ffmpeg: str,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    metrics: str | Iterable[str],
    *,
    log_dir: str = "",
    index: int = 0,
    threads: int = 2,
) -> list[str]:
    """The argv of one ffmpeg run measuring each of ``metrics`` of ``output`` (distorted)
    against ``source`` (reference), writing the logs :func:`log_names` gives for
    ``index`` into ``log_dir`` (``""``: ffmpeg's working directory). See the module's
    docstring for how the pictures are lined up.

    ``source`` and ``output`` are taken as they are (a relative path is relative to
    where ffmpeg runs) with the ``file:`` prefix, so any name works, a leading ``-``
    included. The log paths sit inside filter options, where ffmpeg's filtergraph
    syntax gives ``:``, quotes, commas, brackets and blanks a meaning: rather than
    escape them at two levels, ``log_dir`` must be made of letters, digits and
    ``_ . / + -`` (a ``ValueError`` otherwise): run in a directory of your own and
    leave it ``""``, as :func:`measure` does.
    """
    chosen = parse_metrics(metrics)
    if not chosen:
        raise ValueError("quality_argv needs at least one metric")
    if _SAFE_LOG_DIR.fullmatch(log_dir) is None:
        raise ValueError(
            f"log_dir {log_dir!r} has characters ffmpeg's filter syntax would need escaped; "
            "run ffmpeg in that directory and pass log_dir=''"
        )
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    names = log_names(index, chosen)
    logs = [f"{log_dir.rstrip('/')}/{names[m]}" if log_dir else names[m] for m in chosen]
    maps = [word for i in range(len(chosen)) for word in ("-map", f"[q{i}]")]
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-i", "file:" + os.fspath(source),
        "-i", "file:" + os.fspath(output),
        "-filter_complex", _graph(chosen, logs, threads),
        *maps, "-f", "null", "-",
    ]  # fmt: skip


def parse_logs(
    metrics: str | Iterable[str], read: Callable[[str], str | None], *, index: int = 0
) -> dict[Metric, Score]:
    """The scores of output ``index`` from its logs: ``read(name)`` returns the text of
    the log called ``name`` (see :func:`log_names`), or ``None`` when there is none (a
    blob that was not uploaded, say). Raises :class:`QualityError` naming missing or
    unreadable logs."""
    texts = {metric: (name, read(name)) for metric, name in log_names(index, metrics).items()}
    missing = [name for name, text in texts.values() if text is None]
    if missing:
        raise QualityError(f"no quality log {', '.join(missing)}: the measurement did not run to its end")
    return {metric: _PARSERS[metric](text or "") for metric, (_, text) in texts.items()}


def _wait(proc: subprocess.Popen[bytes], timeout: float | None, cancel: threading.Event | None) -> str | None:
    """Wait for ``proc``; ``None`` when it exited, else why it was stopped (it is then
    killed by the caller)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if cancel is not None and cancel.is_set():
            return "the run was cancelled"
        step = None if cancel is None else 0.1
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"it did not finish within {timeout:g} s"
            step = left if step is None else min(step, left)
        try:
            proc.wait(timeout=step)
            return None
        except subprocess.TimeoutExpired:
            continue


def _reader(folder: str) -> Callable[[str], str | None]:
    def read(name: str) -> str | None:
        try:
            return Path(folder, name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None

    return read


def _run_in(
    folder: str,
    argv: list[str],
    errors: Path,
    timeout: float | None,
    cancel: threading.Event | None,
    *,
    source: str,
    output: str,
) -> tuple[subprocess.Popen[bytes], str | None]:
    """Run ``argv`` in ``folder``, stderr into ``errors`` (a file, not a pipe: nothing to
    drain while waiting), in a process group of its own; the process, and why it was
    stopped early (None if it ran to its end)."""
    with errors.open("wb") as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            raise QualityError(
                f"could not start ffmpeg to measure quality: {exc}", source=source, output=output
            ) from exc
        try:
            return proc, _wait(proc, timeout, cancel)
        finally:
            kill_process_group(proc)  # no-op once it exited


def measure(
    ffmpeg: str,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    metrics: str | Iterable[str] | None,
    *,
    threads: int = 2,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
) -> dict[Metric, Score]:
    """Measure ``metrics`` of ``output`` against ``source`` with one ffmpeg run
    (:func:`quality_argv`), and return each metric's :class:`Score` (empty when no
    metric is asked for).

    ffmpeg runs in a temporary directory of its own (its logs need no escaping there),
    with an argv and no shell, in a process group of its own; it is killed past
    ``timeout`` seconds, when ``cancel`` is set, or when this call is interrupted.
    Any failure (ffmpeg missing or exiting non-zero, a timeout, a cancel, an
    unreadable log) raises :class:`QualityError`: the output itself is not affected.
    """
    chosen = parse_metrics(metrics)
    if not chosen:
        return {}
    src, out = os.path.abspath(source), os.path.abspath(output)
    argv = quality_argv(ffmpeg, src, out, chosen, threads=threads)
    with tempfile.TemporaryDirectory(prefix="bt-quality-") as folder:
        errors = Path(folder, "ffmpeg-stderr.log")
        proc, stopped = _run_in(folder, argv, errors, timeout, cancel, source=src, output=out)
        graph = argv[argv.index("-filter_complex") + 1]
        stderr = errors.read_text(encoding="utf-8", errors="replace").replace(graph, "(the quality filters)")
        tail = stderr_tail(stderr)
        if stopped is not None:
            raise QualityError(f"quality not measured: {stopped}", source=src, output=out)
        if proc.returncode != 0:
            why = ": the source or the output has no video stream" if "matches no streams" in stderr else ""
            raise QualityError(
                f"ffmpeg could not measure quality{why} (exit code {proc.returncode})",
                source=src,
                output=out,
                stderr_tail=tail or None,
            )
        try:
            return parse_logs(chosen, _reader(folder))
        except QualityError as exc:
            raise QualityError(str(exc), source=src, output=out, stderr_tail=tail or None) from None


#: The ffmpeg filter each metric is measured with.
FILTERS: Mapping[Metric, str] = {Metric.VMAF: "libvmaf", Metric.PSNR: "psnr", Metric.SSIM: "ssim"}


#: The release the measurement's filter graph needs: ``scale`` sized by a reference input
#: (``rw``/``rh``) came with FFmpeg 7.1 (its Changelog).
MIN_VERSION = (7, 1)


def version_needed(metrics: Iterable[Metric]) -> tuple[tuple[int, int], str] | None:
    """For :func:`~batch_transcode._ffmpeg.check_build`: the release quality needs."""
    return (MIN_VERSION, "measuring quality") if tuple(metrics) else None


def filters_needed(metrics: Iterable[Metric]) -> dict[str, str]:
    """What measuring ``metrics`` needs of an ffmpeg build, for
    :func:`~batch_transcode._ffmpeg.check_build`: ``{"quality metric vmaf": "libvmaf"}``."""
    return {f"quality metric {m.value}": FILTERS[m] for m in metrics}
