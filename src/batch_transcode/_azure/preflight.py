"""Checks made before anything billable exists.

:func:`check_image_support` asks the account which images it supports (List Supported
Images) and holds the configured image and node agent against the answer, before a
pool is created. Retired images and node agents are the most common reason a Batch
sample stops working: the service drops an image from the list once its Batch support
ends ("batchSupportEndOfLife: the time when the Azure Batch service will stop accepting
create Pool requests for the Image", REST reference, BatchSupportedImage), and creating
a pool from it fails or leaves a pool that never gets nodes. An unsupported image, a
wrong node agent or an ended support raise :class:`ConfigError` naming a supported
alternative; support ending within :data:`NEAR_END_OF_LIFE` is logged at WARNING.

:func:`spot_note` and :func:`resize_error_advice` say in words what a pool asking for
Spot nodes can expect: Spot nodes are allocated only in Batch accounts in user
subscription pool allocation mode; low-priority nodes of Batch-service accounts (the
default kind) were retired on 30 September 2025
(https://learn.microsoft.com/azure/batch/batch-spot-vms).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence

import attrs
from azure.batch import BatchClient
from azure.batch import models as bm

from batch_transcode._azure._calls import call
from batch_transcode._config import DEFAULT_IMAGE, DEFAULT_NODE_AGENT, AzureConfig
from batch_transcode._errors import ConfigError

__all__ = [
    "NEAR_END_OF_LIFE",
    "SPOT_QUOTA_CODES",
    "SupportedImage",
    "check_image",
    "check_image_support",
    "resize_error_advice",
    "spot_note",
    "supported_images",
]

log = logging.getLogger(__name__)

#: Support ending sooner than this after now is logged at WARNING.
NEAR_END_OF_LIFE = dt.timedelta(days=180)

#: Resize error codes that mean "no Spot (low-priority) cores for this account".
SPOT_QUOTA_CODES = frozenset({"AccountLowPriorityCoreQuotaReached", "AccountSpotCoreQuotaReached"})


@attrs.define(frozen=True, kw_only=True)
class SupportedImage:
    """One entry of List Supported Images."""

    publisher: str
    offer: str
    sku: str
    node_agent: str
    os_type: str = "linux"
    verified: bool = True
    end_of_life: dt.datetime | None = None

    @property
    def image(self) -> tuple[str, str, str]:
        return (self.publisher, self.offer, self.sku)

    def same_image(self, image: tuple[str, str, str]) -> bool:
        return tuple(part.lower() for part in self.image) == tuple(part.lower() for part in image)

    def describe(self) -> str:
        return f"{'/'.join(self.image)} (node agent {self.node_agent!r})"

    def as_config(self) -> str:
        return f"AzureConfig(image={self.image!r}, node_agent_sku={self.node_agent!r})"


def _text(value: object, default: str) -> str:
    """An enum member of the azure-batch models (or a plain string) as its lower-case value."""
    if value is None:
        return default
    return str(getattr(value, "value", value)).lower()


def supported_images(config: AzureConfig, batch: BatchClient) -> list[SupportedImage]:
    """The account's supported marketplace images (one List Supported Images walk)."""

    def fetch() -> list[bm.BatchSupportedImage]:
        return list(batch.list_supported_images())

    out: list[SupportedImage] = []
    for item in call(config.retry, "list the supported images", fetch):
        ref = item.image_reference
        if ref is None or not (ref.publisher and ref.offer and ref.sku) or not item.node_agent_sku_id:
            continue  # image-id entries cannot match a marketplace image
        end = item.batch_support_end_of_life
        if end is not None and end.tzinfo is None:
            end = end.replace(tzinfo=dt.UTC)
        out.append(
            SupportedImage(
                publisher=ref.publisher,
                offer=ref.offer,
                sku=ref.sku,
                node_agent=item.node_agent_sku_id,
                os_type=_text(item.os_type, "linux"),
                verified=_text(item.verification_type, "verified") == "verified",
                end_of_life=end,
            )
        )
    return out


def _alternative(images: Sequence[SupportedImage], os_type: str, now: dt.datetime) -> SupportedImage | None:
    """The supported image to suggest: the library's default when listed, else a verified
    image of the same OS whose support lasts longest."""
    lasting = [
        i
        for i in images
        if i.os_type == os_type and (i.end_of_life is None or i.end_of_life - now > NEAR_END_OF_LIFE)
    ]
    for image in lasting:
        if image.same_image(DEFAULT_IMAGE) and image.node_agent.lower() == DEFAULT_NODE_AGENT:
            return image
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    ranked = sorted(lasting, key=lambda i: (i.verified, i.end_of_life or far), reverse=True)
    return ranked[0] if ranked else None


def _use_instead(images: Sequence[SupportedImage], os_type: str, now: dt.datetime) -> str:
    alternative = _alternative(images, os_type, now)
    if alternative is None:
        return "choose one that List Supported Images returns for this account"
    return f"use {alternative.describe()}: {alternative.as_config()}"


def check_image(
    image: tuple[str, str, str], node_agent: str, images: Iterable[SupportedImage], now: dt.datetime
) -> SupportedImage:
    """The supported entry of ``image`` with ``node_agent``; :class:`ConfigError` if there is
    none or its Batch support ended (WARNING if it ends within :data:`NEAR_END_OF_LIFE`)."""
    listed = list(images)
    wanted = "/".join(image)
    matches = [i for i in listed if i.same_image(image)]
    if not matches:
        os_type = "windows" if "windows" in node_agent.lower() else "linux"
        raise ConfigError(
            f"image {wanted} is not among this Batch account's supported images (retired images "
            f"and node agents are removed from the list, and pools made from them fail); "
            f"{_use_instead(listed, os_type, now)}"
        )
    match = next((i for i in matches if i.node_agent.lower() == node_agent.lower()), None)
    if match is None:
        agents = ", ".join(sorted({repr(i.node_agent) for i in matches}))
        raise ConfigError(
            f"image {wanted} runs node agent {agents}, not {node_agent!r}; "
            f"pass AzureConfig(node_agent_sku={matches[0].node_agent!r})"
        )
    end = match.end_of_life
    if end is not None and end <= now:
        raise ConfigError(
            f"Batch support for image {match.describe()} ended on {end:%Y-%m-%d}: the service no "
            f"longer accepts pools made from it; {_use_instead(listed, match.os_type, now)}"
        )
    if end is not None and end - now <= NEAR_END_OF_LIFE:
        alternative = _alternative(listed, match.os_type, now)
        log.warning(
            "Batch support for image %s ends on %s (in %d days); after that the service no longer "
            "accepts pools made from it%s",
            match.describe(),
            f"{end:%Y-%m-%d}",
            (end - now).days,
            f": move to {alternative.describe()}" if alternative is not None else "",
        )
    return match


def check_image_support(config: AzureConfig, batch: BatchClient, now: dt.datetime | None = None) -> None:
    """:func:`check_image` of the configured image against the account's list."""
    check_image(
        config.image,
        config.node_agent_sku,
        supported_images(config, batch),
        now if now is not None else dt.datetime.now(dt.UTC),
    )


def spot_note(config: AzureConfig) -> str | None:
    """What to know before asking for Spot nodes, or None when the pool asks for none."""
    if config.spot_nodes <= 0 or config.autoscale:
        return None
    return (
        f"spot_nodes={config.spot_nodes}: Spot nodes are allocated only in Batch accounts in user "
        "subscription pool allocation mode; a Batch-service account (the default kind) gets none "
        "(its low-priority nodes were retired on 30 September 2025)"
        + ("" if config.dedicated_nodes else ", so this pool would get no nodes at all there")
    )


def resize_error_advice(code: str | None) -> str:
    """What to do about a pool's resize error ``code`` (the end of an error message)."""
    if code in SPOT_QUOTA_CODES:
        return (
            "Spot nodes need a Batch account in user subscription pool allocation mode (a "
            "Batch-service account gets no Spot nodes since 30 September 2025), and Spot core "
            "quota there; use dedicated_nodes instead of spot_nodes, or such an account (docs/azure.md)"
        )
    return "Check the account's core quotas for the VM size (docs/azure.md) or choose another vm_size"
