"""Image preflight and Spot words, on the emulator's List Supported Images and account modes."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_transcode import ConfigError, ProvisioningError, TranscodeSession
from batch_transcode._azure._clients import make_batch_client
from batch_transcode._azure.preflight import (
    SupportedImage,
    check_image,
    resize_error_advice,
    spot_note,
    supported_images,
)
from batch_transcode._config import DEFAULT_IMAGE, DEFAULT_NODE_AGENT
from batch_transcode.testing import OfflineAzure
from helpers import NOTHING_LEFT, MediaFactory

pytestmark = pytest.mark.azure

FOCAL = ("canonical", "0001-com-ubuntu-server-focal", "20_04-lts")  # retired with its agent, 2025-04-23
JAMMY = ("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts")  # Batch support ends 2027-06-30
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def images(offline: OfflineAzure) -> list[SupportedImage]:
    config = offline.config()
    batch = make_batch_client(config)
    try:
        return supported_images(config, batch)
    finally:
        batch.close()


def test_the_default_image_is_supported_without_a_warning(
    images: list[SupportedImage], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="batch_transcode"):
        entry = check_image(DEFAULT_IMAGE, DEFAULT_NODE_AGENT, images, NOW)
    assert (entry.image, entry.node_agent, entry.end_of_life) == (DEFAULT_IMAGE, DEFAULT_NODE_AGENT, None)
    assert caplog.records == []


def test_a_retired_image_is_refused_naming_a_supported_alternative(images: list[SupportedImage]) -> None:
    with pytest.raises(ConfigError) as info:
        check_image(FOCAL, "batch.node.ubuntu 20.04", images, NOW)
    text = str(info.value)
    assert "0001-com-ubuntu-server-focal/20_04-lts is not among this Batch account's supported images" in text
    suggested = "image=('canonical', 'ubuntu-24_04-lts', 'server'), node_agent_sku='batch.node.ubuntu 24.04'"
    assert f"AzureConfig({suggested})" in text


def test_support_ending_soon_is_a_warning_and_ended_support_an_error(
    images: list[SupportedImage], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="batch_transcode"):
        entry = check_image(JAMMY, "batch.node.ubuntu 22.04", images, dt.datetime(2027, 2, 1, tzinfo=dt.UTC))
    assert entry.end_of_life == dt.datetime(2027, 6, 30, tzinfo=dt.UTC)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "ends on 2027-06-30 (in 149 days)" in message
    assert "ubuntu-24_04-lts/server" in message
    # half a year earlier it is not near yet
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="batch_transcode"):
        check_image(JAMMY, "batch.node.ubuntu 22.04", images, NOW - dt.timedelta(days=60))
    assert caplog.records == []
    with pytest.raises(ConfigError, match=r"ended on 2027-06-30.*ubuntu-24_04-lts"):
        check_image(JAMMY, "batch.node.ubuntu 22.04", images, dt.datetime(2027, 7, 1, tzinfo=dt.UTC))


def test_the_wrong_node_agent_is_refused_naming_the_right_one(images: list[SupportedImage]) -> None:
    with pytest.raises(ConfigError, match=r"pass AzureConfig\(node_agent_sku='batch.node.ubuntu 22.04'\)"):
        check_image(JAMMY, "batch.node.ubuntu 24.04", images, NOW)


def test_a_session_with_a_retired_image_stops_before_anything_exists(offline: OfflineAzure) -> None:
    before = len(offline.batch.request_log)
    config = offline.config(image=FOCAL, node_agent_sku="batch.node.ubuntu 20.04")
    with pytest.raises(ConfigError, match="ubuntu-24_04-lts"), TranscodeSession(config):
        pass
    ops = [r.operation for r in offline.batch.request_log[before:]]
    assert ops == ["Pools_ListPools", "Pools_ListSupportedImages"]
    assert offline.leaks() == NOTHING_LEFT


def test_auto_pool_sessions_are_checked_too(offline: OfflineAzure) -> None:
    config = offline.config(image=FOCAL, node_agent_sku="batch.node.ubuntu 20.04", auto_pool=True)
    with pytest.raises(ConfigError), TranscodeSession(config):
        pass
    assert offline.leaks() == NOTHING_LEFT


def test_spot_words() -> None:
    assert resize_error_advice("AllocationFailed").startswith("Check the account's core quotas")
    assert "user subscription pool allocation mode" in resize_error_advice(
        "AccountLowPriorityCoreQuotaReached"
    )


@pytest.fixture
def batch_service_account(offline: OfflineAzure) -> Iterator[OfflineAzure]:
    """The offline account as the default kind of Batch account: no Spot nodes."""
    offline.batch.set_pool_allocation_mode("BatchService")
    try:
        yield offline
    finally:
        offline.batch.set_pool_allocation_mode("UserSubscription")


def test_spot_only_pool_in_a_batch_service_account_says_why(
    batch_service_account: OfflineAzure,
    tmp_path: Path,
    make_media: MediaFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = batch_service_account.config(dedicated_nodes=0, spot_nodes=2)
    note = spot_note(config)
    assert note is not None
    assert "so this pool would get no nodes at all there" in note
    clip = make_media(tmp_path / "in" / "clip.mp4")
    with (
        caplog.at_level(logging.WARNING, logger="batch_transcode"),
        pytest.raises(ProvisioningError) as info,
        TranscodeSession(config) as session,
    ):
        session.convert([clip], output_dir=tmp_path / "out")
    assert info.value.code == "AccountLowPriorityCoreQuotaReached"
    assert "Spot nodes need a Batch account in user subscription pool allocation mode" in str(info.value)
    # said at pool creation, before the pool was waited on
    assert any("Spot nodes are allocated only in Batch accounts" in r.getMessage() for r in caplog.records)
    assert batch_service_account.leaks(timeout=30) == NOTHING_LEFT


def test_no_spot_note_without_spot_nodes(offline: OfflineAzure) -> None:
    assert spot_note(offline.config(dedicated_nodes=1, spot_nodes=0)) is None
    mixed = spot_note(offline.config(dedicated_nodes=1, spot_nodes=1))
    assert mixed is not None
    assert "no nodes at all" not in mixed
