"""Convert a folder of videos to MP3 on this machine.

python examples/quickstart.py [FOLDER]     # default: generated sample videos
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from batch_transcode import LocalConfig, TranscodeSession, find_media
from batch_transcode.samples import make_sample_media


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            videos = find_media([sys.argv[1]])
        else:
            videos = make_sample_media(Path(tmp) / "videos", count=4)
        with TranscodeSession(LocalConfig()) as session:
            report = session.convert(videos, output_dir="quickstart-out", preset="mp3", show_progress=True)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
