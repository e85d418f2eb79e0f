"""Keyless Azure on ``OfflineAzure(entra_id=True)``: Microsoft Entra ID tokens only, no
key or connection string anywhere; missing roles; node identities with no SAS at all."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob import BlobServiceClient

from batch_transcode import AuthenticationError, AzureConfig, ConfigError, TranscodeSession
from batch_transcode._azure import builders
from batch_transcode._azure._clients import make_batch_client, make_blob_service_client
from batch_transcode._azure.cleanup import find_orphans, remove_orphans
from batch_transcode._errors import SessionStateError
from batch_transcode._presets import PRESETS
from batch_transcode.testing import OfflineAzure
from batch_transcode.testing._azurite import AZURITE_KEY
from batch_transcode.testing._entra import STORAGE_AUDIENCE, make_token
from helpers import NOTHING_LEFT, MediaFactory, azure_config, batch_client, wait_until

pytestmark = pytest.mark.azure

IDENTITY = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/media"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/transcode-nodes"
)
OTHER_IDENTITY = IDENTITY.replace("transcode-nodes", "someone-else")
SECRET_VARIABLES = ("AZURE_BATCH_ACCESS_KEY", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY")


@pytest.fixture(scope="module")
def entra() -> Iterator[OfflineAzure]:
    with OfflineAzure(entra_id=True) as oa:
        yield oa


def _batch(oa: OfflineAzure, credential: Any) -> BatchClient:
    return BatchClient(oa.batch.endpoint, credential, connection_verify=str(oa.ca_bundle), retry_total=0)


class _StorageTokens:
    """A credential that answers every scope with a storage token."""

    def __init__(self, principal: str) -> None:
        self.principal = principal

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(*make_token(STORAGE_AUDIENCE, oid=self.principal))


# -- the harness ----------------------------------------------------------------------------


def test_the_harness_has_no_key_anywhere(entra: OfflineAzure) -> None:
    env = entra.env
    assert not set(SECRET_VARIABLES) & set(env)
    assert env["AZURE_BATCH_ENDPOINT"].startswith("https://")
    assert env["AZURE_STORAGE_ENDPOINT"].startswith("https://")
    config = entra.config()
    assert config.batch_key is None and config.storage_key is None
    assert config.storage_connection_string is None
    assert config.credential is entra.credential and config.batch_key is None
    with pytest.raises(SessionStateError, match="no connection string"):
        _ = entra.storage_connection_string


def test_both_services_take_tokens_and_refuse_keys(entra: OfflineAzure) -> None:
    with _batch(entra, entra.credential) as batch:
        assert list(batch.list_pools()) == []
    with (
        batch_client(entra.batch, connection_verify=str(entra.ca_bundle), retry_total=0) as keyed,
        pytest.raises(ClientAuthenticationError, match="Shared Key authentication is disabled"),
    ):
        list(keyed.list_pools())
    # a storage token is not a Batch token
    with (
        _batch(entra, _StorageTokens(entra.credential.principal_id)) as batch,
        pytest.raises(ClientAuthenticationError, match="audience"),
    ):
        list(batch.list_pools())

    blobs = entra.blob_service_client()
    blobs.create_container("keyless-probe")
    try:
        keyed_blobs = BlobServiceClient(
            entra.blob_endpoint,
            credential={"account_name": "devstoreaccount1", "account_key": AZURITE_KEY},
            connection_verify=str(entra.ca_bundle),
            retry_total=0,
        )
        with pytest.raises(HttpResponseError) as refused:
            keyed_blobs.get_container_client("keyless-probe").get_container_properties()
        assert refused.value.error_code == "KeyBasedAuthenticationNotPermitted"
        keyed_blobs.close()
    finally:
        blobs.delete_container("keyless-probe")


# -- the whole Azure path keyless ----------------------------------------------------------


def test_submit_and_convert_keyless_end_to_end(
    entra: OfflineAzure,
    tmp_path: Path,
    make_media: MediaFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    inputs = [make_media(tmp_path / "in" / f"clip {i}.mp4") for i in range(4)]
    config = entra.config()
    assert entra.storage_proxy is not None
    refused = entra.storage_proxy.refused
    with TranscodeSession(config) as session:
        job = session.submit(inputs[:2], output_dir=tmp_path / "out")
        first = job.wait()
        second = session.convert(inputs[2:], output_dir=tmp_path / "out")
    assert first.ok and second.ok, (first.summary(), second.summary())
    assert all(r.output is not None and r.output.stat().st_size > 0 for r in [*first, *second])
    assert entra.storage_proxy.refused == refused, "every storage request was keyless"
    assert not {n for n in SECRET_VARIABLES if os.environ.get(n)}
    assert entra.leaks(timeout=30) == NOTHING_LEFT


# -- missing roles -------------------------------------------------------------------------


def _billable(oa: OfflineAzure) -> tuple[list[str], list[str]]:
    return [p.id for p in oa.batch.pools()], [j.id for j in oa.batch.jobs()]


@pytest.mark.parametrize(
    ("role", "code", "scope"),
    [
        ("Storage Blob Data Contributor", "AuthorizationPermissionMismatch", "storage account"),
        ("Azure Batch Data Contributor", "AuthorizationFailure", "Batch account"),
    ],
)
def test_a_missing_role_is_named_before_anything_billable_exists(
    entra: OfflineAzure,
    tmp_path: Path,
    make_media: MediaFactory,
    caplog: pytest.LogCaptureFixture,
    role: str,
    code: str,
    scope: str,
) -> None:
    principal = entra.credential.principal_id
    entra.roles.revoke(principal, role)
    try:
        inputs = [make_media(tmp_path / "in" / "a.mp4")]
        with pytest.raises(AuthenticationError) as caught, TranscodeSession(entra.config()) as session:
            session.convert(inputs, output_dir=tmp_path / "out")
    finally:
        entra.roles.grant(principal, role)
    message = str(caught.value)
    assert caught.value.code == code
    assert f"grant it the {role} role on the {scope}" in message
    assert _billable(entra) == ([], [])
    # containers whose create was refused are not reported as left behind
    assert not [r.getMessage() for r in caplog.records if "teardown" in r.getMessage()]
    assert entra.leaks(timeout=30) == NOTHING_LEFT


# -- node identities: no SAS at all --------------------------------------------------------


@pytest.fixture
def identity_pool(entra: OfflineAzure) -> Iterator[str]:
    pool_id = f"mi-pool-{int(time.monotonic() * 1000) % 100000}"
    entra.add_pool(pool_id, identities=[IDENTITY])
    entra.roles.grant(entra.identity_principal(IDENTITY), "Storage Blob Data Contributor")
    yield pool_id
    entra.roles.revoke(entra.identity_principal(IDENTITY))
    with _batch(entra, entra.credential) as batch:
        batch.begin_delete_pool(pool_id)
    entra.leaks(timeout=30)


def _task_bodies(oa: OfflineAzure, since: int) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    for record in oa.batch.request_log[since:]:
        if record.operation == "Tasks_CreateTaskCollection" and record.status == 200:
            bodies += json.loads(record.request_body)["value"]
    return bodies


def test_node_identity_end_to_end_without_any_sas(
    entra: OfflineAzure, identity_pool: str, tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / name) for name in ("it's.mp4", "a b.mp4", "c.mp4")]
    before = len(entra.batch.request_log)
    with TranscodeSession(entra.config(pool_id=identity_pool, node_identity=IDENTITY)) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    assert report.ok, report.summary()
    bodies = _task_bodies(entra, before)
    assert len(bodies) == len(inputs)
    for body in bodies:
        text = json.dumps(body)
        assert "sig=" not in text and "?" not in body["resourceFiles"][0]["httpUrl"]
        assert body["resourceFiles"][0]["identityReference"] == {"resourceId": IDENTITY}
        for output in body["outputFiles"]:
            assert output["destination"]["container"]["identityReference"] == {"resourceId": IDENTITY}
    assert identity_pool in _billable(entra)[0], "the user's pool is kept"
    left = entra.leaks()
    assert left["jobs"] == [] and left["containers"] == []


def test_node_identity_the_pool_lacks_is_refused_before_any_task(
    entra: OfflineAzure, identity_pool: str, tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / "a.mp4")]
    with (
        pytest.raises(ConfigError, match="does not have the user-assigned identity"),
        TranscodeSession(entra.config(pool_id=identity_pool, node_identity=OTHER_IDENTITY)) as session,
    ):
        session.convert(inputs, output_dir=tmp_path / "out")
    assert _billable(entra)[1] == []


def test_the_emulator_fails_a_task_whose_identity_its_pool_lacks(
    entra: OfflineAzure, identity_pool: str
) -> None:
    with _batch(entra, entra.credential) as batch:
        job_id = "identity-check"
        batch.create_job(
            bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=identity_pool))
        )
        try:
            url = f"{entra.blob_endpoint}/nowhere/input.mp4"
            batch.create_task(
                job_id,
                bm.BatchTaskCreateOptions(
                    id="t1",
                    command_line="/bin/true",
                    resource_files=[
                        bm.ResourceFile(
                            http_url=url,
                            file_path="in.mp4",
                            identity_reference=bm.BatchNodeIdentityReference(resource_id=OTHER_IDENTITY),
                        )
                    ],
                ),
            )
            deadline = time.monotonic() + 30
            task = batch.get_task(job_id, "t1")
            while task.state != "completed" and time.monotonic() < deadline:
                time.sleep(0.1)
                task = batch.get_task(job_id, "t1")
        finally:
            batch.begin_delete_job(job_id)
    info = task.execution_info
    assert info is not None and info.failure_info is not None
    assert info.failure_info.code == "UserAssignedIdentityNotFound"


def test_node_identity_without_a_storage_role_fails_the_tasks(
    entra: OfflineAzure, identity_pool: str, tmp_path: Path, make_media: MediaFactory
) -> None:
    entra.roles.revoke(entra.identity_principal(IDENTITY))
    inputs = [make_media(tmp_path / "in" / "a.mp4")]
    with TranscodeSession(
        entra.config(pool_id=identity_pool, node_identity=IDENTITY, max_task_retry_count=0)
    ) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    assert not report.ok
    assert "BlobAccessDenied" in str(report.failed[0].error), report.failed[0].error


def test_node_identity_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs pool_id"):
        AzureConfig(
            batch_endpoint="https://acct.westeurope.batch.azure.com",
            storage_account="mystore",
            node_identity=IDENTITY,
        )
    with pytest.raises(ConfigError, match="ARM resource id"):
        AzureConfig(
            batch_endpoint="https://acct.westeurope.batch.azure.com",
            storage_account="mystore",
            pool_id="p",
            node_identity="transcode-nodes",
        )


# -- attach and cleanup after a crash, keyless ---------------------------------------------

CHILD = """
import os, sys
from pathlib import Path
from batch_transcode import AzureConfig, StagedFFmpeg, TranscodeSession
from batch_transcode.testing import OfflineCredential

ffmpeg, out, *paths = sys.argv[1:]
config = AzureConfig.from_env(
    credential=OfflineCredential(os.environ["TEST_PRINCIPAL_ID"]),
    ca_bundle=os.environ["REQUESTS_CA_BUNDLE"],
    dedicated_nodes=1, task_slots_per_node=1, poll_interval=0.2, poll_interval_max=0.5,
    ffmpeg=StagedFFmpeg(binary=Path(ffmpeg)),
)
with TranscodeSession(config) as session:
    session.convert(paths, output_dir=out)
print("the child was not stopped")
"""


def _crash_mid_run(oa: OfflineAzure, tmp_path: Path, inputs: list[Path], ffmpeg_exe: str) -> str:
    """A keyless child process converts ``inputs``; its ffmpeg holds every file until
    ``tmp_path/gate`` exists; SIGKILL it once its tasks run. Return its job id."""
    gate = tmp_path / "gate"
    wrapper = tmp_path / "ffmpeg-gated"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -i "*) while [ ! -e "{gate}" ]; do sleep 0.05; done;; esac\n'
        f'exec "{ffmpeg_exe}" "$@"\n'
    )
    wrapper.chmod(0o755)
    script = tmp_path / "submit.py"
    script.write_text(CHILD)
    jobs_before = {j.id for j in oa.batch.jobs()}
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    env.update(oa.env, TEST_PRINCIPAL_ID=oa.credential.principal_id)
    with (tmp_path / "child.log").open("w") as log:
        child = subprocess.Popen(
            [sys.executable, str(script), str(wrapper), str(tmp_path / "child-out"), *map(str, inputs)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def running() -> bool:
                if child.poll() is not None:
                    raise AssertionError(f"the child exited early:\n{(tmp_path / 'child.log').read_text()}")
                new = [j.id for j in oa.batch.jobs() if j.id not in jobs_before]
                tasks = oa.batch.tasks(new[0]) if new else []
                return len(tasks) == len(inputs) and any(t.state == "running" for t in tasks)

            wait_until(running, what="the child's tasks to run", timeout=120)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
    (job_id,) = [j.id for j in oa.batch.jobs() if j.id not in jobs_before]
    gate.touch()
    return job_id


def test_attach_after_a_crash_keyless(
    entra: OfflineAzure, tmp_path: Path, make_media: MediaFactory, ffmpeg_exe: str
) -> None:
    inputs = [make_media(tmp_path / "in" / f"talk {i}.mp4") for i in range(3)]
    job_id = _crash_mid_run(entra, tmp_path, inputs, ffmpeg_exe)
    with TranscodeSession.attach(job_id, entra.config(), output_dir=tmp_path / "out") as job:
        report = job.wait()
    assert report.ok, report.summary()
    assert [r.output for r in report] == [(tmp_path / "out" / f"talk {i}.mp3").absolute() for i in range(3)]
    assert entra.leaks(timeout=30) == NOTHING_LEFT


def test_cleanup_after_a_crash_keyless(
    entra: OfflineAzure, tmp_path: Path, make_media: MediaFactory, ffmpeg_exe: str
) -> None:
    inputs = [make_media(tmp_path / "in" / f"talk {i}.mp4") for i in range(2)]
    job_id = _crash_mid_run(entra, tmp_path, inputs, ffmpeg_exe)
    session_id = job_id[: -len("-job")]
    config = entra.config()
    batch = make_batch_client(config)
    blobs, key = make_blob_service_client(config)
    assert key is None
    with batch, blobs:
        orphans = find_orphans(batch, blobs, older_than=dt.timedelta(0), session=session_id)
        assert {o.kind for o in orphans} == {"job", "pool", "container"}
        assert remove_orphans(orphans, batch, blobs, config.retry) == []
    assert entra.leaks(timeout=30) == NOTHING_LEFT


def test_task_with_node_identity_matches_the_spec(spec_validate: Any) -> None:
    config = azure_config(pool_id="transcode-pool", node_identity=IDENTITY)
    task: bm.BatchTaskCreateOptions = builders.task_create_options(
        config=config,
        setup=builders.ffmpeg_setup(config.ffmpeg, None),
        job_id="bt-job",
        index=7,
        source_name="a b.mp4",
        input_url="https://st.blob.core.windows.net/in/inputs/a%20b.mp4",
        output_container_url="https://st.blob.core.windows.net/out",
        output_blob_names=["outputs/a b.mp3"],
        presets=[PRESETS["mp3"]],
    )
    body = task.as_dict()
    spec_validate(body, "BatchTaskCreateOptions")
    reference = {"resourceId": IDENTITY}
    assert body["resourceFiles"] == [
        {
            "httpUrl": "https://st.blob.core.windows.net/in/inputs/a%20b.mp4",
            "filePath": "input/source.mp4",
            "identityReference": reference,
        }
    ]
    assert [o["destination"]["container"]["identityReference"] for o in body["outputFiles"]] == [
        reference
    ] * 3
    assert "sig=" not in str(body)
    # without a node identity there is no identityReference at all
    plain = builders.task_create_options(
        config=azure_config(),
        setup=builders.ffmpeg_setup(config.ffmpeg, None),
        job_id="bt-job",
        index=7,
        source_name="a b.mp4",
        input_url="https://st.blob.core.windows.net/in/x?sig=IN",
        output_container_url="https://st.blob.core.windows.net/out?sig=OUT",
        output_blob_names=["outputs/a b.mp3"],
        presets=[PRESETS["mp3"]],
    ).as_dict()
    assert "identityReference" not in str(plain)
