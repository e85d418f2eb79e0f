"""A session's two Blob Storage containers: which they are, making them, removing them.

The input and output containers are named after the session
(:mod:`~batch_transcode._azure.names`) and tagged with its tags, the orphan sweep's
mark. A persistent ``input_container`` is the user's: never tagged, never removed.
Each container's delete step is pushed on the teardown stack *before* the request that
creates it (a create whose answer was lost is still cleaned up); a create the service
refused (403: a missing role) made nothing, so its delete step does nothing.
Deleting is :func:`~batch_transcode._azure.cleanup.delete_container`, the one container
delete the orphan sweep uses too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import attrs
from azure.core import exceptions as az
from azure.storage.blob import BlobServiceClient

from batch_transcode._azure._errors import azure_errors
from batch_transcode._azure.cleanup import delete_container
from batch_transcode._azure.names import SessionNames
from batch_transcode._config import AzureConfig, RetryPolicy
from batch_transcode._teardown import Teardown

__all__ = ["Containers", "create_containers", "own_containers"]

log = logging.getLogger(__name__)


@attrs.define(frozen=True, kw_only=True)
class Containers:
    """The session's input and output containers and which of them it removes."""

    input: str
    output: str
    #: The input container is the user's (``AzureConfig.input_container``): kept.
    persistent_input: bool = False
    #: The output container is kept (``AzureConfig.keep_outputs_in_storage``).
    keep_outputs: bool = False

    @classmethod
    def of(cls, config: AzureConfig, names: SessionNames) -> Containers:
        """A new session's containers, as ``config`` asks for them."""
        return cls(
            input=config.input_container if config.input_container is not None else names.input_container,
            output=names.output_container,
            persistent_input=config.input_container is not None,
            keep_outputs=config.keep_outputs_in_storage,
        )

    @property
    def owned(self) -> tuple[str, ...]:
        """The containers the session removes when it closes, in the order it made them."""
        return (
            *(() if self.persistent_input else (self.input,)),
            *(() if self.keep_outputs else (self.output,)),
        )


def own_containers(
    containers: Containers,
    blobs: BlobServiceClient,
    policy: RetryPolicy,
    teardown: Teardown,
    *,
    refused: set[str] | None = None,
) -> None:
    """Push the delete of each container the session owns on ``teardown`` (skipping the
    names in ``refused``: creates the service refused, which made nothing)."""
    if containers.keep_outputs:
        log.info("keep_outputs_in_storage=True: container %s will be kept", containers.output)
    for name in containers.owned:

        def delete(name: str = name) -> None:
            if refused is not None and name in refused:
                log.debug("container %s was never created (the service refused it)", name)
                return
            delete_container(blobs, name, policy)

        teardown.push(f"container {name}", delete)


def create_containers(
    containers: Containers,
    blobs: BlobServiceClient,
    names: SessionNames,
    policy: RetryPolicy,
    teardown: Teardown,
) -> None:
    """Create the session's containers, their delete steps on ``teardown`` first."""
    refused: set[str] = set()
    own_containers(containers, blobs, policy, teardown, refused=refused)
    todo: list[tuple[str, Mapping[str, str], bool]] = [(containers.output, names.tags, False)]
    if containers.persistent_input:
        todo.insert(0, (containers.input, {"purpose": "batch-transcode inputs"}, True))
    else:
        todo.insert(0, (containers.input, names.tags, False))
    with azure_errors("create the storage containers"):
        for n, (name, tags, exist_ok) in enumerate(todo):
            try:
                _create(blobs, name, tags, names.session_id, exist_ok=exist_ok)
            except az.HttpResponseError as exc:
                if exc.status_code == 403:  # a missing role: what was not made is not to delete
                    refused.update(other for other, _, _ in todo[n:])
                raise


def _create(
    blobs: BlobServiceClient, name: str, tags: Mapping[str, str], session_id: str, *, exist_ok: bool
) -> None:
    try:
        blobs.create_container(name, metadata=dict(tags))
        log.info("container %s created", name)
    except az.ResourceExistsError:
        if not exist_ok:
            # a retried create whose first answer was lost: ours if it carries our session
            props = blobs.get_container_client(name).get_container_properties()
            if (props.metadata or {}).get("session") != session_id:
                raise
        log.info("container %s already exists", name)
