"""The report page: one self-contained HTML fragment (inline CSS and SVG, no script, nothing
fetched), from plain values the report hands over.

:func:`fragment` is what a notebook shows (its CSS scoped to ``.transcode-report``);
:func:`document` wraps it in a page of its own. The timeline is an SVG with one lane
per node slot (or local worker) and one ``rect.bar`` per task, coloured by outcome,
drawn over each node's allocated span, so idle slots show; the tasks of a file encoded
in segments (``rect.bar.piece``, ``data-piece`` ``seg 3``, ``audio`` or ``stitch``) are
hatched and labelled where the label fits.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import attrs

__all__ = ["Bar", "Lane", "Row", "document", "fragment"]

#: Outcome colours (bars and status marks), readable for the common colour-vision deficiencies
#: (Okabe and Ito's palette).
COLOURS = {"converted": "#009e73", "skipped": "#999999", "failed": "#d55e00", "cancelled": "#e69f00"}
MARKS = {"converted": "&#10003;", "skipped": "&#10003;", "failed": "&#10007;", "cancelled": "&#8856;"}

CSS = """
.transcode-report{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;
  max-width:100%;overflow-wrap:anywhere}
.transcode-report h1{font-size:20px;margin:0 0 6px}
.transcode-report h2{font-size:16px;margin:18px 0 6px}
.transcode-report table{border-collapse:collapse;width:100%;table-layout:fixed;margin:4px 0}
.transcode-report th,.transcode-report td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;
  vertical-align:top;overflow-wrap:anywhere}
.transcode-report thead th{background:#f3f3f3;font-weight:600;white-space:nowrap;overflow:hidden}
.transcode-report .num{text-align:right;white-space:nowrap}
.transcode-report pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px}
.transcode-report .mark{font-weight:700;text-align:center}
.transcode-report .converted .mark,.transcode-report .skipped .mark{color:#009e73}
.transcode-report .failed .mark{color:#d55e00}.transcode-report .cancelled .mark{color:#b27300}
.transcode-report table.usage{width:auto;min-width:50%}
.transcode-report svg{width:100%;height:auto;display:block}
.transcode-report .legend span{display:inline-block;margin-right:14px}
.transcode-report .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.transcode-report small{color:#555}
"""


@attrs.define(frozen=True, kw_only=True)
class Row:
    """One file of the table: the status, relative names with full paths, figures, texts."""

    status: str
    source: tuple[str, str]
    #: Each output: (relative name, full path, size).
    outputs: tuple[tuple[str, str, str], ...]
    seconds: str
    quality: tuple[str, ...]
    quality_detail: str
    error: str


@attrs.define(frozen=True, kw_only=True)
class Bar:
    """One task on the timeline: seconds from the timeline's start, its lane's index."""

    lane: int
    start: float
    end: float
    status: str
    label: str
    retries: int = 0
    requeues: int = 0
    #: A piece of a file encoded in segments: ``seg 3``, ``audio`` or ``stitch`` (empty: a
    #: file's own task). Drawn hatched, with this label where it fits.
    piece: str = ""


@attrs.define(frozen=True, kw_only=True)
class Lane:
    """One node slot (or local worker); ``allocated``: its node's allocated spans (seconds)."""

    label: str
    allocated: tuple[tuple[float, float], ...] = ()


def _table(headers: Sequence[str], body: str, classes: str = "", widths: Sequence[str] = ()) -> str:
    cols = "".join(f"<col style='width:{w}'>" for w in widths)
    heads = "".join(f"<th scope='col'>{html.escape(h)}</th>" for h in headers)
    cls = f" class='{classes}'" if classes else ""
    return (
        f"<table{cls}><colgroup>{cols}</colgroup><thead><tr>{heads}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _files_table(rows: Sequence[Row]) -> str:
    def cells(row: Row) -> str:
        esc = html.escape
        outputs = "<br>".join(esc(rel) for rel, _, _ in row.outputs)
        full_paths = esc("\n".join(full for _, full, _ in row.outputs), quote=True)
        quality = "<br>".join(esc(q) for q in row.quality)
        sizes = "<br>".join(esc(size) for _, _, size in row.outputs)
        return (
            f"<tr class='file {row.status}'><td class='mark' title='{row.status}'>{MARKS[row.status]}</td>"
            f"<td title='{esc(row.source[1], quote=True)}'>{esc(row.source[0])}</td>"
            f"<td title='{full_paths}'>{outputs}</td>"
            f"<td class='num'>{sizes}</td><td class='num'>{esc(row.seconds)}</td>"
            f"<td title='{esc(row.quality_detail, quote=True)}'>{quality}</td>"
            f"<td><pre>{esc(row.error)}</pre></td></tr>"
        )

    headers = ("status", "source", "output", "size", "seconds", "quality", "error / notes")
    widths = ("4.5em", "18%", "18%", "6.5em", "5.5em", "17%", "auto")
    return _table(headers, "".join(cells(r) for r in rows), "files", widths)


def _usage_table(rows: Sequence[tuple[str, str, str]]) -> str:
    """Figures of the run, and of the plan when one is given (its column is left out otherwise)."""
    planned = any(p for _, _, p in rows)
    body = "".join(
        f"<tr><th scope='row'>{html.escape(k)}</th><td class='num'>{html.escape(a)}</td>"
        + (f"<td class='num'>{html.escape(p)}</td>" if planned else "")
        + "</tr>"
        for k, a, p in rows
    )
    return _table(("figure", "this run", "plan") if planned else ("figure", "this run"), body, "usage")


#: Timeline geometry (SVG user units; the SVG scales to the page's width).
WIDTH, LABEL, LANE, TOP = 1000.0, 190.0, 18.0, 22.0


def _ticks(span: float, x: float, scale: float, height: float) -> str:
    steps = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
    step = next((s for s in steps if span / s <= 10), 7200)
    out = []
    t = 0.0
    while t <= span + 1e-9:
        px = x + t * scale
        out.append(
            f"<line x1='{px:.1f}' y1='{TOP - 4}' x2='{px:.1f}' y2='{height}' stroke='#e4e4e4'/>"
            f"<text x='{px:.1f}' y='{TOP - 8}' font-size='10' text-anchor='middle' "
            f"fill='#555'>{t:.3g}s</text>"
        )
        t += step
    return "".join(out)


#: The hatching over the bars of a split file's pieces (one pattern; the SVG defines it).
HATCH = "bt-piece-hatch"
#: Roughly how wide (user units) a character of a piece's label is, at its font size.
LABEL_CHAR = 5.2


def _piece_marks(bar: Bar, left: float, y: float, width: float) -> tuple[str, str]:
    """A piece's extra attributes, and its hatching and label (where the label fits)."""
    if not bar.piece:
        return "", ""
    height = LANE - 6
    marks = (
        f"<rect class='hatch' x='{left:.1f}' y='{y:.1f}' width='{width:.1f}' height='{height}' "
        f"fill='url(#{HATCH})' pointer-events='none'/>"
    )
    if width >= len(bar.piece) * LABEL_CHAR + 4:
        marks += (
            f"<text class='piece-label' x='{left + 2:.1f}' y='{y + 9:.1f}' font-size='9' fill='#000' "
            "stroke='#fff' stroke-width='2.5' paint-order='stroke' pointer-events='none'>"
            f"{html.escape(bar.piece)}</text>"
        )
    return f" data-piece='{html.escape(bar.piece, quote=True)}'", marks


def _bar(bar: Bar, x: float, scale: float) -> str:
    y = TOP + bar.lane * LANE + 3
    left = x + bar.start * scale
    width = max(1.5, (bar.end - bar.start) * scale - 1)  # a gap between bars back to back
    again = bar.retries + bar.requeues
    dash = " stroke='#000' stroke-width='1.2' stroke-dasharray='3 2'" if again else ""
    why = "".join(
        f", {n} {what}" for n, what in ((bar.retries, "retries"), (bar.requeues, "requeues")) if n
    )
    title = f"{bar.label}: {bar.status}, {bar.end - bar.start:.1f} s{why}"
    mark = (
        f"<text x='{left + width + 2:.1f}' y='{y + 10}' font-size='10'>&#8635;{again}</text>"
        if again
        else ""
    )
    classes = f"bar {bar.status}" + (" piece" if bar.piece else "")
    data, marks = _piece_marks(bar, left, y, width)
    return (
        f"<rect class='{classes}' data-retries='{bar.retries}' data-requeues='{bar.requeues}'{data} "
        f"x='{left:.1f}' y='{y:.1f}' width='{width:.1f}' height='{LANE - 6}' "
        f"fill='{COLOURS[bar.status]}'{dash}><title>{html.escape(title)}</title></rect>{marks}{mark}"
    )


def _hatch() -> str:
    """The pattern the pieces' bars are hatched with."""
    return (
        f"<defs><pattern id='{HATCH}' width='5' height='5' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><rect width='1.5' height='5' fill='#fff' fill-opacity='0.4'/>"
        "</pattern></defs>"
    )


def _short(label: str, keep: int = 28) -> str:
    """A lane label that fits its margin: Azure node ids are long, their ends tell them apart."""
    return label if len(label) <= keep else "\u2026" + label[-(keep - 1) :]


def timeline(lanes: Sequence[Lane], bars: Sequence[Bar], span: float) -> str:
    """The SVG: lanes with their node's allocated span behind, then the bars."""
    span = max(span, 1e-3)
    height = TOP + LANE * len(lanes) + 4
    scale = (WIDTH - LABEL - 30) / span
    parts = [_hatch() if any(bar.piece for bar in bars) else "", _ticks(span, LABEL, scale, height)]
    for n, lane in enumerate(lanes):
        y = TOP + n * LANE
        parts.append(
            f"<text x='{LABEL - 6}' y='{y + 13}' font-size='11' text-anchor='end'>"
            f"<title>{html.escape(lane.label)}</title>{html.escape(_short(lane.label))}</text>"
        )
        for start, end in lane.allocated:
            parts.append(
                f"<rect class='allocated' x='{LABEL + start * scale:.1f}' y='{y + 1:.1f}' "
                f"width='{max(0.0, end - start) * scale:.1f}' height='{LANE - 2}' fill='#eef2f7'/>"
            )
    parts.extend(_bar(bar, LABEL, scale) for bar in bars)
    return (
        f"<svg class='timeline' viewBox='0 0 {WIDTH:.0f} {height:.0f}' xmlns='http://www.w3.org/2000/svg' "
        f"role='img' aria-label='task timeline'>{''.join(parts)}</svg>"
    )


def _legend(pieces: bool) -> str:
    items = "".join(
        f"<span><i style='background:{colour}'></i>{status}</span>"
        for status, colour in COLOURS.items()
        if status != "skipped"
    )
    hatched = (
        "<span><i style='background:repeating-linear-gradient(45deg,#009e73 0 3px,#80cfb9 3px 5px)'>"
        "</i>hatched: a piece of a file encoded in segments (seg n, audio, stitch)</span>"
        if pieces
        else ""
    )
    return (
        f"<p class='legend'><small>{items}<span><i style='background:#eef2f7'></i>node allocated</span>"
        f"{hatched}<span>&#8635;n: retried or requeued n times (dashed outline)</span></small></p>"
    )


def fragment(
    *,
    headline: str,
    folders: Sequence[tuple[str, str]],
    rows: Sequence[Row],
    usage: Sequence[tuple[str, str, str]] = (),
    lanes: Sequence[Lane] = (),
    bars: Sequence[Bar] = (),
    span: float = 0.0,
) -> str:
    """The report as a ``div.transcode-report`` with its own (scoped) style."""
    where = "".join(
        f"<br><small>{what} in <code>{html.escape(path)}</code></small>" for what, path in folders
    )
    parts = [
        f"<div class='transcode-report'><style>{CSS}</style>"
        f"<p class='headline'>{html.escape(headline)}{where}</p>"
    ]
    if usage:
        parts.append("<h2>Node use</h2>" + _usage_table(usage))
    if bars:
        parts.append("<h2>Timeline</h2>" + timeline(lanes, bars, span) + _legend(any(b.piece for b in bars)))
    parts.append("<h2>Files</h2>" + _files_table(rows) + "</div>")
    return "".join(parts)


def document(title: str, body: str) -> str:
    """A page of its own around :func:`fragment`'s output."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>body{{margin:16px 20px}}</style></head>"
        f"<body><h1 style='font:600 20px system-ui,sans-serif'>{html.escape(title)}</h1>"
        f"{body}</body></html>\n"
    )
