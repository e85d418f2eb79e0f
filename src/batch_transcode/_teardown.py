"""The teardown stack: steps registered as resources appear, unwound last-in-first-out."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from batch_transcode._errors import TeardownError

__all__ = ["Teardown"]

log = logging.getLogger("batch_transcode")


@attrs.define
class _Step:
    description: str
    action: Callable[[], None]


@attrs.define
class Teardown:
    """Register a step the moment its resource exists; :meth:`close` runs them all.

    Every step runs even when an earlier one failed; failures are collected
    and raised together as one :class:`TeardownError` naming what remains and,
    when set, the ``cleanup_command`` that removes it. Steps must treat
    "already gone" as success.
    """

    cleanup_command: str | None = None
    _steps: list[_Step] = attrs.field(factory=list)

    def push(self, description: str, action: Callable[[], None]) -> None:
        self._steps.append(_Step(description, action))

    def pending(self) -> list[str]:
        return [s.description for s in reversed(self._steps)]

    def close(self) -> None:
        remaining: list[str] = []
        errors: list[BaseException] = []
        interrupted: BaseException | None = None
        while self._steps:
            step = self._steps.pop()
            try:
                step.action()
            except KeyboardInterrupt as exc:  # keep unwinding; re-raise at the end
                interrupted = exc
                remaining.append(step.description)
                errors.append(exc)
            except Exception as exc:
                log.warning("teardown of %s failed: %s", step.description, exc)
                remaining.append(step.description)
                errors.append(exc)
        if remaining:
            err = TeardownError(remaining, cleanup_command=self.cleanup_command, errors=errors)
            if interrupted is not None:
                raise err from interrupted
            raise err
