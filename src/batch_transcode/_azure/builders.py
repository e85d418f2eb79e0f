"""Pure builders: config + staged files -> ``azure.batch.models`` objects. No I/O.

Everything about *what Azure is asked for* is decided here and unit-tested
against the models and the official REST spec.

Hostile file names never reach a node: each task's resource file puts its
input at a fixed safe path (``input/source.<ext>``), ffmpeg writes
``output.<suffix>`` (one per preset: its extension, or its name and extension for
renditions sharing one) in the task's working directory, and each output file's
*destination blob* carries the real name. The command line is still built from the one
ffmpeg argv builder with every word quoted. With quality metrics, the task then measures
each video output against its input on the node and uploads the logs
(:mod:`batch_transcode._quality`), which the client parses.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import attrs
from azure.batch import models as bm

from batch_transcode._azure.names import SessionNames, diagnostics_path, quality_path, task_id
from batch_transcode._commands import SEEK_FRACTION_WORD, ffmpeg_argv, shell_line
from batch_transcode._config import AptFFmpeg, AzureConfig, ContainerFFmpeg, StagedFFmpeg
from batch_transcode._ffmpeg import DURATION_UNKNOWN_LINE, EMPTY_OUTPUT_LINE
from batch_transcode._naming import output_suffixes
from batch_transcode._presets import Preset
from batch_transcode._quality import Metric, log_names, quality_argv

__all__ = [
    "FFmpegSetup",
    "autoscale_formula",
    "bash_command",
    "diagnostics_uploads",
    "ffmpeg_setup",
    "job_create_options",
    "job_terminate_when_done",
    "metadata_items",
    "node_identity_reference",
    "output_upload",
    "pool_create_options",
    "pool_info",
    "pool_specification",
    "quality_line",
    "result_uploads",
    "task_constraints",
    "task_create_options",
    "task_script",
]

#: The shell every task runs under (the Batch command line itself is not run by a shell).
SHELL = "/bin/bash"
#: Where the staged ffmpeg lives on a node; expanded by the task's shell.
STAGED_FFMPEG_REF = '"$AZ_BATCH_NODE_SHARED_DIR/ffmpeg"'
#: Name of the staged ffmpeg binary in the start task's working directory.
STAGED_FFMPEG_FILE = "ffmpeg"

_SAFE_EXT = re.compile(r"[A-Za-z0-9]{1,10}")


def metadata_items(names: SessionNames) -> list[bm.BatchMetadataItem]:
    """The session's tags (:attr:`SessionNames.tags`), which the orphan sweep recognises."""
    return [bm.BatchMetadataItem(name=k, value=v) for k, v in names.tags.items()]


# -- ffmpeg provisioning ----------------------------------------------------------------


@attrs.define(frozen=True, kw_only=True)
class FFmpegSetup:
    """How ffmpeg gets onto the nodes: pool-level parts and the word tasks call it by."""

    command: str  # the first word of the task script, already shell-safe
    start_task: bm.BatchStartTask | None = None
    container_configuration: bm.BatchContainerConfiguration | None = None
    task_container: bm.BatchTaskContainerSettings | None = None


def bash_command(script: str) -> str:
    """The command line running ``script`` under :data:`SHELL`, the script one quoted word."""
    return f"{SHELL} -c {shlex.quote(script)}"


#: Printed by the apt start task before the node's ``ffmpeg -encoders`` and ``-filters``
#: (its stdout, ``startup/stdout.txt``), which the client checks before the first task.
ENCODERS_MARK = "@bt-encoders@"
FILTERS_MARK = "@bt-filters@"

APT_SCRIPT = (
    "set -eu; export DEBIAN_FRONTEND=noninteractive; "
    "for i in 1 2 3; do "
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg && break; "
    "sleep 15; done; "
    "ffmpeg -hide_banner -version | head -n 1; "
    f"echo {ENCODERS_MARK}; ffmpeg -hide_banner -encoders; "
    f"echo {FILTERS_MARK}; ffmpeg -hide_banner -filters"
)

STAGED_SCRIPT = (
    "set -eu; "
    f'install -m 0755 {STAGED_FFMPEG_FILE} "$AZ_BATCH_NODE_SHARED_DIR/ffmpeg"; '
    f"{STAGED_FFMPEG_REF} -hide_banner -version | head -n 1"
)


def ffmpeg_setup(strategy: AptFFmpeg | StagedFFmpeg | ContainerFFmpeg, staged_url: str | None) -> FFmpegSetup:
    """The provisioning parts for ``strategy``; ``staged_url`` is the SAS URL of the
    staged binary (required for :class:`StagedFFmpeg`)."""
    if isinstance(strategy, AptFFmpeg):
        return FFmpegSetup(
            command="ffmpeg",
            start_task=bm.BatchStartTask(
                command_line=bash_command(APT_SCRIPT),
                user_identity=bm.UserIdentity(
                    auto_user=bm.AutoUserSpecification(scope="pool", elevation_level="admin")
                ),
                max_task_retry_count=2,
                wait_for_success=True,
            ),
        )
    if isinstance(strategy, StagedFFmpeg):
        if not staged_url:
            raise ValueError("StagedFFmpeg needs the staged binary's URL")
        return FFmpegSetup(
            command=STAGED_FFMPEG_REF,
            start_task=bm.BatchStartTask(
                command_line=bash_command(STAGED_SCRIPT),
                resource_files=[
                    bm.ResourceFile(http_url=staged_url, file_path=STAGED_FFMPEG_FILE, file_mode="0755")
                ],
                user_identity=bm.UserIdentity(auto_user=bm.AutoUserSpecification(scope="pool")),
                max_task_retry_count=2,
                wait_for_success=True,
            ),
        )
    if isinstance(strategy, ContainerFFmpeg):
        return FFmpegSetup(
            command="ffmpeg",
            container_configuration=bm.BatchContainerConfiguration(
                type="dockerCompatible", container_image_names=[strategy.image]
            ),
            task_container=bm.BatchTaskContainerSettings(
                image_name=strategy.image,
                working_directory="taskWorkingDirectory",
                container_run_options="--entrypoint=",
            ),
        )
    raise TypeError(f"unknown ffmpeg provisioning {strategy!r}")


# -- pool ---------------------------------------------------------------------------------


def autoscale_formula(config: AzureConfig) -> str:
    """Enough nodes for the pending tasks (active + running), at most ``max_nodes``,
    and none at all when the queue is empty. With ``spot_nodes`` > 0 the first
    ``dedicated_nodes`` nodes are dedicated and the rest Spot."""
    slots = config.task_slots_per_node
    if config.spot_nodes > 0:
        dedicated_cap = min(config.dedicated_nodes, config.max_nodes)
        spot_cap = config.max_nodes - dedicated_cap
    else:
        dedicated_cap, spot_cap = config.max_nodes, 0
    return "\n".join(
        [
            "$samples = $PendingTasks.GetSamplePercent(TimeInterval_Minute * 5);",
            "$pending = $samples < 70 ? max(0, $PendingTasks.GetSample(1)) : "
            "max($PendingTasks.GetSample(1), avg($PendingTasks.GetSample(TimeInterval_Minute * 5)));",
            f"$nodes = $pending > 0 ? ceil($pending / {slots}) : 0;",
            f"$TargetDedicatedNodes = min($nodes, {dedicated_cap});",
            f"$TargetLowPriorityNodes = min(max(0, $nodes - $TargetDedicatedNodes), {spot_cap});",
            "$NodeDeallocationOption = taskcompletion;",
        ]
    )


def _virtual_machine_configuration(config: AzureConfig, setup: FFmpegSetup) -> bm.VirtualMachineConfiguration:
    publisher, offer, sku = config.image
    return bm.VirtualMachineConfiguration(
        image_reference=bm.BatchVmImageReference(publisher=publisher, offer=offer, sku=sku, version="latest"),
        node_agent_sku_id=config.node_agent_sku,
        container_configuration=setup.container_configuration,
    )


@attrs.define(frozen=True)
class _Scale:
    enable_auto_scale: bool
    auto_scale_formula: str | None = None
    auto_scale_evaluation_interval: dt.timedelta | None = None
    target_dedicated_nodes: int | None = None
    target_low_priority_nodes: int | None = None
    resize_timeout: dt.timedelta | None = None


def _scale(config: AzureConfig) -> _Scale:
    if config.autoscale:
        return _Scale(True, autoscale_formula(config), dt.timedelta(minutes=5))
    return _Scale(
        False,
        target_dedicated_nodes=config.dedicated_nodes,
        target_low_priority_nodes=config.spot_nodes,
        resize_timeout=dt.timedelta(minutes=15),
    )


def pool_create_options(
    config: AzureConfig, names: SessionNames, setup: FFmpegSetup
) -> bm.BatchPoolCreateOptions:
    """The session pool: deleted when the session closes, tagged for the orphan sweep."""
    return bm.BatchPoolCreateOptions(id=names.pool_id, **_pool_fields(config, names, setup))


def pool_specification(
    config: AzureConfig, names: SessionNames, setup: FFmpegSetup
) -> bm.BatchPoolSpecification:
    """The same pool, as an auto-pool specification (its lifetime is the job's)."""
    return bm.BatchPoolSpecification(**_pool_fields(config, names, setup))


def _pool_fields(config: AzureConfig, names: SessionNames, setup: FFmpegSetup) -> dict[str, Any]:
    """What a session pool and an auto-pool specification have in common (all but the id)."""
    scale = _scale(config)
    return {
        "display_name": names.display_name,
        "vm_size": config.vm_size,
        "virtual_machine_configuration": _virtual_machine_configuration(config, setup),
        "task_slots_per_node": config.task_slots_per_node,
        "start_task": setup.start_task,
        "metadata": metadata_items(names),
        "enable_auto_scale": scale.enable_auto_scale,
        "auto_scale_formula": scale.auto_scale_formula,
        "auto_scale_evaluation_interval": scale.auto_scale_evaluation_interval,
        "target_dedicated_nodes": scale.target_dedicated_nodes,
        "target_low_priority_nodes": scale.target_low_priority_nodes,
        "resize_timeout": scale.resize_timeout,
    }


# -- job ----------------------------------------------------------------------------------


def pool_info(config: AzureConfig, names: SessionNames, setup: FFmpegSetup | None) -> bm.BatchPoolInfo:
    """An existing pool (``config.pool_id``), an auto-pool living as long as the job,
    or the session pool."""
    if config.pool_id is not None:
        return bm.BatchPoolInfo(pool_id=config.pool_id)
    if config.auto_pool:
        if setup is None:
            raise ValueError("an auto-pool needs the ffmpeg setup")
        return bm.BatchPoolInfo(
            auto_pool_specification=bm.BatchAutoPoolSpecification(
                pool_lifetime_option="job",
                auto_pool_id_prefix=names.auto_pool_prefix,
                keep_alive=False,
                pool=pool_specification(config, names, setup),
            )
        )
    return bm.BatchPoolInfo(pool_id=names.pool_id)


def job_create_options(
    *,
    job_id: str,
    names: SessionNames,
    info: bm.BatchPoolInfo,
    max_wall_clock: dt.timedelta,
    uses_task_dependencies: bool = False,
) -> bm.BatchJobCreateOptions:
    """A job bounded in time. Created with ``noaction`` on completion and switched to
    ``terminatejob`` once every task is added (:func:`job_terminate_when_done`): a job
    set to terminate when created can end between two task collections.
    ``uses_task_dependencies`` (fixed at creation) lets a stitch task wait for the
    segments of its input (``_azure.split``)."""
    return bm.BatchJobCreateOptions(
        id=job_id,
        display_name=names.display_name,
        pool_info=info,
        constraints=bm.BatchJobConstraints(max_wall_clock_time=max(max_wall_clock, dt.timedelta(minutes=1))),
        all_tasks_complete_mode="noaction",
        metadata=metadata_items(names),
        uses_task_dependencies=uses_task_dependencies or None,
    )


def job_terminate_when_done() -> bm.BatchJobUpdateOptions:
    """Every task is added: the job ends itself when they complete."""
    return bm.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob")


# -- tasks --------------------------------------------------------------------------------

#: What ends a path's last part here (``os.path.basename`` splits on these).
_SEPARATORS = os.sep + (os.altsep or "")


def input_file_name(source: str | PurePath) -> str:
    """The safe path a task's input is downloaded to: ``input/source.<ext>``, with the
    source's extension only when it is plain letters/digits (ffmpeg probes content anyway).

    The extension is ``PurePath(source).suffix``, read off the text: a ``PurePath`` made
    of a string interns each of its parts (``sys.intern`` in ``pathlib``), and at
    100,000 files the table of interned strings kept every file's name to the end."""
    name = source.name if isinstance(source, PurePath) else os.path.basename(source.rstrip(_SEPARATORS))
    dot = name.rfind(".")
    suffix = name[dot + 1 :] if 0 < dot < len(name) - 1 else ""
    return f"input/source.{suffix.lower()}" if _SAFE_EXT.fullmatch(suffix) else "input/source"


def output_file_names(presets: Sequence[Preset]) -> list[str]:
    """Where ffmpeg writes each preset's output in the task's working directory."""
    return [f"output.{suffix}" for suffix in output_suffixes(presets)]


#: Reads ``Duration: HH:MM:SS.ss,`` from ffmpeg's description of the input as seconds.
_DURATION_SED = r"s/^ *Duration: \([0-9][0-9]*\):\([0-9][0-9]\):\([0-9][0-9.]*\),.*/\1 \2 \3/p"
_DURATION_AWK = 'NR == 1 { printf "%.3f", $1 * 3600 + $2 * 60 + $3 }'
_SEEK_FRACTION = re.compile(
    "^" + re.escape(SEEK_FRACTION_WORD).replace(r"\{fraction:\.6f\}", "([0-9.]+)") + "$"
)


def _shell_word(word: str) -> str:
    """``word`` quoted, but a seek at a fraction of the duration becomes the shell's
    product of the duration read on the node (``$d``) and that fraction (digits only)."""
    found = _SEEK_FRACTION.match(word)
    if found is None:
        return shlex.quote(word)
    return f'"$(awk -v d="$d" \'BEGIN {{ printf "%.3f", d * {found.group(1)} }}\')"'


def task_script(
    setup: FFmpegSetup, input_name: str, presets: Sequence[Preset], quality: Sequence[Metric] = ()
) -> str:
    """The shell script a task runs: the shared ffmpeg argv, every word quoted; only the
    ffmpeg reference (``"$AZ_BATCH_NODE_SHARED_DIR/ffmpeg"`` when staged) is left to the shell.

    With one preset the shell becomes ffmpeg (``exec``). With several, an output ffmpeg
    left empty while exiting 0 fails the task, saying which (as the local backend does).
    An output at a fraction of the input's duration (a thumbnail half-way) has its time
    computed on the node from the duration ffmpeg reads in the input's header.

    With ``quality`` metrics, each video output is then measured against the input (one
    ffmpeg run per output, writing ``quality-<n>-*`` logs); a measurement that fails
    leaves its logs missing, which the client reports as a note: it never fails the task."""
    outputs = list(zip(output_file_names(presets), presets, strict=True))
    argv = ffmpeg_argv("ffmpeg", input_name, outputs)
    line = " ".join([setup.command, *map(_shell_word, argv[1:])])
    probe = ""
    if any(p.seek_fraction is not None for p in presets):
        describe = shell_line(["-hide_banner", "-nostdin", "-i", "file:" + input_name])
        probe = (
            f"d=$({setup.command} {describe} 2>&1 | sed -n {shlex.quote(_DURATION_SED)} | "
            f"awk {shlex.quote(_DURATION_AWK)}); "
            f'[ -n "$d" ] || {{ echo {shlex.quote(DURATION_UNKNOWN_LINE)} >&2; exit 1; }}; '
        )
    measure = "".join(
        f"; {{ {quality_line(setup, input_name, name, n, quality)}; }} || true"
        for n, (name, p) in enumerate(outputs)
        if quality and p.is_video
    )
    if len(outputs) == 1 and not presets[0].video_only and not measure:
        return f"{probe}exec {line}"
    checks = "".join(
        f"; test -s {shlex.quote(name)} || "
        f"{{ echo {shlex.quote(EMPTY_OUTPUT_LINE.format(index=n, extension=p.extension))} >&2; exit 1; }}"
        for n, (name, p) in enumerate(outputs)
    )
    return f"set -e; {probe}{line}{checks}{measure}"


def quality_line(
    setup: FFmpegSetup, input_name: str, output: str, index: int, quality: Sequence[Metric]
) -> str:
    """The shell line measuring one output against the input, every word quoted."""
    argv = quality_argv("ffmpeg", input_name, output, quality, index=index)
    return " ".join([setup.command, *map(shlex.quote, argv[1:])])


def quality_logs(presets: Sequence[Preset], quality: Sequence[Metric]) -> dict[int, dict[Metric, str]]:
    """The quality log names of each measured output (by output index)."""
    if not quality:
        return {}
    return {n: log_names(n, quality) for n, p in enumerate(presets) if p.is_video}


def node_identity_reference(config: AzureConfig) -> bm.BatchNodeIdentityReference | None:
    """The pool identity tasks reach storage as (``config.node_identity``), or None: then
    their URLs carry SAS tokens."""
    if config.node_identity is None:
        return None
    return bm.BatchNodeIdentityReference(resource_id=config.node_identity)


def task_create_options(
    *,
    config: AzureConfig,
    setup: FFmpegSetup,
    job_id: str,
    index: int,
    source_name: str,
    input_url: str,
    output_container_url: str,
    output_blob_names: Sequence[str],
    presets: Sequence[Preset],
    display_name: str | None = None,
    quality: Sequence[Metric] = (),
) -> bm.BatchTaskCreateOptions:
    """One file's task: fetch the input, run ffmpeg once, upload every output (one per
    preset, to ``output_blob_names`` in order) on success and stdout/stderr on failure;
    with ``quality``, the measurement logs of its video outputs on success."""
    if not presets or len(presets) != len(output_blob_names):
        raise ValueError("a task needs one output blob name per preset, and at least one preset")
    tid = task_id(index)
    input_name = input_file_name(source_name)
    script = task_script(setup, input_name, presets, quality)
    identity = node_identity_reference(config)
    return bm.BatchTaskCreateOptions(
        id=tid,
        display_name=(display_name or source_name)[-1024:],
        command_line=bash_command(script),
        resource_files=[
            bm.ResourceFile(http_url=input_url, file_path=input_name, identity_reference=identity)
        ],
        output_files=[
            *result_uploads(config, job_id, tid, output_container_url, output_blob_names, presets, quality),
            *diagnostics_uploads(config, job_id, tid, output_container_url),
        ],
        constraints=task_constraints(config),
        container_settings=setup.task_container,
    )


def output_upload(
    config: AzureConfig, container_url: str, pattern: str, path: str, condition: str
) -> bm.OutputFile:
    """Upload the task's files matching ``pattern`` to ``path`` in the container on
    ``condition`` (``tasksuccess``, ``taskfailure``)."""
    return bm.OutputFile(
        file_pattern=pattern,
        destination=bm.OutputFileDestination(
            container=bm.OutputFileBlobContainerDestination(
                container_url=container_url, path=path, identity_reference=node_identity_reference(config)
            )
        ),
        upload_options=bm.OutputFileUploadConfiguration(upload_condition=condition),
    )


def result_uploads(
    config: AzureConfig,
    job_id: str,
    tid: str,
    container_url: str,
    output_blob_names: Sequence[str],
    presets: Sequence[Preset],
    quality: Sequence[Metric],
) -> list[bm.OutputFile]:
    """A file's outputs (one per preset) and its quality logs, uploaded on success."""
    uploads = [
        output_upload(config, container_url, name, blob, "tasksuccess")
        for name, blob in zip(output_file_names(presets), output_blob_names, strict=True)
    ]
    if quality_logs(presets, quality):
        uploads.append(
            output_upload(config, container_url, "quality-*", quality_path(job_id, tid, ""), "tasksuccess")
        )
    return uploads


def diagnostics_uploads(
    config: AzureConfig, job_id: str, tid: str, container_url: str
) -> list[bm.OutputFile]:
    """A task's stdout and stderr, uploaded when it fails."""
    return [
        output_upload(config, container_url, f"../{name}", diagnostics_path(job_id, tid, name), "taskfailure")
        for name in ("stderr.txt", "stdout.txt")
    ]


def task_constraints(config: AzureConfig) -> bm.BatchTaskConstraints:
    return bm.BatchTaskConstraints(
        max_wall_clock_time=dt.timedelta(seconds=config.task_timeout),
        max_task_retry_count=config.max_task_retry_count,
    )
