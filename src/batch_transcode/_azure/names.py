"""Every name a session gives: its id, its pool, jobs, tasks, containers and blobs, its
manifest and diagnostics paths, and the tags on everything it creates. Pure.

A session id is ``{prefix}-{yyyymmddThhmm}-{8 hex}``: sortable by time, unique, and
valid in every Batch and Storage name it is part of (lowercase letters, digits,
single hyphens). Everything else derives from it, so a session's resources can be
found again from its id alone (attaching after a crash, the orphan sweep):

====================  =============================================================
pool                  ``{session}-pool``
jobs                  ``{session}-job``, ``{session}-job2``, ...
tasks                 ``t000042`` (the input's index); an input split into segments:
                      ``t000042-s0003`` (a segment), ``t000042-a`` (its audio) and
                      ``t000042`` (the stitch, the file's result)
containers            ``{session}-in``, ``{session}-out``
input blobs           ``inputs/<path relative to the inputs' common folder>``
output blobs          ``outputs/<path relative to output_dir>``
job manifests         ``.bt-manifest/<job id>.json`` (output container)
diagnostics           ``.bt-diagnostics/<job id>/<task id>/stderr.txt`` (output container)
segments              ``.bt-segments/<job id>/<file's task id>/<piece>`` (output container)
tags                  ``createdby=batch-transcode``, ``session``, ``createdat`` (one
                      creation time per session, on its pool, jobs and containers)
====================  =============================================================

Batch ids: letters, digits, hyphens and underscores, at most 64 characters; container
names: 3-63 lowercase letters, digits and single hyphens (Azure naming rules for Batch
and Blob Storage).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Sequence

import attrs

from batch_transcode._errors import AttachError, ConfigError

__all__ = [
    "CREATED_BY",
    "DIAGNOSTICS_PREFIX",
    "INPUT_PREFIX",
    "MANIFEST_PREFIX",
    "OUTPUT_PREFIX",
    "QUALITY_PREFIX",
    "SEGMENTS_PREFIX",
    "STAGED_FFMPEG_BLOB",
    "ParsedId",
    "SessionNames",
    "audio_task_id",
    "blob_path",
    "cleanup_command",
    "diagnostics_path",
    "input_blob",
    "manifest_blob",
    "manifest_job_id",
    "new_session_id",
    "output_blobs",
    "parse_id",
    "piece_parent",
    "quality_path",
    "segment_task_id",
    "segments_path",
    "task_id",
]

#: Value of the ``createdby`` tag on everything a session creates (the orphan sweep's mark).
CREATED_BY = "batch-transcode"
#: Blob name prefixes of inputs and outputs inside their containers.
INPUT_PREFIX = "inputs/"
OUTPUT_PREFIX = "outputs/"
#: Where job manifests live in the output container.
MANIFEST_PREFIX = ".bt-manifest/"
#: Where a failed task's stdout/stderr are uploaded in the output container.
DIAGNOSTICS_PREFIX = ".bt-diagnostics"
#: Where a task's quality measurement logs are uploaded in the output container.
QUALITY_PREFIX = ".bt-quality"
#: Where the pieces of a split input (segments, audio, concat scripts) travel in the
#: output container.
SEGMENTS_PREFIX = ".bt-segments"
#: Blob name of the staged ffmpeg binary (StagedFFmpeg) in the input container.
STAGED_FFMPEG_BLOB = ".bt-tools/ffmpeg"

#: A session id, optionally followed by ``-job`` or ``-jobN``.
_ID = re.compile(
    r"^(?P<session>(?P<prefix>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)-\d{8}t\d{4}-[0-9a-f]{8})"
    r"(?P<job>-job(?:[2-9]|[1-9]\d+)?)?$"
)


def _utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC) if now.tzinfo else now.replace(tzinfo=dt.UTC)


def new_session_id(prefix: str, now: dt.datetime, token: str | None = None) -> str:
    """``{prefix}-{yyyymmddThhmm}-{8 hex}`` (see the module notes)."""
    token = secrets.token_hex(4) if token is None else token
    return f"{prefix}-{_utc(now):%Y%m%dt%H%M}-{token}"


@attrs.define(frozen=True)
class ParsedId:
    """A session or job id taken apart."""

    prefix: str
    session_id: str
    job_id: str | None


def parse_id(ident: str) -> ParsedId:
    """The parts of a session id or a job id; :class:`AttachError` for anything else."""
    m = _ID.match(ident.strip().lower())
    if m is None:
        raise AttachError(
            f"{ident!r} is not a batch-transcode session or job id; they look like "
            "'bt-20261101t1200-1a2b3c4d' (session) or 'bt-20261101t1200-1a2b3c4d-job' (job). "
            "'batch-transcode sessions' (or batch_transcode.list_sessions()) lists the "
            "sessions in the account with their ids",
            ident=ident,
        )
    job = m.group("session") + m.group("job") if m.group("job") else None
    return ParsedId(m.group("prefix"), m.group("session"), job)


def _container_base(prefix: str, session_id: str) -> str:
    """The session id as the start of a container name (room for ``-out`` within 63)."""
    base = (
        session_id
        if session_id.startswith(f"{prefix}-") or session_id == prefix
        else f"{prefix}-{session_id}"
    )
    base = re.sub(r"[^a-z0-9-]+", "-", base.lower())
    base = re.sub(r"-{2,}", "-", base).strip("-")
    base = base[:59].rstrip("-")
    if len(base) < 1:
        raise ConfigError(f"cannot derive container names from session id {session_id!r}")
    if not base[0].isalnum():
        base = "c" + base
    return base


@attrs.define(frozen=True, kw_only=True)
class SessionNames:
    """The names of what one session creates, and the one creation time they carry."""

    session_id: str
    created_at: dt.datetime = attrs.field(converter=_utc)
    #: The resource prefix the session id starts with (``AzureConfig.resource_prefix``).
    prefix: str = "bt"

    @classmethod
    def new(cls, prefix: str, now: dt.datetime | None = None) -> SessionNames:
        """A new session's names, created ``now``."""
        now = _utc(now or dt.datetime.now(dt.UTC))
        return cls(session_id=new_session_id(prefix, now), created_at=now, prefix=prefix)

    @property
    def pool_id(self) -> str:
        return f"{self.session_id}-pool"

    def job_id(self, run: int = 1) -> str:
        """The id of the session's ``run``-th job."""
        return f"{self.session_id}-job" if run == 1 else f"{self.session_id}-job{run}"

    @property
    def auto_pool_prefix(self) -> str:
        # autoPoolIdPrefix: at most 20 characters; Batch appends a unique suffix.
        return self.session_id[-20:].lstrip("-")

    @property
    def input_container(self) -> str:
        return f"{_container_base(self.prefix, self.session_id)}-in"

    @property
    def output_container(self) -> str:
        return f"{_container_base(self.prefix, self.session_id)}-out"

    @property
    def created_at_text(self) -> str:
        return self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def tags(self) -> dict[str, str]:
        """The metadata on the session's pool, jobs and containers (the orphan sweep's
        ``createdby``, ``session`` and ``createdat``)."""
        return {"createdby": CREATED_BY, "session": self.session_id, "createdat": self.created_at_text}

    @property
    def display_name(self) -> str:
        return f"batch-transcode session {self.session_id}"


def cleanup_command(session_id: str) -> str:
    """The exact command that removes what a session left behind."""
    return f"batch-transcode cleanup --session {session_id} --older-than 0s"


def task_id(index: int) -> str:
    """Deterministic and valid for Batch (letters and digits, <= 64): ``t000042``."""
    if index < 0:
        raise ValueError("index must be >= 0")
    return f"t{index:06d}"


def segment_task_id(index: int, segment: int) -> str:
    """The task encoding segment ``segment`` of input ``index``: ``t000042-s0003``."""
    return f"{task_id(index)}-s{segment:04d}"


def audio_task_id(index: int) -> str:
    """The task encoding the audio of split input ``index`` once: ``t000042-a``."""
    return f"{task_id(index)}-a"


_PIECE = re.compile(r"^(t\d{6,})-(?:s\d{4,}|a)$")


def piece_parent(tid: str) -> str | None:
    """The file's task id (its stitch) of a segment or audio task id; ``None`` for any
    other id."""
    found = _PIECE.match(tid)
    return found.group(1) if found else None


def segments_path(job_id: str, tid: str, name: str) -> str:
    """Where a piece ``name`` of the split file whose task id is ``tid`` lands in the output
    container (``name`` empty: the folder)."""
    return f"{SEGMENTS_PREFIX}/{job_id}/{tid}/{name}".rstrip("/")


def blob_path(relative: str) -> str:
    """The blob name for a file's relative (POSIX) path: the path itself, except that
    ``\\`` (which the storage service does not keep as-is in a SAS-signed URL) is written
    ``%5C``, and so ``%`` is written ``%25`` to keep names distinct."""
    return relative.replace("%", "%25").replace("\\", "%5C")


def input_blob(relative_source: str) -> str:
    return INPUT_PREFIX + blob_path(relative_source)


def output_blobs(relative_outputs: Sequence[str]) -> tuple[str, ...]:
    """Every output's blob, in the presets' order."""
    return tuple(OUTPUT_PREFIX + blob_path(r) for r in relative_outputs)


def manifest_blob(job_id: str) -> str:
    return f"{MANIFEST_PREFIX}{job_id}.json"


def manifest_job_id(blob_name: str) -> str | None:
    """The job id of a manifest blob's name (None for any other blob)."""
    if blob_name.startswith(MANIFEST_PREFIX) and blob_name.endswith(".json"):
        return blob_name[len(MANIFEST_PREFIX) : -len(".json")]
    return None


def diagnostics_path(job_id: str, tid: str, name: str) -> str:
    return f"{DIAGNOSTICS_PREFIX}/{job_id}/{tid}/{name}"


def quality_path(job_id: str, tid: str, name: str) -> str:
    """Where a task's quality log ``name`` lands in the output container (``name`` empty:
    the folder, as an output file destination for a pattern)."""
    return f"{QUALITY_PREFIX}/{job_id}/{tid}/{name}".rstrip("/")
