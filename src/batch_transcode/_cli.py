"""The ``batch-transcode`` command line: convert, demo, cleanup, emulator."""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from batch_transcode._config import AzureConfig, LocalConfig
from batch_transcode._errors import ConfigError, InputError, TranscodeError
from batch_transcode._naming import discover
from batch_transcode._presets import PRESETS, Preset, resolve_preset
from batch_transcode._report import Report
from batch_transcode._session import TranscodeSession
from batch_transcode.samples import make_sample_media

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED_FILES = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch-transcode",
        description="Transcode media files in parallel with ffmpeg, on this machine or on Azure Batch.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    conv = sub.add_parser("convert", help="convert files or folders of media files")
    conv.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders to search for media")
    conv.add_argument(
        "--to",
        dest="preset",
        default=["mp3"],
        type=_preset_names,
        metavar="PRESET[,PRESET...]",
        help=f"output preset, or several written in one pass (e.g. mp3,opus,thumbnail); "
        f"one of {', '.join(sorted(PRESETS))}",
    )
    conv.add_argument(
        "--loudness",
        type=float,
        default=None,
        metavar="LUFS",
        help="normalise the audio outputs to this EBU R128 loudness (e.g. -16 podcasts, -23 broadcast)",
    )
    conv.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="where outputs go")
    conv.add_argument("--backend", choices=("local", "azure"), default="local")
    conv.add_argument("--workers", type=int, default=None, help="local: ffmpeg processes at once")
    conv.add_argument("--ffmpeg", default=None, help="local: the ffmpeg executable to use")
    conv.add_argument("--no-progress", action="store_true", help="do not show a progress bar")

    demo = sub.add_parser("demo", help="generate sample videos and convert them to MP3 locally")
    demo.add_argument("-o", "--output-dir", default=None, metavar="DIR", help="default: ./demo-out")
    demo.add_argument("--count", type=int, default=4, help="number of sample videos (default 4)")
    demo.add_argument("--no-progress", action="store_true")

    clean = sub.add_parser("cleanup", help="remove pools, jobs and containers left by crashed sessions")
    clean.add_argument("--older-than", default="2h", help="age such as 30m, 2h, 1d, 0s (default 2h)")
    clean.add_argument("--dry-run", action="store_true", help="list what would be removed")
    clean.add_argument("--session", default=None, help="only this session id")

    emu = sub.add_parser("emulator", help="run Azurite and the Batch emulator; print export lines")
    emu.add_argument("--tls", action="store_true", help="serve Batch over https with a throwaway CA")
    return parser


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


def _print_report(report: Report, output_dir: Path) -> None:
    print(report.summary())
    print(f"outputs are in {output_dir}")


def _cmd_convert(args: argparse.Namespace) -> int:
    config: LocalConfig | AzureConfig
    if args.backend == "azure":
        config = AzureConfig.from_env()
    else:
        kwargs: dict[str, object] = {"ffmpeg": args.ffmpeg}
        if args.workers is not None:
            kwargs["workers"] = args.workers
        config = LocalConfig(**kwargs)  # type: ignore[arg-type]
    paths = discover(args.paths)
    if not paths:
        raise InputError(f"no media files found in {', '.join(args.paths)}")
    out = Path(args.output_dir)
    with TranscodeSession(config) as session:
        report = session.convert(
            paths,
            output_dir=out,
            preset=_with_loudness(args.preset, args.loudness),
            show_progress=not args.no_progress,
        )
    _print_report(report, out.absolute())
    return EXIT_OK if report.ok else EXIT_FAILED_FILES


def _cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.output_dir or "demo-out").absolute()
    with tempfile.TemporaryDirectory(prefix="batch-transcode-demo-") as tmp:
        samples = make_sample_media(Path(tmp) / "videos", args.count)
        print(f"generated {len(samples)} sample videos in {samples[0].parent}")
        with TranscodeSession(LocalConfig()) as session:
            report = session.convert(
                samples, output_dir=out, preset="mp3", show_progress=not args.no_progress
            )
    _print_report(report, out)
    for r in report.succeeded:
        print(f"  {r.output}")
    return EXIT_OK if report.ok else EXIT_FAILED_FILES


def _cmd_cleanup(args: argparse.Namespace) -> int:
    """List (and unless ``--dry-run`` remove) what sessions of this library left behind."""
    from batch_transcode._azure._calls import call
    from batch_transcode._azure._clients import make_batch_client
    from batch_transcode._azure.cleanup import find_orphans, parse_age, remove_orphans
    from batch_transcode._azure.staging import make_blob_service_client

    older_than = parse_age(args.older_than)
    config = AzureConfig.from_env()
    batch = make_batch_client(config)
    blobs, _key = make_blob_service_client(config)
    orphans = call(
        config.retry,
        "list pools, jobs and containers",
        lambda: find_orphans(batch, blobs, older_than=older_than, session=args.session),
    )
    if not orphans:
        print("nothing to clean up")
        return EXIT_OK
    for orphan in orphans:
        print(f"{'would remove' if args.dry_run else 'removing'} {orphan}")
    if args.dry_run:
        return EXIT_OK
    failures = remove_orphans(orphans, batch, blobs, config.retry)
    for orphan, error in failures:
        print(f"could not remove {orphan}: {error}")
    print(f"removed {len(orphans) - len(failures)} of {len(orphans)} resource(s)")
    return EXIT_FAILED_FILES if failures else EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    """Print ``export`` lines for the offline Azure, serve until Ctrl-C or SIGTERM."""
    from batch_transcode.testing import OfflineAzure

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with OfflineAzure(tls=args.tls) as oa:
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    handler = {
        "convert": _cmd_convert,
        "demo": _cmd_demo,
        "cleanup": _cmd_cleanup,
        "emulator": _cmd_emulator,
    }[args.command]
    try:
        return handler(args)
    except (ConfigError, InputError) as exc:
        print(f"batch-transcode: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TranscodeError as exc:
        print(f"batch-transcode: error: {exc}", file=sys.stderr)
        return EXIT_FAILED_FILES
    except KeyboardInterrupt:
        print("batch-transcode: interrupted; everything the session created was removed", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
