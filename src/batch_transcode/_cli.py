"""The ``batch-transcode`` command line: convert, plan, attach, sessions, demo, cleanup, emulator.

Exit codes: 0 done, 1 a file failed (or the run could not finish), 2 usage or
configuration error, 130 interrupted (Ctrl-C). Credentials come from the
``AZURE_*`` environment variables only, never from flags (flags end up in shell
histories and process listings).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import attrs

from batch_transcode import __version__
from batch_transcode._config import (
    AptFFmpeg,
    AzureConfig,
    ContainerFFmpeg,
    FFmpegProvisioning,
    LocalConfig,
    StagedFFmpeg,
)
from batch_transcode._destinations import check_output_folder, check_report_file, write_report_file
from batch_transcode._errors import (
    AttachError,
    AuthenticationError,
    ConfigError,
    InputError,
    TranscodeError,
)
from batch_transcode._inputs import find_inputs
from batch_transcode._maintenance import (
    DEFAULT_OLDER_THAN,
    as_age,
    check_id,
    cleanup,
    format_age,
    list_sessions,
)
from batch_transcode._naming import outputs_are_media
from batch_transcode._plan import DEFAULT_MB_PER_SECOND
from batch_transcode._presets import PRESETS, Preset, resolve_preset
from batch_transcode._quality import Metric, parse_metrics
from batch_transcode._report import Report
from batch_transcode._session import TranscodeSession
from batch_transcode.samples import make_sample_media

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED_FILES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Flags of one backend only: option dest -> flag as typed.
LOCAL_FLAGS = {"workers": "--workers", "ffmpeg": "--ffmpeg"}
AZURE_FLAGS = {
    "nodes": "--nodes",
    "spot_nodes": "--spot-nodes",
    "autoscale": "--autoscale",
    "max_nodes": "--max-nodes",
    "vm_size": "--vm-size",
    "pool_id": "--pool-id",
    "keep_pool": "--keep-pool",
    "ffmpeg_from": "--ffmpeg-from",
    "session_timeout": "--session-timeout",
}
#: AzureConfig's default for a task's time limit; a shorter session shortens it too.
_TASK_TIMEOUT = attrs.fields(AzureConfig).task_timeout.default


# -- argument types -------------------------------------------------------------------


def _number(text: str, kind: type[int] | type[float], *, zero_ok: bool) -> float:
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if value < 0 or (value == 0 and not zero_ok):
        raise argparse.ArgumentTypeError(f"{text!r} must be {'0 or more' if zero_ok else 'above 0'}")
    return value


def _count(text: str) -> int:
    return int(_number(text, int, zero_ok=True))


def _some(text: str) -> int:
    """A whole number of at least 1."""
    return int(_number(text, int, zero_ok=False))


def _positive(text: str) -> float:
    return _number(text, float, zero_ok=False)


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``6h`` or ``1d``."""
    try:
        seconds = as_age(text).total_seconds()
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 6h or 1d") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return seconds


def _metrics(text: str) -> tuple[Metric, ...]:
    """``--quality vmaf,psnr``: known metric names, comma-separated."""
    try:
        metrics = parse_metrics(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not metrics:
        raise argparse.ArgumentTypeError(f"{text!r} names no metric; use one or more of {', '.join(Metric)}")
    return metrics


def _ffmpeg_from(text: str) -> FFmpegProvisioning:
    """``apt``, ``staged=PATH`` (a static Linux ffmpeg to upload) or ``container[=IMAGE]``."""
    kind, _, value = text.partition("=")
    if kind == "apt" and not value:
        return AptFFmpeg()
    if kind == "staged" and value:
        path = Path(value).expanduser()
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"staged ffmpeg {value!r} is not a file")
        return StagedFFmpeg(binary=path)
    if kind == "container":
        return ContainerFFmpeg(image=value) if value else ContainerFFmpeg()
    raise argparse.ArgumentTypeError(
        f"{text!r}: use apt, staged=PATH (a static Linux ffmpeg binary) or container[=IMAGE]"
    )


# -- the parser -----------------------------------------------------------------------


def _add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help=f"also write {what} as JSON to FILE ('-': to standard output, the text then goes "
        "to standard error)",
    )


def _add_html(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--html",
        metavar="FILE",
        default=None,
        help="also write the report as one self-contained HTML page to FILE (node use, "
        "task timeline, one row per file)",
    )


def _backend_options() -> argparse.ArgumentParser:
    """Options shared by ``convert`` and ``plan``: which backend, and its settings."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--to",
        dest="preset",
        default=["mp3"],
        type=_preset_names,
        metavar="PRESET[,PRESET...]",
        help=f"output preset, or several written in one pass (e.g. mp3,opus,thumbnail); "
        f"one of {', '.join(sorted(PRESETS))} (default mp3)",
    )
    parent.add_argument(
        "--loudness",
        type=float,
        default=None,
        metavar="LUFS",
        help="normalise the audio outputs to this EBU R128 loudness (e.g. -16 podcasts, -23 broadcast)",
    )
    parent.add_argument(
        "--segment-seconds",
        type=_positive,
        default=None,
        metavar="S",
        help="encode each video at least two segments long in segments of about S seconds, cut at "
        "its keyframes, in parallel, then stitch and check them (video presets only; needs PyAV)",
    )
    parent.add_argument(
        "--backend",
        choices=("local", "azure"),
        default="local",
        help="local: ffmpeg on this machine (default); azure: Azure Batch, with credentials from the "
        "AZURE_* environment variables",
    )
    local = parent.add_argument_group("local backend")
    local.add_argument(
        "--workers", type=int, default=None, metavar="N", help="ffmpeg processes at once (default: CPUs)"
    )
    local.add_argument("--ffmpeg", default=None, metavar="EXE", help="the ffmpeg executable to use")
    _azure_options(parent.add_argument_group("azure backend (AzureConfig settings of the same names)"))
    return parent


def _azure_options(azure: argparse._ArgumentGroup) -> None:
    """The Azure backend's settings, each an AzureConfig setting of the same name."""
    azure.add_argument(
        "--nodes", type=_count, default=None, metavar="N", help="dedicated nodes (dedicated_nodes, default 1)"
    )
    azure.add_argument("--spot-nodes", type=_count, default=None, metavar="N", help="Spot nodes (default 0)")
    azure.add_argument(
        "--autoscale",
        action="store_true",
        default=None,
        help="scale the pool with the pending tasks, up to --max-nodes",
    )
    azure.add_argument(
        "--max-nodes", type=_count, default=None, metavar="N", help="autoscale ceiling (default 10)"
    )
    azure.add_argument("--vm-size", default=None, metavar="SIZE", help="e.g. Standard_D2s_v5 (the default)")
    azure.add_argument(
        "--pool-id", default=None, metavar="ID", help="run on this existing pool (it is never deleted)"
    )
    azure.add_argument(
        "--keep-pool", action="store_true", default=None, help="leave the session's pool for reuse"
    )
    azure.add_argument(
        "--ffmpeg-from",
        type=_ffmpeg_from,
        default=None,
        metavar="HOW",
        help="how nodes get ffmpeg: apt (default), staged=PATH (upload this static Linux "
        "ffmpeg) or container[=IMAGE]",
    )
    azure.add_argument(
        "--session-timeout",
        type=_duration,
        default=None,
        metavar="TIME",
        help="the most the session's jobs may run, such as 90m or 6h (default 6h); the "
        "service ends them after that even if this process is gone",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch-transcode",
        description="Transcode media files in parallel with ffmpeg, on this machine or on Azure Batch.",
        epilog="Exit codes: 0 done, 1 a file failed, 2 usage or configuration error, 130 interrupted. "
        "Azure credentials are read from AZURE_BATCH_ENDPOINT, AZURE_BATCH_ACCOUNT, "
        "AZURE_BATCH_ACCESS_KEY, AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT "
        "(+ AZURE_STORAGE_KEY).",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more logging, the paths a search passed over, and the traceback of an error (-vv: debug)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backend = _backend_options()

    for add in (_add_convert, _add_plan):
        add(sub, backend)
    for add_other in (_add_attach, _add_sessions, _add_demo, _add_cleanup, _add_emulator):
        add_other(sub)
    return parser


def _add_convert(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], backend: argparse.ArgumentParser
) -> None:
    """``convert``: files or folders to convert."""
    conv = sub.add_parser(
        "convert", parents=[backend], help="convert files or folders of media files", description=(
            "Convert files, or the media files found in folders, into --output-dir with the "
            "inputs' layout. Outputs already there from an earlier run are kept."
        ),
    )  # fmt: skip
    conv.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders to search for media")
    conv.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="where outputs go")
    conv.add_argument(
        "--skip-existing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep outputs already complete from an earlier run (default: yes)",
    )
    conv.add_argument(
        "--quality",
        type=_metrics,
        default=None,
        metavar="METRIC[,METRIC...]",
        help=f"also measure each video output against its input: {', '.join(Metric)} (e.g. "
        "vmaf,psnr); the scores are in the summary and the JSON report",
    )
    conv.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    _add_json(conv, "the report")
    _add_html(conv)


def _add_plan(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], backend: argparse.ArgumentParser
) -> None:
    """``plan``: a convert run estimated, nothing created."""
    plan = sub.add_parser(
        "plan", parents=[backend], help="estimate a run: files, bytes, nodes, time and cost", description=(
            "Estimate a convert run with the same options, creating nothing: files, bytes to "
            "stage, nodes, wall time, node-hours and, with --price-per-node-hour, the cost."
        ),
    )  # fmt: skip
    plan.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders to search for media")
    plan.add_argument(
        "-o",
        "--output-dir",
        default="out",
        metavar="DIR",
        help="the output folder the run would write to (default ./out): checked and left out of "
        "the search for inputs, nothing is written",
    )
    plan.add_argument(
        "--price-per-node-hour", type=_positive, default=None, metavar="PRICE", help="your VM price"
    )
    plan.add_argument(
        "--mb-per-second",
        type=_positive,
        default=DEFAULT_MB_PER_SECOND,
        metavar="MBPS",
        help="assumed input MB/s per task slot, for presets the CPU table lacks "
        f"(default {DEFAULT_MB_PER_SECOND:g})",
    )
    _add_json(plan, "the plan")


def _add_attach(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``attach``: collect a session whose process died."""
    att = sub.add_parser(
        "attach", help="collect the outputs of a session whose process died", description=(
            "Attach to an Azure job whose submitting process is gone (a crash, a closed "
            "notebook): watch it, download its outputs into --output-dir, then remove the "
            "session's job, pool and containers. Give a session id (from 'batch-transcode "
            "sessions') or a job id."
        ),
    )  # fmt: skip
    att.add_argument("ident", metavar="SESSION_OR_JOB", help="e.g. bt-20261101t1200-1a2b3c4d")
    att.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="where outputs go")
    att.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    _add_json(att, "the report")
    _add_html(att)


def _add_sessions(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sessions``: what runs in the account."""
    sess = sub.add_parser(
        "sessions", help="list the sessions alive in the Azure account", description=(
            "List the sessions of this library with resources in the Azure account (from the "
            "tags on their pools, jobs and containers): age, pool state and nodes, tasks done, "
            "containers, and the commands that attach to or remove each."
        ),
    )  # fmt: skip
    sess.add_argument(
        "--json", nargs="?", const="-", default=None, metavar="FILE",
        help="write the list as JSON instead of text (to FILE, default standard output)",
    )  # fmt: skip


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``demo``: sample videos to MP3, locally."""
    demo = sub.add_parser(
        "demo", help="generate sample videos and convert them to MP3 locally", description=(
            "Generate short sample videos in a temporary folder and convert them to MP3 on this "
            "machine: a check that ffmpeg and the library work. Needs no Azure account."
        ),
    )  # fmt: skip
    demo.add_argument("-o", "--output-dir", default=None, metavar="DIR", help="default: ./demo-out")
    demo.add_argument("--count", type=_some, default=4, help="number of sample videos (default 4)")
    demo.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def _add_cleanup(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cleanup``: sweep what crashed sessions left."""
    clean = sub.add_parser(
        "cleanup", help="remove pools, jobs and containers left by crashed sessions", description=(
            "Remove the pools, jobs and containers that sessions of this library left in the "
            "Azure account (a crash, a killed process), found by their tags. Only what is older "
            "than --older-than; what is younger is counted as skipped ('batch-transcode "
            "sessions' lists it)."
        ),
    )  # fmt: skip
    default_age = format_age(DEFAULT_OLDER_THAN)
    clean.add_argument(
        "--older-than",
        default=default_age,
        metavar="AGE",
        help=f"only what is older than this, such as 30m, 2h, 1d, 0s (default {default_age}); "
        "younger resources are skipped and counted",
    )
    clean.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    clean.add_argument("--session", default=None, help="only this session id")


def _add_emulator(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``emulator``: the offline Azure for other programs."""
    emu = sub.add_parser(
        "emulator", help="run Azurite and the Batch emulator; print export lines", description=(
            "Start the offline Azure (Azurite and the Batch emulator) on free loopback ports, "
            "print export lines for the AZURE_* variables, and serve until Ctrl-C. Needs the "
            "testing extra: pip install 'batch-transcode[testing]'."
        ),
    )  # fmt: skip
    emu.add_argument("--tls", action="store_true", help="serve Batch over https with a throwaway CA")
    emu.add_argument(
        "--entra-id",
        action="store_true",
        help="keyless: Microsoft Entra ID only, with a managed-identity endpoint for "
        "DefaultAzureCredential (IDENTITY_ENDPOINT, IDENTITY_HEADER); implies --tls",
    )
    emu.add_argument(
        "--intercept",
        action="store_true",
        help="answer for the public names (<account>.blob.core.windows.net, "
        "<account>.<region>.batch.azure.com) through an HTTPS proxy (HTTPS_PROXY), so that a "
        "program written for the public cloud runs offline unchanged",
    )
    emu.add_argument("--region", default="westeurope", help="the region in the Batch endpoint (--intercept)")


def _preset_names(text: str) -> list[str]:
    """``--to mp3,opus,thumbnail``: known preset names, comma-separated."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown preset {', '.join(unknown) or repr(text)}; use one or more of "
            f"{', '.join(sorted(PRESETS))}, separated by commas"
        )
    return names


def _with_loudness(names: Sequence[str], loudness: float | None) -> list[Preset]:
    """The presets named, the audio ones normalised to ``loudness`` when given."""
    presets = [resolve_preset(n) for n in names]
    if loudness is None:
        return presets
    return [p if p.video_only else p.with_audio(loudness=loudness) for p in presets]


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# -- shared pieces ----------------------------------------------------------------------


def _given(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    return [flag for dest, flag in flags.items() if getattr(args, dest, None) is not None]


def _config(args: argparse.Namespace) -> LocalConfig | AzureConfig:
    """The backend's config from the flags; a flag of the other backend is a usage error."""
    if args.backend == "azure":
        wrong = _given(args, LOCAL_FLAGS)
        if wrong:
            raise ConfigError(f"{', '.join(wrong)}: only for --backend local")
        overrides: dict[str, Any] = {}
        for dest, field in (
            ("nodes", "dedicated_nodes"),
            ("spot_nodes", "spot_nodes"),
            ("autoscale", "autoscale"),
            ("max_nodes", "max_nodes"),
            ("vm_size", "vm_size"),
            ("pool_id", "pool_id"),
            ("keep_pool", "keep_pool"),
            ("ffmpeg_from", "ffmpeg"),
            ("session_timeout", "session_timeout"),
        ):
            value = getattr(args, dest)
            if value is not None:
                overrides[field] = value
        if args.session_timeout is not None and args.session_timeout < _TASK_TIMEOUT:
            overrides["task_timeout"] = args.session_timeout  # no task may outlive its session
        return AzureConfig.from_env(**overrides)
    wrong = _given(args, AZURE_FLAGS)
    if wrong:
        raise ConfigError(f"{', '.join(wrong)}: only for --backend azure")
    kwargs: dict[str, Any] = {"ffmpeg": args.ffmpeg}
    if args.workers is not None:
        kwargs["workers"] = args.workers
    return LocalConfig(**kwargs)


def _preset(args: argparse.Namespace) -> list[Preset]:
    """The output presets the flags ask for (``--to``, ``--loudness``)."""
    return _with_loudness(args.preset, args.loudness)


def _inputs(args: argparse.Namespace, presets: Sequence[Preset]) -> tuple[Path, list[Path]]:
    """The output folder and the input files, checked (and the ``--json`` file), before
    anything is written. What the search passed over is noted on standard error, and
    listed with ``-v``."""
    out = check_output_folder(args.output_dir)
    found = find_inputs(args.paths, output_dir=out, outputs_are_media=outputs_are_media(presets))
    listed = args.verbose > 0
    duplicates, passed_over = found.duplicates_note(), found.passed_over_note()
    if duplicates:
        print(f"batch-transcode: note: {duplicates}", file=sys.stderr)
    if passed_over:
        more = "" if listed else " (-v lists them)"
        print(f"batch-transcode: note: {passed_over}{more}", file=sys.stderr)
    if listed:
        for skipped in found.skipped:
            print(f"batch-transcode:   passed over {skipped}", file=sys.stderr)
    _check_reports(args, inputs=found.files)
    return out, list(found.files)


#: The options that write a report to a file: option dest -> flag as typed.
REPORT_OPTIONS = {"json": "--json", "html": "--html"}


def _check_reports(args: argparse.Namespace, inputs: Sequence[Path] = ()) -> None:
    """Every report file the command was asked for can be written (before the run)."""
    for dest, flag in REPORT_OPTIONS.items():
        check_report_file(getattr(args, dest, None), option=flag, inputs=inputs)


def _text_stream(args: argparse.Namespace) -> TextIO:
    """Where the human-readable text goes: stderr when the JSON goes to stdout."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout


def _write_json(data: object, target: str | None) -> None:
    if target is None:
        return
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_report_file(target, text)


def _finish(report: Report, output_dir: Path, args: argparse.Namespace) -> int:
    _write_json(report.to_dict(), getattr(args, "json", None))
    if getattr(args, "html", None):
        report.save_html(args.html)
    out = _text_stream(args)
    print(report.summary(), file=out)
    print(f"outputs are in {output_dir}", file=out)
    return EXIT_OK if report.ok else EXIT_FAILED_FILES


# -- commands -----------------------------------------------------------------------------


def _cmd_convert(args: argparse.Namespace) -> int:
    config = _config(args)
    preset = _preset(args)
    out, paths = _inputs(args, preset)
    with TranscodeSession(config) as session:
        report = session.convert(
            paths,
            output_dir=out,
            preset=preset,
            show_progress=not args.no_progress,
            skip_existing=args.skip_existing,
            quality=args.quality,
            segment_seconds=args.segment_seconds,
        )
    return _finish(report, out, args)


def _cmd_plan(args: argparse.Namespace) -> int:
    config = _config(args)
    preset = _preset(args)
    out, paths = _inputs(args, preset)
    plan = TranscodeSession(config).plan(
        paths,
        output_dir=out,
        preset=preset,
        price_per_node_hour=args.price_per_node_hour,
        mb_per_second=args.mb_per_second,
        segment_seconds=args.segment_seconds,
    )
    _write_json({**attrs.asdict(plan), "estimated_cost": plan.estimated_cost}, args.json)
    print(plan, file=_text_stream(args))
    return EXIT_OK


def _cmd_attach(args: argparse.Namespace) -> int:
    check_id(args.ident)  # a malformed id, the output folder and the reports are
    out = check_output_folder(args.output_dir)  # refused before the AZURE_* variables are read
    _check_reports(args)
    config = AzureConfig.from_env()
    with TranscodeSession.attach(
        args.ident, config, output_dir=out, show_progress=not args.no_progress
    ) as job:
        report = job.wait()
    return _finish(report, out, args)


def _age(delta: dt.timedelta | None) -> str:
    if delta is None:
        return "age unknown"
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} min old"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h old"
    return f"{minutes / 1440:.1f} days old"


def _cmd_sessions(args: argparse.Namespace) -> int:
    _check_reports(args)
    sessions = list_sessions(AzureConfig.from_env())
    now = dt.datetime.now(dt.UTC)
    if args.json is not None:
        _write_json([s.to_dict(now) for s in sessions], args.json)
        if args.json == "-":
            return EXIT_OK
    out = _text_stream(args)
    if not sessions:
        print("no sessions of batch-transcode in this account", file=out)
        return EXIT_OK
    for s in sessions:
        print(f"{s.session_id}  ({_age(s.age(now))})", file=out)
        for line in [*map(str, s.pools), *map(str, s.jobs)]:
            print(f"  {line}", file=out)
        if s.containers:
            print(f"  containers: {', '.join(s.containers)}", file=out)
        if s.attach_command:
            print(f"  collect:  {s.attach_command}", file=out)
        print(f"  remove:   {s.cleanup_command}", file=out)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    out = check_output_folder(args.output_dir or "demo-out")
    with tempfile.TemporaryDirectory(prefix="batch-transcode-demo-") as tmp:
        samples = make_sample_media(Path(tmp) / "videos", args.count)
        print(f"generated {len(samples)} sample videos in {samples[0].parent}")
        with TranscodeSession(LocalConfig()) as session:
            report = session.convert(
                samples, output_dir=out, preset="mp3", show_progress=not args.no_progress
            )
    code = _finish(report, out, args)
    for r in report.succeeded:
        print(f"  {r.output}")
    return code


def _cmd_cleanup(args: argparse.Namespace) -> int:
    """List (and unless ``--dry-run`` remove) what sessions of this library left behind."""
    age = as_age(args.older_than)  # a bad age is refused before the AZURE_* variables are read
    report = cleanup(AzureConfig.from_env(), older_than=age, session=args.session, dry_run=args.dry_run)
    for orphan in report.found:
        if args.dry_run:
            print(f"would remove {orphan}")
        elif orphan in report.removed:
            print(f"removed {orphan}")
    print(report)
    if report.younger and not report.found:
        print("they may belong to sessions still running: 'batch-transcode sessions' lists them")
    return EXIT_OK if report.ok else EXIT_FAILED_FILES


def _cmd_emulator(args: argparse.Namespace) -> int:
    """Print ``export`` lines for the offline Azure, serve until Ctrl-C or SIGTERM."""
    try:
        from batch_transcode.testing import OfflineAzure
    except ModuleNotFoundError as exc:
        raise ConfigError(f"batch-transcode emulator: {exc}") from exc

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with OfflineAzure(
            tls=args.tls, entra_id=args.entra_id, intercept=args.intercept, region=args.region
        ) as oa:
            for name, value in oa.env.items():
                print(f"export {name}={shlex.quote(value)}")
            print("# Azurite and the Batch emulator are running; press Ctrl-C to stop them.")
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("# stopped", file=sys.stderr)
    return EXIT_OK


COMMANDS = {
    "convert": _cmd_convert,
    "plan": _cmd_plan,
    "attach": _cmd_attach,
    "sessions": _cmd_sessions,
    "demo": _cmd_demo,
    "cleanup": _cmd_cleanup,
    "emulator": _cmd_emulator,
}


#: Optional modules, by the extra that installs them (pyproject.toml).
_EXTRAS = {"jsonschema": "testing", "trustme": "testing", "imageio_ffmpeg": "local", "av": "split"}

#: Errors the user fixes before running again (exit code 2): nothing was created.
USAGE_ERRORS = (ConfigError, InputError, AttachError, AuthenticationError)


def _error(exc: Exception, args: argparse.Namespace) -> int:
    """Say what went wrong on standard error (the traceback first with ``-v``) and
    return the exit code."""
    if args.verbose:
        traceback.print_exception(exc)
    if isinstance(exc, TranscodeError):
        print(f"batch-transcode: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILED_FILES
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    extra = _EXTRAS.get((missing or "").split(".")[0])
    if extra is not None:
        print(
            f"batch-transcode: error: '{args.command}' needs the {extra} extra (module "
            f"{missing!r} is not installed); install it with: pip install 'batch-transcode[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"batch-transcode: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED_FILES
    print(
        f"batch-transcode: internal error: {type(exc).__name__}: {exc}; run again with -v to "
        "see where, and report it",
        file=sys.stderr,
    )
    return EXIT_FAILED_FILES


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(
            "batch-transcode: interrupted; outputs already finished are kept, and what else the "
            "run made was removed (temporary files; on Azure the session's pool, job and "
            "containers). Run the same command again to convert the rest",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _error(exc, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
