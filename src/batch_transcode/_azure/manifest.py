"""The job manifest: what a job converts, kept in Blob Storage so that another process
can attach to the job after the one that submitted it is gone.

One JSON blob per job, ``.bt-manifest/<job id>.json`` in the session's output
container, written before the job is created. It holds ids, container names, the
presets and, per file, its index (the task id), source path and relative output
paths and the quality metrics its tasks measure: never a SAS token, key or URL.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import attrs

from batch_transcode._azure import names
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._quality import Metric, parse_metrics

__all__ = ["Manifest", "ManifestFile"]

#: Version of the manifest format; a reader refuses versions it does not know.
FORMAT = 1


@attrs.define(frozen=True, kw_only=True)
class ManifestFile:
    index: int
    source: str
    relative_source: str
    relative_outputs: tuple[str, ...]


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
    presets: tuple[Preset, ...]
    files: tuple[ManifestFile, ...]
    #: The quality metrics the job's tasks measure on the nodes.
    quality: tuple[Metric, ...] = ()
    #: The segment length long videos were split at (``None``: not split).
    segment_seconds: float | None = None

    @property
    def blob_name(self) -> str:
        """Where the manifest is kept in the output container."""
        return names.manifest_blob(self.job_id)

    def work_items(self, output_dir: Path) -> list[WorkItem]:
        """The job's files with their outputs under ``output_dir`` (the inputs' layout)."""
        root = output_dir.absolute()
        return [
            WorkItem(
                index=f.index,
                source=Path(f.source),
                relative_source=f.relative_source,
                outputs=tuple(root.joinpath(*r.split("/")) for r in f.relative_outputs),
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
            "presets": [_preset_json(p) for p in self.presets],
            "quality": [m.value for m in self.quality],
            "segment_seconds": self.segment_seconds,
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
                presets=tuple(_preset_from_json(p) for p in body["presets"]),
                quality=parse_metrics(body["quality"]),
                segment_seconds=_seconds(body.get("segment_seconds")),
                files=tuple(
                    ManifestFile(
                        index=int(f["index"]),
                        source=str(f["source"]),
                        relative_source=str(f["relative_source"]),
                        relative_outputs=tuple(str(r) for r in f["relative_outputs"]),
                    )
                    for f in body["files"]
                ),
            )
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a job manifest: {exc}") from exc


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _preset_json(preset: Preset) -> dict[str, Any]:
    return attrs.asdict(preset, value_serializer=lambda _i, _a, v: list(v) if isinstance(v, tuple) else v)


def _preset_from_json(body: dict[str, Any]) -> Preset:
    fields = {a.name for a in attrs.fields(Preset)}
    values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in body.items() if k in fields
    }
    return Preset(**values)
