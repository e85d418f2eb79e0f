"""The job manifest: what a job converts, kept in Blob Storage so that another process
can attach to the job after the one that submitted it is gone.

One JSON blob per job, ``.bt-manifest/<job id>.json`` in the session's output
container, written before the job is created. It holds ids, container names, the
preset and, per file, its index (the task id), source path and relative output
path: never a SAS token, key or URL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset

if TYPE_CHECKING:
    from batch_transcode._azure.backend import AzureBackend

__all__ = [
    "MANIFEST_PREFIX",
    "Manifest",
    "ManifestFile",
    "manifest_blob_name",
    "manifest_for",
    "write_manifest",
]

#: Where job manifests live in the output container.
MANIFEST_PREFIX = ".bt-manifest/"
#: Version of the manifest format; a reader refuses versions it does not know.
FORMAT = 1


def manifest_blob_name(job_id: str) -> str:
    return f"{MANIFEST_PREFIX}{job_id}.json"


@attrs.define(frozen=True, kw_only=True)
class ManifestFile:
    index: int
    source: str
    relative_source: str
    relative_output: str


@attrs.define(frozen=True, kw_only=True)
class Manifest:
    """One job of a session, as submitted."""

    session_id: str
    job_id: str
    created_at: dt.datetime
    deadline: dt.datetime
    #: The pool the job runs on (None: an auto-pool, whose lifetime is the job's).
    pool_id: str | None
    #: Whether the session created that pool and removes it when it closes.
    delete_pool: bool
    input_container: str
    delete_input_container: bool
    output_container: str
    delete_output_container: bool
    preset: Preset
    files: tuple[ManifestFile, ...]

    def work_items(self, output_dir: Path) -> list[WorkItem]:
        """The job's files with their outputs under ``output_dir`` (the inputs' layout)."""
        root = output_dir.absolute()
        return [
            WorkItem(
                index=f.index,
                source=Path(f.source),
                output=root.joinpath(*f.relative_output.split("/")),
                relative_output=f.relative_output,
                relative_source=f.relative_source,
            )
            for f in self.files
        ]

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "format": FORMAT,
            "session_id": self.session_id,
            "job_id": self.job_id,
            "created_at": self.created_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "pool_id": self.pool_id,
            "delete_pool": self.delete_pool,
            "input_container": self.input_container,
            "delete_input_container": self.delete_input_container,
            "output_container": self.output_container,
            "delete_output_container": self.delete_output_container,
            "preset": {
                "name": self.preset.name,
                "extension": self.preset.extension,
                "args": list(self.preset.args),
                "audio_only": self.preset.audio_only,
            },
            "files": [attrs.asdict(f) for f in self.files],
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a manifest; ``ValueError`` if it is not one this version can read."""
        try:
            body = json.loads(data.decode("utf-8"))
            if body.get("format") != FORMAT:
                raise ValueError(f"unknown manifest format {body.get('format')!r}")
            preset = body["preset"]
            return cls(
                session_id=str(body["session_id"]),
                job_id=str(body["job_id"]),
                created_at=dt.datetime.fromisoformat(body["created_at"]),
                deadline=dt.datetime.fromisoformat(body["deadline"]),
                pool_id=body["pool_id"],
                delete_pool=bool(body["delete_pool"]),
                input_container=str(body["input_container"]),
                delete_input_container=bool(body["delete_input_container"]),
                output_container=str(body["output_container"]),
                delete_output_container=bool(body["delete_output_container"]),
                preset=Preset(
                    name=str(preset["name"]),
                    extension=str(preset["extension"]),
                    args=[str(a) for a in preset["args"]],
                    audio_only=bool(preset["audio_only"]),
                ),
                files=tuple(
                    ManifestFile(
                        index=int(f["index"]),
                        source=str(f["source"]),
                        relative_source=str(f["relative_source"]),
                        relative_output=str(f["relative_output"]),
                    )
                    for f in body["files"]
                ),
            )
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a job manifest: {exc}") from exc


class _ManifestStaging(Protocol):
    def write_output_blob(self, blob_name: str, data: bytes) -> None: ...


def manifest_for(backend: AzureBackend, job_id: str, items: Sequence[WorkItem], preset: Preset) -> Manifest:
    """The manifest of a job ``backend`` is about to create."""
    names = backend.session_names
    config = backend.config
    staging: Any = backend.staging
    return Manifest(
        session_id=names.session_id,
        job_id=job_id,
        created_at=names.created_at,
        deadline=backend._deadline_utc,
        pool_id=backend.pool_id,
        delete_pool=config.pool_id is None and not config.auto_pool and not config.keep_pool,
        input_container=str(staging.input_container_name),
        delete_input_container=not staging.persistent_input,
        output_container=str(staging.output_container_name),
        delete_output_container=not config.keep_outputs_in_storage,
        preset=preset,
        files=tuple(
            ManifestFile(
                index=i.index,
                source=str(i.source),
                relative_source=i.relative_source,
                relative_output=i.relative_output,
            )
            for i in items
        ),
    )


def write_manifest(staging: _ManifestStaging, manifest: Manifest) -> None:
    staging.write_output_blob(manifest_blob_name(manifest.job_id), manifest.to_json())
