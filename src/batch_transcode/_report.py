"""Results of a run: :class:`FileResult` per input and the :class:`Report` over them."""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import attrs

from batch_transcode._errors import TranscodeFailedError

__all__ = ["STATUSES", "FileResult", "ProgressEvent", "Report", "Status"]


#: What happened to one input file.
Status = Literal["converted", "skipped", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("converted", "skipped", "failed", "cancelled")


@attrs.define(frozen=True, kw_only=True, init=False)
class FileResult:
    """The outcome for one input file.

    ``status`` is ``"converted"``, ``"skipped"`` (the output was already there from an
    earlier run and was kept as it is), ``"failed"`` or ``"cancelled"`` (the run
    stopped before the file was done). ``ok`` follows from it (converted or
    skipped); ``error`` is ``None`` when ``ok``, else one line saying why, followed by
    the tail of ffmpeg's stderr where there is one.

    ``outputs`` holds every output path, in the presets' order, when a run writes
    several outputs per input (``preset=["mp3", "opus", "thumbnail"]``); ``output`` is
    the first. Both are empty/``None`` unless ``ok``.
    """

    source: Path
    output: Path | None
    status: Status
    error: str | None = None
    seconds: float | None = None
    task_id: str | None = None
    outputs: tuple[Path, ...] = ()

    def __init__(
        self,
        *,
        source: Path,
        output: Path | None,
        status: Status | None = None,
        ok: bool | None = None,
        error: str | None = None,
        seconds: float | None = None,
        task_id: str | None = None,
        skipped: bool = False,
        outputs: Sequence[Path] | None = None,
    ) -> None:
        # ``ok=`` / ``skipped=`` are the spelling of earlier releases: status follows from them.
        if status is None:
            converted = ok if ok is not None else error is None
            status = "skipped" if skipped else "converted" if converted else "failed"
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if outputs is None:
            all_outputs: tuple[Path, ...] = () if output is None else (output,)
        else:
            all_outputs = tuple(outputs)
            if output is None and all_outputs:
                output = all_outputs[0]
            elif all_outputs and output != all_outputs[0]:
                raise ValueError("output must be the first of outputs")
        self.__attrs_init__(
            source=source,
            output=output,
            status=status,
            error=error,
            seconds=seconds,
            task_id=task_id,
            outputs=all_outputs,
        )

    @property
    def ok(self) -> bool:
        """True when the output is there: converted now, or skipped as already done."""
        return self.status in ("converted", "skipped")

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @classmethod
    def converted(cls, source: Path, output: Path, **kw: Any) -> FileResult:
        return cls(source=source, output=output, status="converted", **kw)

    @classmethod
    def already_done(cls, source: Path, output: Path, **kw: Any) -> FileResult:
        return cls(source=source, output=output, status="skipped", **kw)

    @classmethod
    def failure(cls, source: Path, error: str, **kw: Any) -> FileResult:
        return cls(source=source, output=None, status="failed", error=error, **kw)

    @classmethod
    def cancellation(cls, source: Path, error: str = "cancelled", **kw: Any) -> FileResult:
        """The run stopped before this file was done; ``error`` says at which point."""
        return cls(source=source, output=None, status="cancelled", error=error, **kw)


@attrs.define(frozen=True, kw_only=True)
class ProgressEvent:
    """Sent to the progress callback: ``kind`` is ``"started"`` or ``"finished"``
    (``result`` set), ``done``/``total`` count finished files."""

    kind: Literal["started", "finished"]
    source: Path
    done: int
    total: int
    result: FileResult | None = None


@attrs.define(frozen=True)
class Report:
    """All results, in input order. Iterable, indexable, sized."""

    results: tuple[FileResult, ...] = attrs.field(converter=tuple[FileResult, ...])
    seconds: float = 0.0

    def __iter__(self) -> Iterator[FileResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @overload
    def __getitem__(self, index: int) -> FileResult: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[FileResult]: ...
    def __getitem__(self, index: int | slice) -> FileResult | Sequence[FileResult]:
        return self.results[index]

    @property
    def succeeded(self) -> list[FileResult]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]

    @property
    def cancelled(self) -> list[FileResult]:
        return [r for r in self.results if r.cancelled]

    def counts(self) -> dict[Status, int]:
        """How many files ended in each status (every status present, zeros included)."""
        counts: dict[Status, int] = dict.fromkeys(STATUSES, 0)
        for r in self.results:
            counts[r.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def raise_for_failures(self) -> Report:
        """Raise :class:`TranscodeFailedError` if any file failed; else return self."""
        failed = self.failed
        if failed:
            raise TranscodeFailedError(failed)
        return self

    def summary(self) -> str:
        skipped = sum(r.skipped for r in self.results)
        took = f"{self.seconds:.2f}s" if self.seconds < 10 else f"{self.seconds:.1f}s"
        line = f"{len(self.succeeded)}/{len(self)} converted in {took}"
        if skipped:
            line += f" ({skipped} already done, skipped)"
        if self.failed:
            line += f", {len(self.failed)} failed:"
            for r in self.failed:
                first = (r.error or "failed").splitlines()[0]
                line += f"\n  {r.source}: {first}"
        return line

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        rows = sorted(self.results, key=lambda r: r.ok)
        body = "".join(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>".format(
                "&#10003;" if r.ok else "&#10007;",
                html.escape(str(r.source)),
                html.escape(str(r.output or "")),
                html.escape(r.error or ""),
            )
            for r in rows
        )
        return (
            f"<p>{html.escape(self.summary().splitlines()[0])}</p>"
            "<table><thead><tr><th></th><th>source</th><th>output</th><th>error</th></tr>"
            f"</thead><tbody>{body}</tbody></table>"
        )
