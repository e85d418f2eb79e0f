"""The builders against the SDK models and the official REST spec."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath
from typing import Any

import pytest
from azure.batch import models as bm
from hypothesis import given
from hypothesis import strategies as st

from batch_transcode._azure import builders as b
from batch_transcode._azure.names import SessionNames, new_session_id
from batch_transcode._config import AptFFmpeg, ContainerFFmpeg, StagedFFmpeg
from batch_transcode._presets import PRESETS, Preset
from helpers import azure_config as config

Validate = Callable[[dict[str, Any], str], None]

NOW = dt.datetime(2026, 11, 29, 4, 12, 7, tzinfo=dt.UTC)
NAMES = SessionNames(session_id=new_session_id("bt", NOW, "1a2b3c4d"), created_at=NOW)
STAGED_URL = "https://st.blob.core.windows.net/c/ffmpeg?sv=x&sig=SECRET"


def test_golden_pool_fixed_size_apt(spec_validate: Validate) -> None:
    setup = b.ffmpeg_setup(AptFFmpeg(), None)
    pool = b.pool_create_options(config(dedicated_nodes=2, spot_nodes=3, task_slots_per_node=4), NAMES, setup)
    body = pool.as_dict()
    spec_validate(body, "BatchPoolCreateOptions")
    assert body["id"] == "bt-20261129t0412-1a2b3c4d-pool"
    assert body["vmSize"] == "Standard_D2s_v5"
    assert body["virtualMachineConfiguration"] == {
        "imageReference": {
            "publisher": "canonical",
            "offer": "ubuntu-24_04-lts",
            "sku": "server",
            "version": "latest",
        },
        "nodeAgentSKUId": "batch.node.ubuntu 24.04",
    }
    assert body["targetDedicatedNodes"] == 2
    assert body["targetLowPriorityNodes"] == 3
    assert body["enableAutoScale"] is False
    assert body["taskSlotsPerNode"] == 4
    assert body["metadata"] == [
        {"name": "createdby", "value": "batch-transcode"},
        {"name": "session", "value": "bt-20261129t0412-1a2b3c4d"},
        {"name": "createdat", "value": "2026-11-29T04:12:07Z"},
    ]
    start = body["startTask"]
    assert start["waitForSuccess"] is True
    assert start["userIdentity"] == {"autoUser": {"scope": "pool", "elevationLevel": "admin"}}
    words = shlex.split(start["commandLine"])
    assert words[:2] == ["/bin/bash", "-c"]
    assert "apt-get install -y -qq --no-install-recommends ffmpeg" in words[2]


def test_golden_pool_autoscale_staged(spec_validate: Validate) -> None:
    setup = b.ffmpeg_setup(StagedFFmpeg(binary=Path("/opt/ffmpeg")), STAGED_URL)
    cfg = config(
        autoscale=True, max_nodes=8, dedicated_nodes=1, spot_nodes=1, ffmpeg=StagedFFmpeg(binary="/x")
    )
    body = b.pool_create_options(cfg, NAMES, setup).as_dict()
    spec_validate(body, "BatchPoolCreateOptions")
    assert body["enableAutoScale"] is True
    assert "targetDedicatedNodes" not in body
    assert body["autoScaleEvaluationInterval"] == "PT05M00S"
    formula = body["autoScaleFormula"]
    assert "$PendingTasks" in formula
    assert "$pending > 0 ? ceil($pending / 2) : 0" in formula  # zero nodes on an empty queue
    assert "$TargetDedicatedNodes = min($nodes, 1);" in formula
    assert "$TargetLowPriorityNodes = min(max(0, $nodes - $TargetDedicatedNodes), 7);" in formula
    start = body["startTask"]
    assert start["resourceFiles"] == [{"httpUrl": STAGED_URL, "filePath": "ffmpeg", "fileMode": "0755"}]
    assert '"$AZ_BATCH_NODE_SHARED_DIR/ffmpeg"' in shlex.split(start["commandLine"])[2]


def test_autoscale_all_dedicated_without_spot() -> None:
    formula = b.autoscale_formula(config(autoscale=True, max_nodes=5))
    assert "$TargetDedicatedNodes = min($nodes, 5);" in formula
    assert "$TargetLowPriorityNodes = min(max(0, $nodes - $TargetDedicatedNodes), 0);" in formula


def test_container_pool_and_task(spec_validate: Validate) -> None:
    setup = b.ffmpeg_setup(ContainerFFmpeg(image="example/ffmpeg:7"), None)
    body = b.pool_create_options(config(), NAMES, setup).as_dict()
    spec_validate(body, "BatchPoolCreateOptions")
    assert body["virtualMachineConfiguration"]["containerConfiguration"] == {
        "type": "dockerCompatible",
        "containerImageNames": ["example/ffmpeg:7"],
    }
    assert "startTask" not in body
    task = _task(setup=setup).as_dict()
    spec_validate(task, "BatchTaskCreateOptions")
    assert task["containerSettings"]["imageName"] == "example/ffmpeg:7"


def test_staged_setup_needs_url() -> None:
    with pytest.raises(ValueError, match="URL"):
        b.ffmpeg_setup(StagedFFmpeg(binary="/x"), None)


@pytest.mark.parametrize("kind", ["existing", "session", "auto"])
def test_golden_job(kind: str, spec_validate: Validate) -> None:
    cfg = {"existing": config(pool_id="shared-pool"), "session": config(), "auto": config(auto_pool=True)}[
        kind
    ]
    setup = b.ffmpeg_setup(AptFFmpeg(), None)
    info = b.pool_info(cfg, NAMES, setup)
    job = b.job_create_options(
        job_id=NAMES.job_id(), names=NAMES, info=info, max_wall_clock=dt.timedelta(hours=6)
    )
    body = job.as_dict()
    spec_validate(body, "BatchJobCreateOptions")
    assert body["id"] == "bt-20261129t0412-1a2b3c4d-job"
    assert body["constraints"] == {"maxWallClockTime": "PT06H00M00S"}
    assert body["onAllTasksComplete"] == "noaction"  # switched to terminatejob after the last task
    assert body["metadata"][0] == {"name": "createdby", "value": "batch-transcode"}
    if kind == "existing":
        assert body["poolInfo"] == {"poolId": "shared-pool"}
    elif kind == "session":
        assert body["poolInfo"] == {"poolId": NAMES.pool_id}
    else:
        auto = body["poolInfo"]["autoPoolSpecification"]
        assert auto["poolLifetimeOption"] == "job"
        assert auto["keepAlive"] is False
        assert len(auto["autoPoolIdPrefix"]) <= 20
        assert auto["pool"]["vmSize"] == "Standard_D2s_v5"
        assert auto["pool"]["metadata"][1] == {"name": "session", "value": NAMES.session_id}
    update = b.job_terminate_when_done().as_dict()
    spec_validate(update, "BatchJobUpdateOptions")
    assert update == {"onAllTasksComplete": "terminatejob"}


def _task(
    *,
    setup: b.FFmpegSetup | None = None,
    source: str = "talks/day 1/a.mp4",
    preset: Preset = PRESETS["mp3"],
    more: Sequence[Preset] = (),
) -> bm.BatchTaskCreateOptions:
    presets = [preset, *more]
    return b.task_create_options(
        config=config(task_timeout=600, max_task_retry_count=1),
        setup=setup or b.ffmpeg_setup(StagedFFmpeg(binary="/x"), STAGED_URL),
        job_id=NAMES.job_id(),
        index=42,
        source_name=source,
        input_url="https://st.blob.core.windows.net/in/x?sig=IN",
        output_container_url="https://st.blob.core.windows.net/out?sig=OUT",
        output_blob_names=[f"talks/day 1/a.{p.extension}" for p in presets],
        presets=presets,
    )


def test_golden_task(spec_validate: Validate) -> None:
    body = _task().as_dict()
    spec_validate(body, "BatchTaskCreateOptions")
    assert body["id"] == "t000042"
    assert body["resourceFiles"] == [
        {"httpUrl": "https://st.blob.core.windows.net/in/x?sig=IN", "filePath": "input/source.mp4"}
    ]
    assert body["constraints"] == {"maxWallClockTime": "PT10M00S", "maxTaskRetryCount": 1}
    out, err, std = body["outputFiles"]
    assert out["filePattern"] == "output.mp3"
    assert out["destination"]["container"]["path"] == "talks/day 1/a.mp3"
    assert out["uploadOptions"] == {"uploadCondition": "tasksuccess"}
    assert err["filePattern"] == "../stderr.txt"
    assert err["uploadOptions"] == {"uploadCondition": "taskfailure"}
    assert (
        err["destination"]["container"]["path"]
        == ".bt-diagnostics/bt-20261129t0412-1a2b3c4d-job/t000042/stderr.txt"
    )
    assert std["filePattern"] == "../stdout.txt"
    assert body["commandLine"] == (
        '/bin/bash -c \'exec "$AZ_BATCH_NODE_SHARED_DIR/ffmpeg" -hide_banner -nostdin -loglevel error -y '
        "-i file:input/source.mp4 -vn -c:a libmp3lame -q:a 2 file:output.mp3'"
    )


HOSTILE = [
    "with space.mp4",
    'it\'s "quoted".mp4',
    "$(touch PWNED).mp4",
    "a;rm -rf x.mp4",
    "-leading-dash.mp4",
    "ünïcødé 日本.mp4",
    "new\nline.mp4",
    "noext",
    "weird.m$4",
    "x.`id`",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_never_reach_the_command_line(name: str, spec_validate: Validate) -> None:
    task = _task(source=name)
    body = task.as_dict()
    spec_validate(body, "BatchTaskCreateOptions")
    assert name not in body["commandLine"]
    input_path = body["resourceFiles"][0]["filePath"]
    assert re.fullmatch(r"input/source(\.[a-z0-9]{1,10})?", input_path)


@given(st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s))
def test_input_file_name_is_always_safe(name: str) -> None:
    assert re.fullmatch(r"input/source(\.[a-z0-9]{1,10})?", b.input_file_name(name))


@given(
    st.lists(st.text(alphabet="ab.c1-_ /\\ÄΩ", max_size=8), min_size=1, max_size=4).map("/".join)
    | st.text(max_size=30).filter(lambda s: "\x00" not in s)
)
def test_input_file_name_reads_the_suffix_as_pathlib_does(name: str) -> None:
    """The extension is read off the text (no ``PurePath`` per file): the same as
    pathlib's ``suffix``, for names with and without folders, dots and separators."""
    pure = PurePath(name).suffix[1:]
    expected = f"input/source.{pure.lower()}" if re.fullmatch(r"[A-Za-z0-9]{1,10}", pure) else "input/source"
    assert b.input_file_name(name) == expected
    assert b.input_file_name(PurePath(name)) == expected


def test_task_script_runs_in_a_real_shell(tmp_path: Path) -> None:
    """The command line, split as the node agent does and run by bash, calls ffmpeg with
    exactly the argv of the shared builder (a stand-in ffmpeg prints its arguments)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    fake = shared / "ffmpeg"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    preset = Preset.custom("mka", ["-metadata", "title=$(touch PWNED); `id` 'x'", "-c:a", "copy"])
    task = _task(source="$(touch PWNED).mp4", preset=preset)
    argv = shlex.split(task.command_line)
    proc = subprocess.run(
        argv,
        cwd=tmp_path,
        env={"AZ_BATCH_NODE_SHARED_DIR": str(shared), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.splitlines() == [
        "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", "file:input/source.mp4",
        "-metadata", "title=$(touch PWNED); `id` 'x'", "-c:a", "copy", "file:output.mka",
    ]  # fmt: skip
    assert not (tmp_path / "PWNED").exists()


def test_one_task_writes_and_uploads_every_output(spec_validate: Validate) -> None:
    body = _task(more=[PRESETS["opus"], Preset.thumbnail(at=2)]).as_dict()
    spec_validate(body, "BatchTaskCreateOptions")
    assert len(body["resourceFiles"]) == 1  # one input download for every output
    uploads = [
        (f["filePattern"], f["destination"]["container"]["path"], f["uploadOptions"]["uploadCondition"])
        for f in body["outputFiles"]
    ]
    assert uploads[:3] == [
        ("output.mp3", "talks/day 1/a.mp3", "tasksuccess"),
        ("output.opus", "talks/day 1/a.opus", "tasksuccess"),
        ("output.jpg", "talks/day 1/a.jpg", "tasksuccess"),
    ]
    assert [u[2] for u in uploads[3:]] == ["taskfailure", "taskfailure"]


def test_task_needs_one_blob_name_per_preset() -> None:
    with pytest.raises(ValueError, match="one output blob name per preset"):
        b.task_create_options(
            config=config(),
            setup=b.ffmpeg_setup(AptFFmpeg(), None),
            job_id="job",
            index=0,
            source_name="a.mp4",
            input_url="https://x/in?sig=1",
            output_container_url="https://x/out?sig=2",
            output_blob_names=["a.mp3"],
            presets=[PRESETS["mp3"], PRESETS["opus"]],
        )


def _run_on_a_fake_node(
    tmp_path: Path, ffmpeg_script: str, task: bm.BatchTaskCreateOptions
) -> subprocess.CompletedProcess[str]:
    """Run ``task``'s command line as the node agent would (split, then bash), with a
    stand-in ffmpeg (``ffmpeg_script``, a sh script) as the staged binary."""
    shared = tmp_path / "shared"
    shared.mkdir()
    fake = shared / "ffmpeg"
    fake.write_text("#!/bin/sh\n" + ffmpeg_script)
    fake.chmod(0o755)
    return subprocess.run(
        shlex.split(task.command_line),
        cwd=tmp_path,
        env={"AZ_BATCH_NODE_SHARED_DIR": str(shared), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("writes", ["all", "all but the thumbnail"])
def test_multi_output_script_fails_the_task_on_an_empty_output(tmp_path: Path, writes: str) -> None:
    """ffmpeg may exit 0 having written nothing to an output (a thumbnail past the end):
    the task then fails, naming that output, in words the failure description reads."""
    skip = "jpg" if writes != "all" else "none"
    fake = (
        'for a in "$@"; do case "$a" in file:output.*) '
        f'[ "${{a##*.}}" = {skip} ] || echo data > "${{a#file:}}";; esac; done\n'
    )
    proc = _run_on_a_fake_node(tmp_path, fake, _task(more=[PRESETS["opus"], Preset.thumbnail(at=2)]))
    if writes == "all":
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in tmp_path.glob("output.*")) == [
            "output.jpg",
            "output.mp3",
            "output.opus",
        ]
    else:
        assert proc.returncode == 1
        assert "ffmpeg wrote nothing to output #2 (jpg)" in proc.stderr


def test_a_fraction_of_the_duration_is_computed_on_the_node(tmp_path: Path) -> None:
    """The task reads the duration from ffmpeg's description of the input and passes
    fraction x duration to ``-ss``; the rest of the argv is the shared builder's."""
    fake = (
        'case "$*" in *file:output*) ;;\n'
        '  *) echo "  Duration: 00:01:40.00, start: 0.000000" >&2; exit 1;;\n'
        "esac\n"
        'for a in "$@"; do printf "%s\\n" "$a"\n'
        '  case "$a" in file:output.*) echo x > "${a#file:}";; esac\n'
        "done\n"
    )
    proc = _run_on_a_fake_node(tmp_path, fake, _task(more=[Preset.thumbnail(fraction=0.75)]))
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    # the thumbnail reads the input again, seeked there (one download, two readers)
    assert args[args.index("-ss") :][:4] == ["-ss", "75.000", "-i", "file:input/source.mp4"]
    assert args[args.index("file:output.mp3") + 1 :][:2] == ["-map", "1:v:0?"]
