"""TranscodeSession: the lifecycle around a backend."""

from __future__ import annotations

import asyncio
import atexit
import enum
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias, TypeVar

from batch_transcode import _telemetry as telemetry
from batch_transcode._aio import run_to_end
from batch_transcode._backend import AttachableBackend, Backend
from batch_transcode._config import AzureConfig, LocalConfig
from batch_transcode._destinations import check_output_folder, make_output_folder
from batch_transcode._errors import ConfigError, SessionStateError, TeardownError
from batch_transcode._job import BackendRun, TranscodeJob
from batch_transcode._naming import (
    WorkItem,
    output_suffixes,
    outputs_are_media,
    plan_work,
    validate_inputs,
)
from batch_transcode._plan import DEFAULT_MB_PER_SECOND, Plan, make_plan
from batch_transcode._presets import Preset, PresetSpec, resolve_presets
from batch_transcode._progress import ProgressCallback
from batch_transcode._quality import Metric, parse_metrics
from batch_transcode._report import FileResult, Report
from batch_transcode._split import split_refusal
from batch_transcode._teardown import Teardown

__all__ = ["TranscodeSession"]

T = TypeVar("T")

#: What ``quality=`` takes: ``"vmaf,psnr"``, a sequence of names or :class:`Metric`, or None.
QualitySpec: TypeAlias = "str | Iterable[str | Metric] | None"

log = logging.getLogger("batch_transcode")

#: How long the interpreter-exit safety net waits for a forgotten session's teardown.
ATEXIT_TEARDOWN_TIMEOUT = 300.0


#: Sessions opened and not yet closed (strong references: a forgotten session is still torn down).
_OPEN_SESSIONS: set[TranscodeSession] = set()


@atexit.register
def _close_open_sessions() -> None:
    """Safety net, not the mechanism: sessions still open when the interpreter exits
    (a notebook kernel shut down, a script that never left its ``with``) are closed,
    within a time limit."""
    for session in list(_OPEN_SESSIONS):
        log.warning("closing %r at interpreter exit; use sessions in a 'with' block", session)
        worker = threading.Thread(target=session._close_quietly, name="bt-atexit-teardown", daemon=True)
        worker.start()
        worker.join(ATEXIT_TEARDOWN_TIMEOUT)
        if worker.is_alive():
            log.error(
                "teardown did not finish within %.0fs at exit; run 'batch-transcode cleanup' "
                "to remove what remains",
                ATEXIT_TEARDOWN_TIMEOUT,
            )


def _output_is_current(item: WorkItem) -> bool:
    """Outputs from an earlier run can be kept: outputs only ever carry their final
    name once complete, so it is enough that each is non-empty and not older than its source."""
    try:
        changed = item.source.stat().st_mtime
        for output in item.outputs:
            out = output.stat()
            if out.st_size == 0 or out.st_mtime < changed:
                return False
    except OSError:
        return False
    return True


def _work(
    paths: Iterable[str | os.PathLike[str]], output_dir: str | os.PathLike[str], presets: Sequence[Preset]
) -> tuple[Path, list[WorkItem]]:
    """The output folder (absolute) and the work of a run, checked before anything is
    written: the output folder can be made and written, the inputs exist and can be
    read (the output folder is never searched for them), and no output overwrites an
    input or another output."""
    out = check_output_folder(output_dir)
    sources = validate_inputs(paths, output_dir=out, outputs_are_media=outputs_are_media(presets))
    return out, plan_work(sources, out, output_suffixes(presets))


def _empty_inputs(items: Sequence[WorkItem]) -> dict[int, FileResult]:
    """Failed results for the inputs of 0 bytes (ffmpeg would only say it cannot read them)."""
    empty: dict[int, FileResult] = {}
    for item in items:
        try:
            size = item.source.stat().st_size
        except OSError:
            continue  # checked a moment ago; the run reports what happened to it
        if size == 0:
            empty[item.index] = FileResult.failure(
                item.source,
                "empty file (0 bytes): there is nothing to convert; check that the copy or "
                "download that made it finished",
            )
    return empty


def _skip_done(items: Sequence[WorkItem], done: dict[int, FileResult]) -> None:
    """Mark in ``done`` the items whose outputs an earlier run left complete (skipped)."""
    for item in items:
        if item.index not in done and _output_is_current(item):
            done[item.index] = FileResult.already_done(item.source, item.outputs[0], outputs=item.outputs)
    kept = sum(r.skipped for r in done.values())
    if kept:
        log.info("%d of %d outputs already exist; skipping them", kept, len(items))


def _plan_key(items: Sequence[WorkItem], presets: Sequence[Preset]) -> tuple[object, ...]:
    """What a plan is for: the same inputs to the same outputs with the same presets."""
    return (tuple((i.source, *i.outputs) for i in items), tuple(p.name for p in presets))


def _names(presets: Sequence[Preset]) -> str:
    return "+".join(p.name for p in presets)


def _quality(spec: QualitySpec, presets: Sequence[Preset]) -> tuple[Metric, ...]:
    """The metrics ``quality=`` names, checked against the run's presets: measuring needs
    a video output (a preset made by :meth:`Preset.video`, such as ``h264``)."""
    metrics = parse_metrics(spec)
    if metrics and not any(p.is_video for p in presets):
        raise ConfigError(
            f"quality={','.join(metrics)!r} measures video outputs, and the presets "
            f"{_names(presets)} write none; add a video preset (h264, h264-720p, "
            "Preset.video(...)) or leave quality out"
        )
    return metrics


def _segment_seconds(value: float | None, presets: Sequence[Preset]) -> float | None:
    """``segment_seconds=`` checked: a positive number of seconds, and PyAV installed to read
    keyframes when the presets let a run split (:func:`~batch_transcode._split.split_refusal`)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"segment_seconds must be a positive number of seconds, not {value!r}")
    refusal = split_refusal(presets)
    if refusal is not None:
        log.info("segment_seconds=%g: no input is split: %s", value, refusal)
        return float(value)
    try:
        import av  # noqa: F401 - the split extra, checked before anything starts
    except ImportError:
        raise ConfigError(
            "segment_seconds needs PyAV to read keyframes: pip install 'batch-transcode[split]'"
        ) from None
    return float(value)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _make_backend(config: LocalConfig | AzureConfig) -> Backend:
    if isinstance(config, LocalConfig):
        from batch_transcode._local import LocalBackend

        return LocalBackend(config)
    if isinstance(config, AzureConfig):
        from batch_transcode._azure import AzureBackend

        return AzureBackend(config)
    raise ConfigError(f"config must be a LocalConfig or an AzureConfig, got {type(config).__name__}")


class TranscodeSession:
    """A context manager that provisions a backend, converts files, and tears down.

    ::

        with TranscodeSession(LocalConfig(workers=4)) as s:
            report = s.convert(paths, output_dir="out", preset="mp3")

    Under asyncio, ``async with TranscodeSession(config) as s:`` opens and closes
    off the event loop, and ``report = await s.submit(...)`` waits for a job.

    Entering provisions (on Azure: storage containers and a pool); leaving
    removes every resource the session created, last-in-first-out, whether the
    body finished, raised or was interrupted. A teardown failure raises
    :class:`TeardownError` naming what remains, unless another exception is
    already propagating, which is never masked (the teardown error is then
    logged and attached to it as a note).
    """

    def __init__(self, config: LocalConfig | AzureConfig | None = None) -> None:
        self.config: LocalConfig | AzureConfig = LocalConfig() if config is None else config
        self._backend = _make_backend(self.config)
        self._teardown = Teardown()
        self._state = _State.UNOPENED
        self._jobs: list[TranscodeJob] = []
        self._attached = False
        #: The session's OpenTelemetry span, from open to close (None without the API).
        self._span: Any = None
        #: The plans made for runs not started yet, by what they plan: a run of the same
        #: files, outputs and presets reports its actual use beside its plan.
        self._plans: dict[tuple[object, ...], Plan] = {}

    def __repr__(self) -> str:
        return f"<TranscodeSession backend={self._backend.name} state={self._state.value}>"

    @property
    def backend(self) -> str:
        """``"local"`` or ``"azure"``."""
        return self._backend.name

    @property
    def session_id(self) -> str | None:
        """On Azure, the id naming the session's pool, jobs and containers once it is open
        (what :meth:`attach` takes after a crash); ``None`` on the local backend."""
        backend = self._backend
        return backend.session_id if isinstance(backend, AttachableBackend) else None

    # -- lifecycle ------------------------------------------------------------------

    def open(self) -> TranscodeSession:
        """Provision the backend (``with`` does it). A session opens once; a failure
        tears down what was created and raises."""
        self._open_with(self._backend.open)
        return self

    def _open_with(self, provision: Callable[[Teardown], T]) -> T:
        """The one way from unopened to open: ``provision(teardown)`` creates the
        backend's resources (:meth:`open`), or adopts another process's (:meth:`attach`);
        if it raises, the session closes, removing whatever it pushed on ``teardown``."""
        if self._state is not _State.UNOPENED:
            raise SessionStateError(
                f"this session is {self._state.value}; a session can be opened once. "
                "Create a new TranscodeSession"
            )
        self._state = _State.OPEN
        _OPEN_SESSIONS.add(self)
        self._span = telemetry.start_span(
            "batch_transcode.session",
            {"batch_transcode.backend": self._backend.name},
            azure=self._backend.name == "azure",
        )
        try:
            with telemetry.phase("batch_transcode.provision", self._span):
                provided = provision(self._teardown)
        except BaseException as exc:
            self._close(exc)
            raise
        if self.session_id is not None and self._span is not None:
            self._span.set_attribute("batch_transcode.session_id", self.session_id)
        return provided

    def close(self) -> None:
        """Tear everything down. Calling it again is harmless."""
        self._close(None)

    def _close(self, exc: BaseException | None) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        _OPEN_SESSIONS.discard(self)
        for job in self._jobs:  # stop running work before removing what it runs on
            job.cancel()
        for job in self._jobs:
            try:
                job.join(None)
            except KeyboardInterrupt:
                log.warning("interrupted while stopping jobs; tearing down anyway")
        try:
            with telemetry.phase("batch_transcode.teardown", self._span):
                self._teardown.close()
        except TeardownError as err:
            if exc is None:
                telemetry.end_span(self._span, err)
                raise
            log.error("%s", err)
            exc.add_note(f"while handling this, teardown also failed: {err}")
        telemetry.end_span(self._span, exc)

    def _close_quietly(self) -> None:
        try:
            self.close()
        except Exception:
            log.exception("teardown of %r failed", self)

    def __enter__(self) -> TranscodeSession:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close(exc)

    async def __aenter__(self) -> TranscodeSession:
        """``async with TranscodeSession(config) as s:`` opens in a worker thread, so the
        event loop runs on while Azure provisions. Cancelled meanwhile, it lets the
        opening finish, tears down what it created, then raises the cancellation."""
        try:
            return await run_to_end(self.open)
        except asyncio.CancelledError:
            await run_to_end(self._close_quietly)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Cancels running jobs and tears down in a worker thread, always to the end
        (a cancellation meanwhile is raised once teardown is over)."""
        await run_to_end(functools.partial(self._close, exc))

    # -- attaching to a job another process submitted -------------------------------

    @classmethod
    def attach(
        cls,
        session_or_job_id: str,
        config: AzureConfig,
        *,
        output_dir: str | os.PathLike[str],
        progress: ProgressCallback | None = None,
        show_progress: bool = False,
    ) -> TranscodeJob:
        """Re-attach to an Azure job whose submitting process is gone (a kernel restart,
        a crash) and return a :class:`TranscodeJob` watching it::

            with TranscodeSession.attach("bt-20261101t1200-1a2b3c4d", AzureConfig.from_env(),
                                         output_dir="mp3s") as job:
                report = job.wait()

        ``session_or_job_id`` is the crashed session's id (it had one job, or one
        still unfinished) or a job id (``<session id>-job``, ``-job2``...). The
        outputs download into ``output_dir`` with the inputs' layout, as ``convert``
        would have done. A new session (``job.session``) adopts the crashed one's
        job, pool and containers: leaving the ``with`` block, or
        ``job.session.close()``, removes them. Attach only to a session whose
        process has stopped. The attaching session runs no other work.

        Raises :class:`AttachError` when there is no job under that id (nothing is
        adopted or removed then), :class:`ConfigError` for a :class:`LocalConfig`:
        a local run leaves nothing running to attach to; run ``convert`` again
        into the same ``output_dir`` and the files already done are skipped.
        """
        if not isinstance(config, AzureConfig):
            raise ConfigError(
                "attach needs an AzureConfig: a local run leaves nothing running to attach to. "
                "Run convert again with the same output_dir; outputs already complete are skipped"
            )
        out = check_output_folder(output_dir)
        session = cls(config)
        return session._open_with(
            functools.partial(session._attach, session_or_job_id, out, progress, show_progress)
        )

    def _attach(
        self,
        ident: str,
        output_dir: Path,
        progress: ProgressCallback | None,
        show_progress: bool,
        teardown: Teardown,
    ) -> TranscodeJob:
        """Adopt the job ``ident`` names, its resources' delete steps on ``teardown``, and
        start a job watching it; the session then runs nothing else."""
        backend = self._backend
        if not isinstance(backend, AttachableBackend):  # pragma: no cover - attach checked the config
            raise ConfigError(f"the {backend.name} backend cannot attach to a job")
        self._attached = True
        adopted = backend.attach(ident, teardown)
        items = adopted.work_items(output_dir)
        make_output_folder(output_dir)
        return self._start(
            items,
            {},
            functools.partial(backend.resume, adopted.job_id),
            adopted.presets,
            quality=adopted.quality,
            segment_seconds=adopted.segment_seconds,
            progress=progress,
            show_progress=show_progress,
            desc=f"{adopted.job_id} to {_names(adopted.presets)}",
            name=f"bt-attach-{adopted.job_id}",
            on_exit=self._close,  # the job owns the session that attached to it
        )

    def _start(
        self,
        items: Sequence[WorkItem],
        done: Mapping[int, FileResult],
        run: BackendRun,
        presets: Sequence[Preset],
        *,
        progress: ProgressCallback | None,
        show_progress: bool,
        desc: str,
        name: str,
        on_exit: Callable[[BaseException | None], None] | None = None,
        quality: Sequence[Metric] = (),
        segment_seconds: float | None = None,
        plan: Plan | None = None,
    ) -> TranscodeJob:
        """Start a job in the background handing ``run`` a :class:`RunRequest` of ``items``
        (less those ``done``) with ``presets``, the ``quality`` metrics to measure and this
        session's teardown stack."""
        job = TranscodeJob(
            items,
            done,
            run,
            presets=presets,
            quality=quality,
            segment_seconds=segment_seconds,
            teardown=self._teardown,
            session=self,
            progress=progress,
            show_progress=show_progress,
            desc=desc,
            name=name,
            on_exit=on_exit,
            plan=plan,
            trace_parent=telemetry.current_context(self._span),
        )
        self._jobs.append(job)
        return job.start()

    # -- work -----------------------------------------------------------------------

    def plan(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        output_dir: str | os.PathLike[str] = "out",
        preset: PresetSpec = "mp3",
        price_per_node_hour: float | None = None,
        mb_per_second: float = DEFAULT_MB_PER_SECOND,
        segment_seconds: float | None = None,
    ) -> Plan:
        """Estimate a run before it starts: files, outputs, bytes to stage, nodes, slots,
        node-hours and (with ``price_per_node_hour``) the cost. Nothing is created.
        Inputs are checked as by :meth:`convert`. Works on an unopened session too.
        ``segment_seconds`` shows what splitting long videos would change: the files
        split, their segments, and the wall time with and without."""
        if self._state is _State.CLOSED:
            self._require_open()
        chosen = resolve_presets(preset)
        segments = _segment_seconds(segment_seconds, chosen)
        _, items = _work(paths, output_dir, chosen)
        plan = make_plan(
            items,
            self.config,
            presets=chosen,
            price_per_node_hour=price_per_node_hour,
            mb_per_second=mb_per_second,
            segment_seconds=segments,
        )
        self._plans[_plan_key(items, chosen)] = plan
        return plan

    def submit(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        output_dir: str | os.PathLike[str],
        preset: PresetSpec = "mp3",
        progress: ProgressCallback | None = None,
        show_progress: bool = False,
        skip_existing: bool = True,
        quality: QualitySpec = None,
        segment_seconds: float | None = None,
    ) -> TranscodeJob:
        """Start converting ``paths`` in the background and return a :class:`TranscodeJob` at once.

        Inputs, presets and ``quality`` are checked before it returns (bad ones raise
        here, nothing started). Several jobs may run in one session, sharing its
        workers or pool. Arguments as for :meth:`convert`.
        """
        self._require_open()
        if self._attached:
            raise SessionStateError(
                "this session was made by TranscodeSession.attach and only watches the job it "
                "attached to; convert new files in a session of their own"
            )
        chosen = resolve_presets(preset)
        metrics = _quality(quality, chosen)
        segments = _segment_seconds(segment_seconds, chosen)
        out, items = _work(paths, output_dir, chosen)
        make_output_folder(out)
        done = _empty_inputs(items)
        if skip_existing:
            _skip_done(items, done)
        return self._start(
            items,
            done,
            self._backend.run,
            chosen,
            progress=progress,
            show_progress=show_progress,
            desc=f"to {_names(chosen)}",
            name=f"bt-job-{len(self._jobs) + 1}",
            quality=metrics,
            segment_seconds=segments,
            plan=self._plans.pop(_plan_key(items, chosen), None),
        )

    def convert(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        output_dir: str | os.PathLike[str],
        preset: PresetSpec = "mp3",
        progress: ProgressCallback | None = None,
        show_progress: bool = False,
        skip_existing: bool = True,
        quality: QualitySpec = None,
        segment_seconds: float | None = None,
    ) -> Report:
        """Convert ``paths`` into ``output_dir`` and return a :class:`Report`.

        Inputs are all checked before anything runs: missing or unreadable
        ones raise :class:`MissingInputError` naming each; an ``output_dir`` that is
        a file, lies below one, cannot be written, or is a folder given (media
        outputs would be taken for inputs next time) raises :class:`OutputPathError`.
        The output folder is never searched for inputs; a file given twice is
        converted once (with a logged warning); an empty input fails as such. Outputs keep the
        inputs' layout relative to their common parent. A file ffmpeg cannot
        convert becomes a failed :class:`FileResult`; the others still convert.
        ``progress`` receives a :class:`ProgressEvent` as each file starts and
        finishes; ``show_progress`` shows a tqdm bar.

        ``preset`` is a preset's name, a :class:`Preset`, or a list of them
        (``["mp3", "opus", "thumbnail"]``): one ffmpeg run per input then writes
        every output (each with the input's stem and its preset's extension), and
        :attr:`FileResult.outputs` lists them. If one output fails, the file fails.

        With ``skip_existing`` (the default), an input whose output is already
        in ``output_dir`` from an earlier run (complete, and not older than the
        input) is not converted again: its result's status is ``"skipped"``. Pass
        ``skip_existing=False`` to convert everything.

        ``quality`` names metrics to measure each video output by against its input:
        ``"vmaf,psnr"``, ``("psnr", "ssim", "vmaf")`` or :class:`Metric` values. Each
        output of a video preset is then scored after it is written, where it was
        encoded (in the same worker slot locally; on the node on Azure), and
        :attr:`FileResult.quality` holds a :class:`Score` per metric for it (``None``
        for audio outputs and thumbnails). An unknown name, or quality without a
        video preset, raises :class:`ConfigError` before anything starts; an ffmpeg
        without a metric's filter (``libvmaf``) raises it before the first file. A
        measurement that fails leaves the file converted, with a note in
        :attr:`FileResult.notes`. Files skipped as already done are not measured.
        ``segment_seconds`` (off by default) encodes long videos in segments of about
        that many seconds, in parallel, and stitches them (checked; see the video guide).

        ``convert`` is ``submit(...).wait()``: Ctrl-C stops the work, and leaving the
        session removes what it created."""
        job = self.submit(
            paths, output_dir=output_dir, preset=preset, progress=progress, show_progress=show_progress,
            skip_existing=skip_existing, quality=quality, segment_seconds=segment_seconds,
        )  # fmt: skip
        report = job.wait()
        log.info("%s", report.summary().splitlines()[0])
        return report

    def _require_open(self) -> None:
        if self._state is not _State.OPEN:
            raise SessionStateError(
                f"this session is {self._state.value}; use it inside 'with TranscodeSession(config) as s:'"
            )
