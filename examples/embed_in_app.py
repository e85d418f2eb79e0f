"""batch_transcode inside another program.

The application owns logging (the library only emits records under the
``batch_transcode`` logger), reports progress its own way, and handles the
library's errors by type.

    python examples/embed_in_app.py INBOX_DIR OUTBOX_DIR
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from batch_transcode import (
    ConfigError,
    InputError,
    LocalConfig,
    ProgressEvent,
    TranscodeError,
    TranscodeSession,
    find_media,
)

log = logging.getLogger("inbox-app")


def on_progress(event: ProgressEvent) -> None:
    if event.kind == "finished" and event.result is not None:
        status = "ok" if event.result.ok else "FAILED"
        log.info("[%d/%d] %s %s", event.done, event.total, status, event.source.name)


def process_inbox(inbox: Path, outbox: Path) -> int:
    files = find_media([inbox])
    if not files:
        log.info("inbox is empty")
        return 0
    try:
        with TranscodeSession(LocalConfig()) as session:
            report = session.convert(files, output_dir=outbox, preset="mp3", progress=on_progress)
    except (ConfigError, InputError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    except TranscodeError as exc:
        log.error("transcoding stopped: %s", exc)
        return 1
    for failed in report.failed:
        # The first line says why; the rest is the tail of ffmpeg's stderr.
        log.warning("could not convert %s: %s", failed.source, (failed.error or "").splitlines()[0])
    log.info("%s", report.summary().splitlines()[0])
    return 0 if report.ok else 1


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("batch_transcode").setLevel(logging.WARNING)  # the app decides how chatty
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    return process_inbox(Path(sys.argv[1]), Path(sys.argv[2]))


if __name__ == "__main__":
    raise SystemExit(main())
