"""End to end on OfflineAzure for each way of getting compute and ffmpeg, and for Entra ID."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from azure.batch import models as bm
from azure.core.credentials import AccessToken

from batch_transcode import StagedFFmpeg, TranscodeSession
from batch_transcode.testing import OfflineAzure
from helpers import MediaFactory, batch_client, session_resources, wait_until

pytestmark = pytest.mark.azure


def _convert(config: Any, inputs: list[Path], out: Path) -> tuple[Any, str]:
    with TranscodeSession(config) as session:
        report = session.convert(inputs, output_dir=out)
        return report, session.session_id


def test_staged_ffmpeg_binary_is_fetched_by_the_start_task(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, ffmpeg_exe: str
) -> None:
    # A small stand-in for a static ffmpeg build: the mechanism (upload, SAS resource
    # file, start task placing it in the shared dir, tasks calling it) is the same.
    binary = tmp_path / "ffmpeg-static"
    marker = tmp_path / "calls"
    binary.write_text(f'#!/bin/sh\necho "$*" >> "{marker}"\nexec "{ffmpeg_exe}" "$@"\n')
    binary.chmod(0o755)
    inputs = [make_media(tmp_path / "in" / f"{i}.mp4") for i in range(3)]
    report, session_id = _convert(
        offline.config(ffmpeg=StagedFFmpeg(binary=binary)), inputs, tmp_path / "out"
    )
    assert report.ok, report.summary()
    conversions = [line for line in marker.read_text().splitlines() if " -i " in f" {line} "]
    assert len(conversions) == 3, "tasks must run the staged binary"
    assert session_resources(offline, session_id)["pools"] == []


def test_auto_pool_lives_as_long_as_the_job(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / f"{i}.mp4") for i in range(3)]
    pools_before = {p.id for p in offline.batch.pools()}
    report, session_id = _convert(offline.config(auto_pool=True), inputs, tmp_path / "out")
    assert report.ok, report.summary()
    auto = [
        j
        for j in offline.batch.request_log
        if j.operation == "Jobs_CreateJob" and session_id in j.path + str(j.request_body)
    ]
    assert auto and b"autoPoolSpecification" in auto[-1].request_body
    wait_until(
        lambda: {p.id for p in offline.batch.pools()} <= pools_before, what="the auto-pool to go with its job"
    )
    assert session_resources(offline, session_id)["jobs"] == []


def test_existing_pool_is_used_and_kept(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    client = batch_client(offline.batch)
    pool = bm.BatchPoolCreateOptions(
        id="my-own-pool",
        vm_size="Standard_D2s_v5",
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(
                publisher="canonical", offer="ubuntu-24_04-lts", sku="server", version="latest"
            ),
            node_agent_sku_id="batch.node.ubuntu 24.04",
        ),
        target_dedicated_nodes=1,
        task_slots_per_node=2,
        start_task=bm.BatchStartTask(
            command_line='/bin/bash -c "apt-get update && apt-get install -y ffmpeg"',
            user_identity=bm.UserIdentity(
                auto_user=bm.AutoUserSpecification(scope="pool", elevation_level="admin")
            ),
            wait_for_success=True,
        ),
    )
    client.create_pool(pool)
    try:
        inputs = [make_media(tmp_path / "in" / f"{i}.mp4") for i in range(3)]
        report, session_id = _convert(offline.config(pool_id="my-own-pool"), inputs, tmp_path / "out")
        assert report.ok, report.summary()
        assert "my-own-pool" in [p.id for p in offline.batch.pools()], (
            "a pool the user brought is never deleted"
        )
        left = session_resources(offline, session_id)
        assert left["pools"] == [], "no session pool was made"
        assert left["jobs"] == []
    finally:
        client.begin_delete_pool("my-own-pool")
        client.close()


class _FakeEntraCredential:
    """A TokenCredential as DefaultAzureCredential would be: the emulator's TLS mode
    accepts any bearer token, so the path through Microsoft Entra ID auth is exercised."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("fake-entra-token", int(time.time()) + 3600)


def test_entra_id_bearer_tokens_over_tls(
    tmp_path: Path, make_media: MediaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OfflineAzure(tls=True) as oa:
        assert oa.ca_bundle is not None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(oa.ca_bundle))
        credential = _FakeEntraCredential()
        config = oa.config(batch_key=None, credential=credential)
        assert config.batch_key is None
        inputs = [make_media(tmp_path / "in" / f"{i}.mp4") for i in range(2)]
        report, _ = _convert(config, inputs, tmp_path / "out")
        assert report.ok, report.summary()
        assert any("batch" in s for s in credential.scopes)
        assert oa.batch.pools() == [] and oa.batch.jobs() == []
