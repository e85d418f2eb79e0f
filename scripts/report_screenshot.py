"""Make docs/report-page.png: the report page of a real run on OfflineAzure, seen by
headless Chromium.

    .venv/bin/python scripts/report_screenshot.py [--keep DIR]

Converts twelve short sample videos (and one file that is not media) to MP3 and Opus on
two emulated nodes of three slots, with the run planned first so the page shows the plan
beside the actual use; then screenshots the page at 1280 x 900. Needs Debian's
``chromium`` (``apt-get install chromium``) and Azurite (``npm ci``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from batch_transcode import TranscodeSession
from batch_transcode.samples import make_sample_media
from batch_transcode.testing import OfflineAzure

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "report-page.png"


def run(work: Path) -> Path:
    """Convert the samples on OfflineAzure; the page written."""
    inputs = make_sample_media(work / "talks", 12, seconds=3.0)
    broken = work / "talks" / "recording (truncated).mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2000)
    inputs.append(broken)
    with (
        OfflineAzure() as offline,
        TranscodeSession(offline.config(dedicated_nodes=2, task_slots_per_node=3)) as session,
    ):
        args = {"output_dir": work / "audio", "preset": ["mp3", "opus"]}
        session.plan(inputs, price_per_node_hour=0.096, **args)
        report = session.convert(inputs, **args)
    print(report.summary())
    return report.save_html(work / "report.html", title="Talks to MP3 and Opus on OfflineAzure")


def screenshot(page: Path, target: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed: apt-get install chromium")
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={page.parent / 'profile'}", "--window-size=1280,900",
         f"--screenshot={target}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    print(f"{target} ({target.stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it (the page too)")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        screenshot(run(args.keep), TARGET)
        return
    with tempfile.TemporaryDirectory() as work:
        screenshot(run(Path(work)), TARGET)


if __name__ == "__main__":
    main()
