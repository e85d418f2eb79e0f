"""How a Report reads: the text summary, the HTML table (notebooks), the JSON data."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import attrs
import jsonschema
import pytest

from batch_transcode import FileResult, Report, TranscodeFailedError
from batch_transcode._quality import Metric, Score
from batch_transcode._report import STATUSES, Status  # Status is not exported (yet)

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report.schema.json").read_text())


class Table(HTMLParser):
    """The cells (text and title attribute) of each body row of a rendered table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str | None]]] = []
        self.headers: list[str] = []
        self._cell: list[str] | None = None
        self._title: str | None = None
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell, self._title = [], dict(attrs).get("title")
        elif tag == "th":
            self._in_th = True
            self.headers.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(("".join(self._cell), self._title))
            self._cell = None
        elif tag == "th":
            self._in_th = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._in_th:
            self.headers[-1] += data


@pytest.fixture
def report(tmp_path: Path) -> Report:
    src, out = tmp_path / "talks", tmp_path / "mp3s"
    (out / "day 2").mkdir(parents=True)
    (out / "keynote.mp3").write_bytes(b"x" * 3000)
    (out / "day 2" / "panel.mp3").write_bytes(b"x" * 10)
    return Report(
        [
            FileResult.converted(src / "keynote.mp4", out / "keynote.mp3", seconds=2.5, task_id="t000000"),
            FileResult.already_done(src / "day 2" / "panel.mov", out / "day 2" / "panel.mp3"),
            FileResult.cancellation(src / "day 2" / "q&a.mp4", "cancelled before it ran"),
            FileResult.failure(
                src / "broken <1>.mp4",
                "ffmpeg cannot read this file as media\n"
                f"Error opening output file {out}/.bt-0123456789ab.part.mp3.",
                seconds=0.4,
            ),
        ],
        seconds=12.34,
    )


def test_errors_never_show_temporary_output_names(tmp_path: Path) -> None:
    for text in (
        f"Error opening output file {tmp_path}/out/.bt-0123456789ab.part.mp3.",
        f"[out#0/mp3 @ 0x1] Error opening '{tmp_path}/out/.bt-abcdefabcdef.part.mp3': Permission denied",
        'Output #0, flac, to ".bt-0123456789ab.part.flac":',
    ):
        error = FileResult.failure(tmp_path / "a.mp4", text).error
        assert error is not None and ".bt-" not in error and "the output" in error, error
    kept = FileResult.failure(tmp_path / "a.mp4", "could not read .bt-notours.mp3").error
    assert kept == "could not read .bt-notours.mp3"  # only our own names are replaced


def test_summary_counts_each_status_and_lists_failures_first_relative(report: Report) -> None:
    lines = report.summary().splitlines()
    assert lines[0] == "2/4 converted in 12.3s (1 already done, skipped), 1 failed, 1 cancelled:"
    assert lines[1] == "  broken <1>.mp4: ffmpeg cannot read this file as media"
    assert lines[2] == "  day 2/q&a.mp4: cancelled before it ran"
    assert len(lines) == 3


def test_html_table_relative_paths_full_on_hover_seconds_sizes(report: Report, tmp_path: Path) -> None:
    html = report._repr_html_()
    table = Table()
    table.feed(html)
    assert table.headers[-7:] == ["status", "source", "output", "size", "seconds", "quality", "error / notes"]
    rows = [r for r in table.rows if r]
    assert [row[0][1] for row in rows] == ["failed", "cancelled", "converted", "skipped"]  # failures first
    failed, cancelled, converted, skipped = rows
    assert failed[1] == ("broken <1>.mp4", str(tmp_path / "talks" / "broken <1>.mp4"))
    assert "the output" in failed[6][0] and ".bt-" not in html
    assert [row[5] for row in rows] == [("", ""), ("", ""), ("", ""), ("", "")]  # not measured
    assert cancelled[1][0] == "day 2/q&a.mp4"
    assert converted[2] == ("keynote.mp3", str(tmp_path / "mp3s" / "keynote.mp3"))
    assert converted[4][0] == "2.50" and converted[3][0] == "2.9 KiB"
    assert skipped[2][0] == "day 2/panel.mp3" and skipped[3][0] == "10 B" and skipped[4][0] == ""
    assert "&lt;1&gt;" in html and "q&amp;a" in html  # escaped
    assert f"<code>{tmp_path / 'talks'}</code>" in html and f"<code>{tmp_path / 'mp3s'}</code>" in html
    assert "2/4 converted" in html


def test_to_dict_is_json_that_follows_the_schema(report: Report, tmp_path: Path) -> None:
    data = json.loads(json.dumps(report.to_dict()))
    jsonschema.validate(data, SCHEMA)
    assert data["summary"] == {
        "total": 4, "converted": 1, "skipped": 1, "failed": 1, "cancelled": 1, "seconds": 12.34,
    }  # fmt: skip
    assert data["files"][0] == {
        "source": str(tmp_path / "talks" / "keynote.mp4"),
        "output": str(tmp_path / "mp3s" / "keynote.mp3"),
        "outputs": [str(tmp_path / "mp3s" / "keynote.mp3")],
        "status": "converted",
        "error": None,
        "seconds": 2.5,
        "task_id": "t000000",
        "quality": [],
        "notes": [],
        "started": None,
        "ended": None,
        "node": None,
        "retries": 0,
        "requeues": 0,
        "pieces": [],
    }
    assert data["usage"] is None  # a report made by hand knows nothing of nodes
    assert [f["outputs"] for f in data["files"][2:]] == [[], []]  # failed, cancelled: none
    assert [f["status"] for f in data["files"]] == ["converted", "skipped", "cancelled", "failed"]


def test_the_schema_refuses_what_the_docs_rule_out(report: Report) -> None:
    data = report.to_dict()
    data["files"][0]["status"] = "done"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)
    data = report.to_dict()
    data["files"][3]["output"] = "/somewhere.mp3"  # a failed file has no output
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)
    data = report.to_dict()
    del data["summary"]["cancelled"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_failed_and_cancelled_are_separate_and_agree_with_the_counts(report: Report) -> None:
    counts = report.counts()
    assert [r.status for r in report.failed] == ["failed"] == ["failed"] * counts["failed"]
    assert [r.status for r in report.cancelled] == ["cancelled"] * counts["cancelled"]
    assert len(report.succeeded) == counts["converted"] + counts["skipped"]
    assert not report.ok  # a cancelled file is not done either
    with pytest.raises(TranscodeFailedError) as raised:
        report.raise_for_failures()
    assert [r.status for r in raised.value.failed] == ["failed", "cancelled"]  # failures first


def test_status_is_a_string_enum(tmp_path: Path) -> None:
    result = FileResult(source=tmp_path / "a.mp4", output=None, status="cancelled", error="stopped")
    assert result.status is Status.CANCELLED and result.status == "cancelled"
    assert result.cancelled and not result.ok and not result.skipped
    assert f"{result.status}" == "cancelled" and json.dumps(result.status) == '"cancelled"'
    assert [str(s) for s in STATUSES] == ["converted", "skipped", "failed", "cancelled"]
    assert tuple(Status) == STATUSES
    with pytest.raises(ValueError, match="status must be one of converted, skipped, failed, cancelled"):
        FileResult(source=tmp_path / "a.mp4", output=None, status="done")


def test_a_result_needs_its_status(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        FileResult(source=tmp_path / "a.mp4", output=None, ok=True)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="first of outputs"):
        FileResult(
            source=tmp_path / "a.mp4",
            output=tmp_path / "a.opus",
            status=Status.CONVERTED,
            outputs=[tmp_path / "a.mp3", tmp_path / "a.opus"],
        )
    mp3 = tmp_path / "a.mp3"
    both = FileResult(source=tmp_path / "a.mp4", output=None, status="converted", outputs=[mp3])
    assert both.output == tmp_path / "a.mp3" and both.outputs == (tmp_path / "a.mp3",)


# -- quality ---------------------------------------------------------------------------


def score(mean: float, low: float | None = None, frames: int = 50) -> Score:
    low = mean - 5 if low is None else low
    return Score(mean=mean, min=low, p5=(mean + low) / 2, frames=frames)


@pytest.fixture
def measured(tmp_path: Path) -> Report:
    """Three files: one with two video outputs and an audio one, one whose measurement
    failed, one failed conversion."""
    src, out = tmp_path / "talks", tmp_path / "out"
    outputs = [out / "keynote-720p.mp4", out / "keynote-480p.mp4", out / "keynote.mp3"]
    return Report(
        [
            FileResult.converted(
                src / "keynote.mp4",
                outputs[0],
                outputs=outputs,
                quality=[
                    {
                        Metric.VMAF: score(95.123456),
                        Metric.PSNR: score(42.5),
                        Metric.SSIM: score(0.9912345, 0.98),
                    },
                    {"vmaf": score(88.0), "psnr": score(38.25), "ssim": score(0.97, 0.95)},
                    None,  # audio: not measured
                ],
            ),
            FileResult.converted(
                src / "panel.mp4",
                out / "panel.mp4",
                quality=[None],
                notes=["quality not measured: ffmpeg could not measure quality (exit code 1)"],
            ),
            FileResult.failure(src / "broken.mp4", "ffmpeg cannot read this file as media"),
        ],
        seconds=3.0,
    )


def test_quality_is_in_the_json_under_the_metric_names_and_follows_the_schema(
    measured: Report, tmp_path: Path
) -> None:
    data = json.loads(json.dumps(measured.to_dict()))
    jsonschema.validate(data, SCHEMA)
    keynote, panel, broken = data["files"]
    assert keynote["quality"][0] == {
        "vmaf": {"mean": 95.123, "min": 90.123, "p5": 92.623, "frames": 50},
        "psnr": {"mean": 42.5, "min": 37.5, "p5": 40.0, "frames": 50},
        "ssim": {"mean": 0.991235, "min": 0.98, "p5": 0.985617, "frames": 50},
    }
    assert list(keynote["quality"][0]) == ["vmaf", "psnr", "ssim"]  # a fixed order
    assert keynote["quality"][1]["vmaf"]["mean"] == 88.0 and keynote["quality"][2] is None
    assert len(keynote["quality"]) == len(keynote["outputs"])
    assert panel["quality"] == [None] and panel["notes"] == [
        "quality not measured: ffmpeg could not measure quality (exit code 1)"
    ]
    assert broken["quality"] == [] and broken["notes"] == []
    assert data["summary"] == {**data["summary"], "converted": 2, "failed": 1}  # counts only


def test_the_schema_refuses_malformed_quality(measured: Report) -> None:
    for change in (
        lambda d: d["files"][0]["quality"][0]["vmaf"].pop("p5"),
        lambda d: d["files"][0]["quality"][0].update(vmaf=95.0),  # a score is an object
        lambda d: d["files"][0]["quality"].__setitem__(0, {}),  # measured means some metric
        lambda d: d["files"][2].update(quality=[None]),  # a failed file has no output to measure
    ):
        data = measured.to_dict()
        change(data)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, SCHEMA)


def test_summary_adds_a_quality_line_with_means_and_the_lowest_output(measured: Report) -> None:
    lines = measured.summary().splitlines()
    assert lines[0] == "2/3 converted in 3.00s, 1 failed:"
    assert lines[1] == "  broken.mp4: ffmpeg cannot read this file as media"
    assert lines[2] == (
        "quality of 2 outputs: VMAF 91.56 (lowest 88.00: keynote-480p.mp4), "
        "PSNR 40.38 dB (lowest 38.25 dB: keynote-480p.mp4), SSIM 0.9806 (lowest 0.9700: keynote-480p.mp4); "
        "1 output not measured"  # panel's failed measurement; an audio output is not a failure
    )
    assert len(lines) == 3
    assert "quality" not in Report(list(measured)[2:]).summary()  # nothing measured: no line


def test_html_shows_quality_per_output_with_details_on_hover(measured: Report) -> None:
    table = Table()
    table.feed(measured._repr_html_())
    assert table.headers[5] == "quality"
    broken, keynote, panel = (r for r in table.rows if r)
    text, title = keynote[5]
    assert (
        text == "VMAF 95.12 · PSNR 42.50 dB · SSIM 0.9912VMAF 88.00 · PSNR 38.25 dB · SSIM 0.9700not measured"
    )
    assert title is not None and title.splitlines()[0] == (
        "keynote-720p.mp4: VMAF mean 95.12, min 90.12, 5th percentile 92.62 over 50 frames; "
        "PSNR mean 42.50 dB, min 37.50 dB, 5th percentile 40.00 dB over 50 frames; "
        "SSIM mean 0.9912, min 0.9800, 5th percentile 0.9856 over 50 frames"
    )
    assert len(title.splitlines()) == 2  # the audio output has no line
    assert panel[5][0] == "not measured" and "could not measure quality" in panel[6][0]  # the note
    assert broken[5] == ("", "")


def test_quality_has_one_entry_per_output_and_is_read_only(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    with pytest.raises(ValueError, match=r"one entry per output \(2\), got 1"):
        FileResult.converted(tmp_path / "s.mp4", a, outputs=[a, b], quality=[None])
    with pytest.raises(ValueError, match=r"one entry per output \(0\), got 1"):
        FileResult.failure(tmp_path / "s.mp4", "broken", quality=[None])
    scores = {Metric.VMAF: score(90.0)}
    result = FileResult.converted(tmp_path / "s.mp4", a, quality=[scores])
    scores[Metric.PSNR] = score(40.0)  # the result kept its own copy
    assert list(result.quality[0] or {}) == ["vmaf"] and result.quality[0] == {"vmaf": score(90.0)}
    with pytest.raises(TypeError):
        result.quality[0]["psnr"] = score(40.0)  # type: ignore[index]
    assert hash(result) == hash(FileResult.converted(tmp_path / "s.mp4", a))  # still hashable
    later = attrs.evolve(FileResult.converted(tmp_path / "s.mp4", a), quality=[scores], notes=["n"])
    assert later.quality[0] == {"vmaf": score(90.0), "psnr": score(40.0)} and later.notes == ("n",)
    assert FileResult.converted(tmp_path / "s.mp4", a).quality == ()  # not measured
