"""The report page in a real browser: headless Chromium renders what ``Report.save_html`` and
``batch-transcode convert --html`` write.

Chromium is Debian's ``chromium`` package (``scripts/test`` installs it where it can). Without
it these tests skip, except under ``CI=true``, where they fail: there the page must be seen.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from batch_transcode import FileResult, LocalConfig, NodeSpan, PieceKind, Report, TranscodeSession, Usage
from batch_transcode._cli import main
from batch_transcode._usage import lanes
from split_media import H264, make_split_clips

#: A window narrower than the page's natural width would be: what must not scroll sideways.
WINDOW = (1024, 800)
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report.schema.json").read_text())


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed; scripts/test installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs these tests")


def _browser(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)


def rendered_dom(chromium: str, page: Path) -> str:
    """The DOM after layout, with the page's scroll and client widths written into it by a
    script this test adds to a copy (the page itself has none)."""
    probe = page.with_name(page.stem + ".probe.html")
    measure = (
        "<script>const d=document.documentElement;const m=document.createElement('div');"
        "m.id='measure';m.dataset.scroll=d.scrollWidth;m.dataset.client=d.clientWidth;"
        "document.body.appendChild(m);</script>"
    )
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", measure + "</body>"), encoding="utf-8")
    return _browser(chromium, page.parent, "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()).stdout


def screenshot_pixels(chromium: str, page: Path, ffmpeg: str) -> bytes:
    """The page's screenshot as 8-bit grey pixels (ffmpeg decodes the PNG)."""
    png = page.with_suffix(".png")
    _browser(chromium, page.parent, f"--screenshot={png}", page.as_uri())
    assert png.stat().st_size > 0
    return subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(png), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    ).stdout


class Elements(HTMLParser):
    """Counts of the page's file rows and timeline bars; the widths the probe measured."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.bars: list[dict[str, str | None]] = []
        self.widths: tuple[int, int] | None = None
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "tr" and "file" in classes:
            self.rows.append(classes[-1])
        elif tag == "rect" and "bar" in classes:
            self.bars.append(a)
        elif tag == "div" and a.get("id") == "measure":
            self.widths = (int(a["data-scroll"] or 0), int(a["data-client"] or 0))
        elif tag == "script":
            self.scripts += 1


def parse(dom: str) -> Elements:
    elements = Elements()
    elements.feed(dom)
    return elements


def test_convert_html_page_renders_one_row_per_file_and_one_bar_per_task(
    tmp_path: Path, make_media: Callable[..., Path], chromium: str, ffmpeg_exe: str
) -> None:
    for n in range(4):
        make_media(tmp_path / "in" / f"clip <{n}> & co.mp4")
    (tmp_path / "in" / "broken.mp4").write_bytes(b"not media at all " * 40)
    page = tmp_path / "report.html"
    code = main(
        ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "2", "--no-progress",
         "--ffmpeg", ffmpeg_exe, "--html", str(page)]
    )  # fmt: skip
    assert code == 1  # the broken file failed; the page is written all the same
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text  # self-contained: nothing fetched
    assert "clip &lt;0&gt; &amp; co.mp4" in text  # names escaped

    elements = parse(rendered_dom(chromium, page))
    assert sorted(elements.rows) == ["converted"] * 4 + ["failed"]
    assert elements.rows[0] == "failed"  # failures first
    assert len(elements.bars) == 5  # every file ran as one task (the broken one too)
    assert sorted(b["class"] or "" for b in elements.bars) == ["bar converted"] * 4 + ["bar failed"]
    assert elements.widths is not None and elements.widths[0] <= elements.widths[1]

    pixels = screenshot_pixels(chromium, page, ffmpeg_exe)
    assert len(pixels) == WINDOW[0] * WINDOW[1]
    inked = sum(1 for p in pixels[:: 7] if p < 200)  # text, bars, table rules
    assert inked > 500, "the screenshot is (nearly) blank"
    assert len(set(pixels)) > 20  # anti-aliased text and coloured bars, not a flat fill


def _failed_with(error: str, when: dt.datetime, source: Path) -> FileResult:
    return FileResult.failure(
        source, error, seconds=2.0, started=when, ended=when + dt.timedelta(seconds=2), node="tvmps_0001"
    )


def test_a_500_character_error_wraps_instead_of_widening_the_page(tmp_path: Path, chromium: str) -> None:
    when = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    unbroken = "x" * 500  # no space to break at: the worst case
    spaced = " ".join(["Invalid data found when processing input"] * 13)[:500]
    report = Report(
        [
            _failed_with(unbroken, when, tmp_path / "long one.mp4"),
            _failed_with(spaced, when + dt.timedelta(seconds=1), tmp_path / ("n" * 300 + ".mp4")),
            FileResult.converted(
                tmp_path / "fine.mp4",
                tmp_path / "fine.mp3",
                seconds=1.0,
                started=when,
                ended=when + dt.timedelta(seconds=1),
                node="tvmps_0002",
                retries=1,
                requeues=1,
            ),
        ],
        seconds=5.0,
        usage=Usage(
            backend="azure",
            slots_per_node=2,
            nodes=(
                NodeSpan(node_id="tvmps_0001", allocated=when - dt.timedelta(seconds=30)),
                NodeSpan(node_id="tvmps_0002", allocated=when - dt.timedelta(seconds=20)),
            ),
            ended=when + dt.timedelta(seconds=10),
            busy_slot_seconds=5.0,
            tasks=3,
        ),
    )
    page = report.save_html(tmp_path / "long.html")
    elements = parse(rendered_dom(chromium, page))
    assert elements.rows == ["failed", "failed", "converted"]
    assert len(elements.bars) == 3
    (retried,) = [b for b in elements.bars if b["data-retries"] != "0"]
    assert retried["data-requeues"] == "1" and retried["stroke-dasharray"]  # retries show
    assert elements.widths is not None
    scroll, client = elements.widths
    assert client > 0 and scroll <= client, f"the page scrolls sideways: {scroll} > {client}"
    assert re.search(r"x{500}", page.read_text()) is not None  # wrapped, not cut


def test_a_split_file_has_a_hatched_bar_per_segment_audio_and_stitch(
    tmp_path: Path, make_media: Callable[..., Path], chromium: str, ffmpeg_exe: str
) -> None:
    """Real ffmpeg, a 5 s clip in segments of 1 s beside a file encoded whole: each task
    that ran is a bar, the pieces marked, and their time is the usage's busy time."""
    whole = make_media(tmp_path / "in" / "short.mp4")  # 1 s: shorter than two segments
    clip = make_split_clips(ffmpeg_exe, tmp_path / "in", only=("cfr",))["cfr"]
    with TranscodeSession(LocalConfig(workers=2, ffmpeg=ffmpeg_exe)) as s:
        report = s.convert([clip, whole], output_dir=tmp_path / "out", preset=H264, segment_seconds=1)
    split, unsplit = report.raise_for_failures()
    assert not unsplit.pieces and unsplit.started is not None
    labels = sorted(p.label for p in split.pieces)
    assert labels == ["audio", *(f"seg {n}" for n in range(1, 6)), "stitch"]
    assert all(p.status == "converted" and p.node is None and p.started <= p.ended for p in split.pieces)
    (stitch,) = [p for p in split.pieces if p.kind is PieceKind.STITCH]
    assert stitch.ended == split.ended == max(p.ended for p in split.pieces)
    assert split.started == min(p.started for p in split.pieces)
    assert all(p.ended <= stitch.started for p in split.pieces if p is not stitch)  # it waits for them
    # never more pieces at once than workers: the slots they took are the workers'
    assert max(slot for _, slot in lanes([("", p.started, p.ended) for p in split.pieces])) < 2

    usage = report.usage
    assert usage is not None and usage.tasks == 8
    busy = sum(p.seconds for p in split.pieces) + (unsplit.ended - unsplit.started).total_seconds()  # type: ignore[operator]
    assert usage.busy_slot_seconds == pytest.approx(busy) and 0 < usage.utilisation <= 1
    data = json.loads(json.dumps(report.to_dict()))
    jsonschema.validate(data, SCHEMA)
    assert [p["kind"] for p in data["files"][0]["pieces"]].count("segment") == 5
    assert data["files"][1]["pieces"] == [] and data["usage"]["tasks"] == 8

    elements = parse(rendered_dom(chromium, report.save_html(tmp_path / "split.html")))
    assert len(elements.bars) == 8  # one per task: 5 segments, the audio, the stitch, the whole file
    pieces = [b for b in elements.bars if "piece" in (b["class"] or "").split()]
    assert sorted(b["data-piece"] or "" for b in pieces) == labels
    assert [b["class"] for b in elements.bars if b not in pieces] == ["bar converted"]
