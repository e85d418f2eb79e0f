"""The pool's ffmpeg has what a run needs: checked before the run's first task is added.

A task whose ffmpeg lacks an encoder fails on every node, after the pool was paid for;
so each run checks the encoders and filters its presets (and quality metrics) need
against the ffmpeg that will run them (:func:`batch_transcode._ffmpeg.check_build`):

- :class:`~batch_transcode.StagedFFmpeg`: the binary is on this machine; it is asked
  before the job is created (a static Linux x86-64 build runs here on Linux; elsewhere
  it cannot be asked, and a warning says so).
- :class:`~batch_transcode.AptFFmpeg` on the session pool: the start task prints the
  node's ``ffmpeg -encoders`` and ``-filters`` into its stdout (``startup/stdout.txt``,
  read with Get File From Compute Node); the run reads it from the first node whose start
  task succeeded, while the inputs upload, and adds no task before it passed.
- A pool of the user's (``pool_id``) or a container image: not checked (nothing on the
  pool says what its ffmpeg has); the first failed task says it.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from azure.batch import BatchClient
from azure.batch import models as bm

from batch_transcode._azure import builders
from batch_transcode._azure._calls import call
from batch_transcode._azure.staging import CancelFlag
from batch_transcode._config import AptFFmpeg, AzureConfig, StagedFFmpeg
from batch_transcode._errors import AzureError, RunTimeoutError
from batch_transcode._ffmpeg import FFmpegBuild, check_build, ffmpeg_build, parse_build
from batch_transcode._presets import Preset
from batch_transcode._quality import Metric, filters_needed, version_needed

__all__ = ["check_nodes", "check_staged", "node_build", "nodes_report_their_build"]

log = logging.getLogger(__name__)

#: What to do when the pool's ffmpeg lacks something, by how the nodes get it.
STAGED_HINT = "stage an ffmpeg built with it: StagedFFmpeg(binary=imageio_ffmpeg.get_ffmpeg_exe())"
APT_HINT = (
    "the distribution's ffmpeg of the pool image lacks it; stage a static build that has it "
    "(AzureConfig(ffmpeg=StagedFFmpeg(binary=imageio_ffmpeg.get_ffmpeg_exe())), pip install "
    "'batch-transcode[local]') or use a container image with it (ContainerFFmpeg)"
)


def check_staged(config: AzureConfig, presets: tuple[Preset, ...], quality: tuple[Metric, ...]) -> None:
    """With a staged ffmpeg, ask the binary itself (on this machine)."""
    if not isinstance(config.ffmpeg, StagedFFmpeg):
        return
    binary = str(config.ffmpeg.binary)
    check_build(
        ffmpeg_build(binary),
        presets,
        where=f"staged for the pool ({binary})",
        hint=STAGED_HINT,
        extra=filters_needed(_measured(presets, quality)),
        min_version=version_needed(_measured(presets, quality)),
    )


def _measured(presets: tuple[Preset, ...], quality: tuple[Metric, ...]) -> tuple[Metric, ...]:
    """The metrics measured: none without a video output."""
    return quality if any(p.is_video for p in presets) else ()


def nodes_report_their_build(config: AzureConfig, pool_id: str | None) -> bool:
    """Whether the nodes of ``pool_id`` print their ffmpeg's build (the session's apt pool)."""
    return pool_id is not None and config.pool_id is None and isinstance(config.ffmpeg, AptFFmpeg)


def node_build(batch: BatchClient, pool_id: str, config: AzureConfig) -> FFmpegBuild | Literal[False] | None:
    """The build a node of the pool printed (``None``: it printed none), or ``False`` while
    no node's start task has succeeded yet."""
    nodes = call(
        config.retry,
        f"list nodes of pool {pool_id}",
        lambda: list(batch.list_nodes(pool_id, select=["id", "state", "startTaskInfo"])),
        pool_id=pool_id,
    )
    for node in nodes:
        info = node.start_task_info
        if info is None or info.state != bm.BatchStartTaskState.COMPLETED or info.exit_code != 0:
            continue
        node_id = node.id or ""

        def read(node_id: str = node_id) -> bytes:
            return b"".join(batch.download_node_file(pool_id, node_id, "startup/stdout.txt"))

        data = call(config.retry, f"read the start task output of node {node_id}", read, pool_id=pool_id)
        text = data.decode("utf-8", "replace")
        version, _, listed = text.partition(builders.ENCODERS_MARK)
        encoders, _, filters = listed.partition(builders.FILTERS_MARK)
        return parse_build(encoders, filters, version)
    return False


def check_nodes(
    batch: BatchClient,
    pool_id: str,
    config: AzureConfig,
    presets: tuple[Preset, ...],
    quality: tuple[Metric, ...],
    *,
    deadline: float,
    stop: CancelFlag,
) -> bool:
    """Wait for the first node whose start task succeeded and check its ffmpeg; True once
    checked (or not checkable), False if ``stop`` was set first. Raises ConfigError.
    Nodes are looked at every ``poll_interval``, without backing off: the tasks wait on
    this, so the gate opens as soon as a node could run them."""
    interval = config.poll_interval
    while not stop.is_set():
        try:
            build = node_build(batch, pool_id, config)
        except AzureError as exc:  # the watch reports a broken pool; this only waits
            log.debug("pool %s: could not read a node's ffmpeg build yet: %s", pool_id, exc)
            build = False
        if build is not False:
            check_build(
                build,
                presets,
                where=f"on the nodes of pool {pool_id} (AptFFmpeg)",
                hint=APT_HINT,
                extra=filters_needed(_measured(presets, quality)),
                min_version=version_needed(_measured(presets, quality)),
            )
            log.info("pool %s: the nodes' ffmpeg has what the run needs", pool_id)
            return True
        if time.monotonic() > deadline:
            raise RunTimeoutError(f"no node of pool {pool_id} became ready within the session timeout")
        until = time.monotonic() + interval
        while not stop.is_set() and time.monotonic() < until:
            time.sleep(0.1)
    return False
