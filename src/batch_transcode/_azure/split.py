"""A long input as Batch tasks: one per segment, one for its audio, and a stitch that
depends on them (see :mod:`batch_transcode._split` for the plan and the check).

Per split input ``t000042`` (:mod:`~batch_transcode._azure.names`):

- ``t000042-s0000``, ``-s0001``... each encode one segment's video, every rendition
  (added longest first), and ``t000042-a`` the whole audio once; each uploads its pieces
  on success to ``.bt-segments/<job>/t000042/`` in the output container, through the
  run's create/write-only container SAS;
- ``t000042``, the stitch, has ``dependsOn`` ``taskIds`` on them (the job is created with
  ``usesTaskDependencies``; Microsoft's "Create task dependencies",
  https://learn.microsoft.com/azure/batch/batch-task-dependencies), so Batch starts it
  once every piece succeeded. It fetches each piece (and the concat script the client
  wrote beside them) through a read-only SAS of that blob alone, joins the segments by
  stream copy, muxes the audio, measures quality when asked (the input is fetched then),
  and uploads the outputs as a whole-file task does. Its id is the file's task id: the
  run's watch, results and attach treat it as the file's task.

A piece that fails (after its retries) blocks the stitch for good (the service's rule:
"If any of those Tasks fail and exhaust their retry counts, this Task will never be
scheduled"): the client then fails the file with the piece's error and terminates the
stitch, so that the job still completes and ends itself. A preempted piece is requeued
by the service and runs again alone.

The client downloads a stitched output (and the audio-once output) to temporary names,
checks it (:func:`~batch_transcode._split.check_stitched`) and only then gives it its
final name; the pieces' blobs are deleted once the file has its result (and all of them
with the output container when the session closes).
"""

from __future__ import annotations

import logging
import os
import shlex
import tempfile
import threading
from collections.abc import Callable, Sequence, Set
from pathlib import Path

import attrs
from azure.batch import models as bm

from batch_transcode._azure import builders, names
from batch_transcode._azure._calls import call
from batch_transcode._azure.opened import OpenSession
from batch_transcode._commands import audio_once_argv, audio_preset, concat_list, segment_argv, stitch_argv
from batch_transcode._config import AzureConfig
from batch_transcode._errors import AzureError, StitchCheckError, TranscodeError
from batch_transcode._ffmpeg import EMPTY_OUTPUT_LINE, temporary_output
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._quality import Metric
from batch_transcode._split import (
    SplitPlan,
    audio_file,
    check_stitched,
    concat_file,
    plan_split,
    segment_file,
    split_note,
    split_refusal,
)

__all__ = ["SplitJob", "split_tasks", "uses_dependencies"]

log = logging.getLogger(__name__)


def uses_dependencies(presets: Sequence[Preset], segment_seconds: float | None) -> bool:
    """Whether a job of these presets may split inputs (it needs ``usesTaskDependencies``)."""
    return segment_seconds is not None and split_refusal(presets) is None


def _line(setup: builders.FFmpegSetup, argv: Sequence[str]) -> str:
    """An ffmpeg argv as a shell line, every word quoted, ffmpeg as the node calls it."""
    return " ".join([setup.command, *map(shlex.quote, argv[1:])])


def _stitch_script(
    setup: builders.FFmpegSetup,
    presets: Sequence[Preset],
    plan: SplitPlan,
    input_name: str,
    quality: Sequence[Metric],
) -> str:
    """Join each rendition's segments, mux its audio, check each output is not empty; then
    measure quality (a failed measurement leaves its logs missing: a note, never a failure)."""
    outputs = builders.output_file_names(presets)
    lines = []
    for n, (name, preset) in enumerate(zip(outputs, presets, strict=True)):
        audio = audio_file(n, preset) if plan.has_audio and preset.audio is not None else None
        lines.append(_line(setup, stitch_argv("ffmpeg", concat_file(n), audio, name, preset)))
        empty = shlex.quote(EMPTY_OUTPUT_LINE.format(index=n, extension=preset.extension))
        lines.append(f"test -s {shlex.quote(name)} || {{ echo {empty} >&2; exit 1; }}")
    measure = [
        f"{{ {builders.quality_line(setup, input_name, name, n, quality)}; }} || true"
        for n, name in enumerate(outputs)
        if quality and presets[n].is_video
    ]
    return "set -e; " + "; ".join([*lines, *measure])


@attrs.frozen(kw_only=True)
class _FileTasks:
    """What the tasks of one split input share."""

    config: AzureConfig
    setup: builders.FFmpegSetup
    job_id: str
    item: WorkItem
    plan: SplitPlan
    presets: tuple[Preset, ...]
    #: The input, as the tasks fetch it.
    source: bm.ResourceFile
    container_url: str

    @property
    def file_tid(self) -> str:
        return names.task_id(self.item.index)

    def piece(self, tid: str, what: str, argv: Sequence[str], pattern: str) -> bm.BatchTaskCreateOptions:
        """A segment's or the audio's task: fetch the input, run ``argv``, upload the
        pieces matching ``pattern`` beside the file's others."""
        folder = names.segments_path(self.job_id, self.file_tid, "")
        return bm.BatchTaskCreateOptions(
            id=tid,
            display_name=f"{self.item.relative_source} ({what})"[-1024:],
            command_line=builders.bash_command("set -e; " + _line(self.setup, argv)),
            resource_files=[self.source],
            output_files=[
                builders.output_upload(self.config, self.container_url, pattern, folder, "tasksuccess"),
                *builders.diagnostics_uploads(self.config, self.job_id, tid, self.container_url),
            ],
            constraints=builders.task_constraints(self.config),
            container_settings=self.setup.task_container,
        )

    def pieces(self) -> list[bm.BatchTaskCreateOptions]:
        """The segments' tasks, longest first, then the audio's (when the input has audio)."""
        index, name = self.item.index, self.source.file_path or ""
        tasks = []
        for segment in self.plan.schedule():
            outputs = [(segment_file(segment.index, n, p), p) for n, p in enumerate(self.presets)]
            tasks.append(
                self.piece(
                    names.segment_task_id(index, segment.index),
                    f"segment {segment.index + 1} of {len(self.plan.segments)}",
                    segment_argv("ffmpeg", name, outputs, segment),
                    "segment-*",
                )
            )
        audio = [
            (audio_file(n, p), a) for n, p in enumerate(self.presets) if (a := audio_preset(p)) is not None
        ]
        if self.plan.has_audio and audio:
            tasks.append(
                self.piece(
                    names.audio_task_id(index), "audio", audio_once_argv("ffmpeg", name, audio), "audio-*"
                )
            )
        return tasks

    def stitch(
        self,
        pieces: Sequence[bm.BatchTaskCreateOptions],
        output_blob_names: Sequence[str],
        piece_url: Callable[[str], str],
        quality: Sequence[Metric],
    ) -> bm.BatchTaskCreateOptions:
        """The stitch task, depending on ``pieces``."""
        identity = builders.node_identity_reference(self.config)
        resources = [
            bm.ResourceFile(
                http_url=piece_url(names.segments_path(self.job_id, self.file_tid, name)),
                file_path=name,
                identity_reference=identity,
            )
            for n, p in enumerate(self.presets)
            for name in _stitch_inputs(self.plan, n, p)
        ]
        if quality:
            resources.append(self.source)
        script = _stitch_script(self.setup, self.presets, self.plan, self.source.file_path or "", quality)
        config, job_id, tid, url = self.config, self.job_id, self.file_tid, self.container_url
        return bm.BatchTaskCreateOptions(
            id=tid,
            display_name=self.item.relative_source[-1024:],
            command_line=builders.bash_command(script),
            resource_files=resources,
            output_files=[
                *builders.result_uploads(config, job_id, tid, url, output_blob_names, self.presets, quality),
                *builders.diagnostics_uploads(config, job_id, tid, url),
            ],
            depends_on=bm.BatchTaskDependencies(task_ids=[t.id for t in pieces]),
            constraints=builders.task_constraints(config),
            container_settings=self.setup.task_container,
        )


def split_tasks(
    *,
    config: AzureConfig,
    setup: builders.FFmpegSetup,
    job_id: str,
    item: WorkItem,
    plan: SplitPlan,
    presets: Sequence[Preset],
    input_url: str,
    output_container_url: str,
    output_blob_names: Sequence[str],
    piece_url: Callable[[str], str],
    quality: Sequence[Metric] = (),
) -> list[bm.BatchTaskCreateOptions]:
    """The tasks of one split input, in the order to add them: its segments longest first,
    its audio, its stitch (see the module notes). ``piece_url`` gives a read-only SAS URL
    of an output container blob; the concat scripts (:func:`concat_scripts`) must be there
    before the stitch runs."""
    input_name = builders.input_file_name(item.relative_source)
    identity = builders.node_identity_reference(config)
    tasks = _FileTasks(
        config=config,
        setup=setup,
        job_id=job_id,
        item=item,
        plan=plan,
        presets=tuple(presets),
        source=bm.ResourceFile(http_url=input_url, file_path=input_name, identity_reference=identity),
        container_url=output_container_url,
    )
    pieces = tasks.pieces()
    return [*pieces, tasks.stitch(pieces, output_blob_names, piece_url, quality)]


def _stitch_inputs(plan: SplitPlan, rendition: int, preset: Preset) -> list[str]:
    """The pieces the stitch of the ``rendition``-th preset reads."""
    files = [concat_file(rendition), *(segment_file(s.index, rendition, preset) for s in plan.segments)]
    if plan.has_audio and preset.audio is not None:
        files.append(audio_file(rendition, preset))
    return files


def concat_scripts(plan: SplitPlan, presets: Sequence[Preset]) -> dict[str, bytes]:
    """The concat script of each rendition's stitch, by piece name."""
    return {
        concat_file(n): concat_list(
            [(segment_file(s.index, n, p), s.duration) for s in plan.segments]
        ).encode()
        for n, p in enumerate(presets)
    }


class SplitJob:
    """The split inputs of one job: their plans, their tasks, and the client's part of
    them (a failed piece, the check and delivery of a stitched output)."""

    def __init__(
        self, session: OpenSession, job_id: str, presets: Sequence[Preset], seconds: float | None
    ) -> None:
        self.session = session
        self.job_id = job_id
        self.presets = tuple(presets)
        self.seconds = seconds if uses_dependencies(presets, seconds) else None
        self._lock = threading.Lock()
        #: The plan of each split input, by its index.
        self.plans: dict[int, SplitPlan] = {}
        #: The indices of the split inputs (when attached, also those whose source is gone).
        self.files: set[int] = set()
        #: Segment and audio tasks added (or found, when attached).
        self.pieces = 0

    def adopt(self, items: Sequence[WorkItem], present: Set[str]) -> None:
        """Attached: which of ``items`` the job's tasks (``present``, their ids) split; their
        plans read again from their sources (the same keyframes: the same plan)."""
        parents = {names.piece_parent(tid) for tid in present} - {None}
        self.pieces = sum(1 for tid in present if names.piece_parent(tid) is not None)
        for item in items:
            if names.task_id(item.index) in parents:
                self.files.add(item.index)
                self.plan(item)

    def notes(self, item: WorkItem) -> list[str]:
        """The notes of a split input's result."""
        plan = self.plans.get(item.index)
        return [split_note(plan)] if plan is not None else []

    def plan(self, item: WorkItem) -> SplitPlan | None:
        """``item``'s plan (its keyframes read here), or ``None``: a whole-file task."""
        if self.seconds is None or not item.source.is_file():
            return None
        plan = plan_split(item.source, self.presets, self.seconds)
        if plan is not None:
            with self._lock:
                self.plans[item.index] = plan
                self.files.add(item.index)
        return plan

    def tasks(
        self,
        item: WorkItem,
        plan: SplitPlan,
        *,
        input_url: str,
        output_container_url: str,
        quality: Sequence[Metric],
    ) -> list[bm.BatchTaskCreateOptions]:
        """The tasks of a split input; its concat scripts are written to storage here."""
        staging, file_tid = self.session.staging, names.task_id(item.index)
        for name, data in concat_scripts(plan, self.presets).items():
            staging.write_output_blob(names.segments_path(self.job_id, file_tid, name), data)
        tasks = split_tasks(
            config=self.session.config,
            setup=self.session.setup,
            job_id=self.job_id,
            item=item,
            plan=plan,
            presets=self.presets,
            input_url=input_url,
            output_container_url=output_container_url,
            output_blob_names=names.output_blobs(item.relative_outputs),
            piece_url=lambda blob: staging.blob_sas_url(staging.containers.output, blob),
            quality=quality,
        )
        with self._lock:
            self.pieces += len(tasks) - 1
        return tasks

    def stop_stitch(self, index: int) -> None:
        """A piece of input ``index`` failed: end its stitch, which would wait for ever."""
        batch, job_id, tid = self.session.batch, self.job_id, names.task_id(index)
        try:
            call(
                self.session.config.retry,
                f"terminate task {tid}",
                lambda: batch.terminate_task(job_id, tid),
                missing_ok=True,
                job_id=job_id,
                task_id=tid,
            )
        except AzureError as exc:  # the job still ends: teardown, or its max wall clock
            log.warning("could not terminate the stitch task %s: %s", tid, exc)
        self.drop_pieces(index)

    def deliver(self, item: WorkItem) -> str | None:
        """Download the stitched outputs of ``item`` to temporary names, check them against
        its plan and give them their final names; why not (nothing delivered then)."""
        plan = self.plans.get(item.index)
        if plan is None:  # attached, and the source is gone: the check cannot run
            return "converted, but its source is not here to check the output stitched from segments against"
        file_tid = names.task_id(item.index)
        tmps = [temporary_output(output) for output in item.outputs]
        with tempfile.TemporaryDirectory(prefix="bt-split-check-") as folder:
            try:
                for n, (preset, blob, tmp) in enumerate(
                    zip(self.presets, names.output_blobs(item.relative_outputs), tmps, strict=True)
                ):
                    error = self._fetch_and_check(plan, file_tid, n, preset, blob, tmp, Path(folder))
                    if error is not None:
                        return error
                for tmp, output in zip(tmps, item.outputs, strict=True):
                    os.replace(tmp, output)
            finally:
                for tmp in tmps:
                    tmp.unlink(missing_ok=True)
                self.drop_pieces(item.index)
        return None

    def drop_pieces(self, index: int) -> None:
        """Delete the pieces of input ``index`` from storage (its result is known); a
        failure is only logged: the output container goes with the session."""
        prefix = names.segments_path(self.job_id, names.task_id(index), "") + "/"
        try:
            self.session.staging.delete_output_blobs(prefix)
        except TranscodeError as exc:
            log.warning("could not delete the pieces under %s: %s", prefix, exc)

    def _fetch_and_check(
        self,
        plan: SplitPlan,
        file_tid: str,
        rendition: int,
        preset: Preset,
        blob: str,
        target: Path,
        folder: Path,
    ) -> str | None:
        """Download one stitched output (and its audio encoded once) and check it."""
        staging = self.session.staging
        download = staging.download_blob(blob, target)
        if not download.ok:
            return f"converted, but the output could not be downloaded: {download.error}"
        audio: Path | None = None
        if plan.has_audio and preset.audio is not None:
            audio = folder / audio_file(rendition, preset)
            name = names.segments_path(self.job_id, file_tid, audio_file(rendition, preset))
            fetched = staging.download_blob(name, audio)
            if not fetched.ok:
                return f"the audio encoded once could not be downloaded to check the output: {fetched.error}"
        try:
            check_stitched(plan, target, audio)
        except StitchCheckError as exc:
            return f"{preset.name}: {exc}"
        return None
