"""The exceptions batch_transcode raises.

Every exception derives from :class:`TranscodeError`, so one ``except`` clause
catches them all::

    TranscodeError
    ├── ConfigError (also ValueError)        bad settings or environment; fix and rerun
    ├── InputError (also ValueError)          bad input paths; nothing was started
    │   ├── MissingInputError                 inputs that do not exist or cannot be read
    │   ├── OutputCollisionError              two inputs would write the same output
    │   └── OutputPathError                   the output folder or a report file cannot be written
    ├── FFmpegNotFoundError                   no ffmpeg binary could be located
    ├── SessionStateError (also RuntimeError) session used before open or after close
    ├── AzureError                            a call to Azure failed
    │   ├── AuthenticationError               the service refused the credentials
    │   ├── ServiceUnavailableError           endpoint unreachable or kept failing
    │   └── ProvisioningError                 pool/nodes could not be made ready
    ├── AttachError (also LookupError)        no job to attach to under that id
    ├── RunTimeoutError (also TimeoutError)   the run did not finish in time
    ├── QualityError                          a quality measurement failed (the output is kept)
    ├── StitchCheckError                      a split file's stitched output failed its check
    ├── TranscodeFailedError                  raised by Report.raise_for_failures()
    └── TeardownError                         some resources could not be removed

Azure SDK exceptions are translated into this tree in exactly one place
(:func:`batch_transcode._azure._errors.translate`), always chained with
``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack

__all__ = [
    "AttachError",
    "AuthenticationError",
    "AzureError",
    "ConfigError",
    "FFmpegNotFoundError",
    "InputError",
    "MissingInputError",
    "OutputCollisionError",
    "OutputPathError",
    "ProvisioningError",
    "QualityError",
    "RunTimeoutError",
    "ServiceUnavailableError",
    "SessionStateError",
    "StitchCheckError",
    "TeardownError",
    "TranscodeError",
    "TranscodeFailedError",
]


class TranscodeError(Exception):
    """Base class of every error batch_transcode raises."""


class ConfigError(TranscodeError, ValueError):
    """A setting or environment variable is missing or invalid."""


class InputError(TranscodeError, ValueError):
    """The input paths cannot be converted as given. Raised before any work starts."""


class MissingInputError(InputError):
    """Some inputs do not exist, are not files, or cannot be read.

    ``paths`` lists every such input, not only the first.
    """

    def __init__(self, problems: Sequence[tuple[Path, str]]) -> None:
        self.paths: tuple[Path, ...] = tuple(p for p, _ in problems)
        self.problems: tuple[tuple[Path, str], ...] = tuple(problems)
        if len(problems) == 1:
            path, why = problems[0]
            super().__init__(f"input {str(path)!r} {why}; nothing was started")
            return
        lines = "\n".join(f"  {str(p)!r}: {why}" for p, why in problems)
        super().__init__(
            f"{len(problems)} input(s) cannot be read; nothing was started. "
            f"Fix or remove them and run again:\n{lines}"
        )


class OutputCollisionError(InputError):
    """Two or more inputs would be written to the same output file, or an output would
    overwrite an input."""

    def __init__(
        self, collisions: Sequence[tuple[Path, Sequence[Path]]], *, inputs: Iterable[Path] = ()
    ) -> None:
        self.collisions: tuple[tuple[Path, tuple[Path, ...]], ...] = tuple(
            (out, tuple(srcs)) for out, srcs in collisions
        )
        #: The outputs that are inputs too (written, they would overwrite an input).
        self.overwritten: frozenset[Path] = frozenset(inputs) & {out for out, _ in self.collisions}
        fix = (
            "nothing was started. Choose an output folder of their own, or rename the inputs "
            "or convert them in separate runs"
        )
        if len(self.collisions) == 1:
            out, srcs = self.collisions[0]
            names = " and ".join(repr(str(s)) for s in srcs)
            what = (
                "would overwrite the input of that name"
                if out in self.overwritten
                else "would be written by both"
            )
            super().__init__(f"the output {str(out)!r} of {names} {what}; {fix}")
            return
        lines = "\n".join(
            f"  {str(out)!r} <- "
            + ", ".join(repr(str(s)) for s in srcs)
            + (" (an input itself)" if out in self.overwritten else "")
            for out, srcs in self.collisions
        )
        super().__init__(f"some outputs would overwrite each other or an input; {fix}:\n{lines}")


class OutputPathError(InputError):
    """The output folder, or a file a report is to be written to, cannot be used as
    given: it is a file where a folder belongs (or the reverse), lies below a file or in
    a folder that does not exist, is read-only, or is an input. ``path`` is the path
    at fault. Raised before any file is written."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class FFmpegNotFoundError(TranscodeError):
    """No ffmpeg executable was found."""


class SessionStateError(TranscodeError, RuntimeError):
    """The session was used in the wrong state (not opened, already closed, re-entered)."""


class AzureError(TranscodeError):
    """A call to Azure Batch or Azure Storage failed.

    ``code`` is the service's error code when it sent one; ``job_id``, ``task_id`` and
    ``pool_id`` name the resources the call was about, where there were any.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        job_id: str | None = None,
        task_id: str | None = None,
        pool_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.job_id = job_id
        self.task_id = task_id
        self.pool_id = pool_id


class _AzureErrorIds(TypedDict, total=False):
    """The keyword arguments of :class:`AzureError`, for subclasses that add their own."""

    code: str | None
    job_id: str | None
    task_id: str | None
    pool_id: str | None


class AuthenticationError(AzureError):
    """The service refused the credentials (wrong key, expired token, missing role)."""


class ServiceUnavailableError(AzureError):
    """The endpoint could not be reached, or kept failing after retries."""


class ProvisioningError(AzureError):
    """The pool or its nodes could not be made ready to run tasks.

    Carries ``pool_id`` and, for a failed start task, the tail of its stderr.
    """

    def __init__(
        self, message: str, *, stderr_tail: str | None = None, **ids: Unpack[_AzureErrorIds]
    ) -> None:
        if stderr_tail:
            message = f"{message}\n--- start task stderr (tail) ---\n{stderr_tail}"
        super().__init__(message, **ids)
        self.stderr_tail = stderr_tail


class AttachError(TranscodeError, LookupError):
    """:meth:`TranscodeSession.attach` found no job to attach to under the id given
    (unknown id, a session that already finished and removed its resources, or a
    session id with several unfinished jobs: ``job_ids`` lists them).

    Nothing was adopted or removed.
    """

    def __init__(self, message: str, *, ident: str, job_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.ident = ident
        self.job_ids: tuple[str, ...] = tuple(job_ids)


class RunTimeoutError(TranscodeError, TimeoutError):
    """The run did not finish within its time limit."""


class QualityError(TranscodeError):
    """Measuring an output's quality (VMAF, PSNR, SSIM) against its source failed.

    The conversion itself is fine: the output stays, only its scores are missing (a
    run records this as a note on the output, never as a failed file). ``source`` and
    ``output`` name the pair measured, where known; ``stderr_tail`` is the end of
    ffmpeg's standard error, where there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        output: str | None = None,
        stderr_tail: str | None = None,
    ) -> None:
        if stderr_tail:
            message = f"{message}\n{stderr_tail}"
        super().__init__(message)
        self.source = source
        self.output = output
        self.stderr_tail = stderr_tail


class StitchCheckError(TranscodeError):
    """The output of a video encoded in segments (``segment_seconds=``) is not what the
    whole encode would have made: a frame lost or gained, its duration or its audio off.

    The file fails and its output is not delivered; a run reports this as the file's
    error, never raises it. ``source`` names the input, ``problems`` each check missed.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"the output stitched from segments failed its check, so it was not kept:\n{lines}\n"
            "convert this file without segment_seconds, and report the input if it is a valid video"
        )


class _Failed(Protocol):
    """What the error needs of a failed :class:`~batch_transcode.FileResult`."""

    @property
    def source(self) -> Path: ...
    @property
    def error(self) -> str | None: ...


class TranscodeFailedError(TranscodeError):
    """Raised by :meth:`Report.raise_for_failures` when some files failed; ``failed``
    holds their :class:`~batch_transcode.FileResult` values."""

    def __init__(self, failed: Iterable[_Failed]) -> None:
        self.failed: tuple[Any, ...] = tuple(failed)
        lines = "\n".join(
            f"  {str(r.source)!r}: {(r.error or 'failed').splitlines()[0]}" for r in self.failed[:20]
        )
        more = f"\n  ... and {len(self.failed) - 20} more" if len(self.failed) > 20 else ""
        super().__init__(f"{len(self.failed)} file(s) failed to convert:\n{lines}{more}")


class TeardownError(TranscodeError):
    """Some resources could not be removed when the session closed.

    ``remaining`` names each resource left behind (e.g. ``"pool bt-..."``) and
    ``cleanup_command`` is the exact command that removes them.
    """

    def __init__(
        self,
        remaining: Sequence[str],
        *,
        cleanup_command: str | None = None,
        errors: Sequence[BaseException] = (),
    ) -> None:
        self.remaining: tuple[str, ...] = tuple(remaining)
        self.cleanup_command = cleanup_command
        self.errors: tuple[BaseException, ...] = tuple(errors)
        lines = "\n".join(f"  {r}" for r in self.remaining)
        causes = "\n".join(f"  {type(e).__name__}: {e}" for e in self.errors)
        msg = f"teardown left {len(self.remaining)} resource(s) behind:\n{lines}"
        if causes:
            msg += f"\ncauses:\n{causes}"
        if cleanup_command:
            msg += f"\nremove them with:\n  {cleanup_command}"
        super().__init__(msg)
