"""OpenTelemetry traces and metrics, through ``opentelemetry-api`` when it is installed.

Without an OpenTelemetry SDK configured, the API's tracer and meter do nothing; without
``opentelemetry-api`` at all (the ``[otel]`` extra installs it), neither do these
helpers. Spans follow the OpenTelemetry conventions as the Azure SDKs apply them
("Azure SDK distributed tracing conventions", azure-sdk guidelines): ``az.namespace``
names the resource provider (``Microsoft.Batch``), and a span that ends with an
exception carries ``error.type`` (the exception's qualified class name) and an error
status. No attribute ever holds a key, a SAS token or a connection string: only ids,
counts, names and times.

The Azure SDK's own HTTP spans (azure-core's ``DistributedTracingPolicy``) nest under
ours when the application turns azure-core tracing on
(``azure.core.settings.settings.tracing_implementation = "opentelemetry"`` with
``azure-core-tracing-opentelemetry``): they take the current OpenTelemetry context, so
our worker threads carry it (:class:`ContextExecutor`, :func:`carry`).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

try:  # an optional dependency: the [otel] extra
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover - exercised where opentelemetry-api is absent
    otel_trace = None  # type: ignore[assignment]
    otel_metrics = None  # type: ignore[assignment]
    otel_context = None  # type: ignore[assignment]

__all__ = [
    "NAMESPACE",
    "ContextExecutor",
    "attached",
    "carry",
    "current_context",
    "end_span",
    "phase",
    "record_file",
    "record_node_seconds",
    "record_staged",
    "span",
    "start_span",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SCOPE = "batch_transcode"
#: The resource provider the Azure SDKs name in ``az.namespace`` for Batch.
NAMESPACE = "Microsoft.Batch"

Attributes = Mapping[str, str | int | float | bool]


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batch-transcode")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0"


def _tracer() -> Any:
    """The tracer, looked up each time: an SDK configured after import is used."""
    return None if otel_trace is None else otel_trace.get_tracer(SCOPE, _version())


def _error(span: Any, exc: BaseException) -> None:
    span.set_attribute("error.type", f"{type(exc).__module__}.{type(exc).__qualname__}")
    span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, type(exc).__name__))


@contextlib.contextmanager
def span(name: str, attributes: Attributes | None = None, *, azure: bool = False) -> Iterator[Any]:
    """A span around a block, current inside it (``azure``: tagged ``az.namespace``);
    an exception leaving the block is recorded as ``error.type``. ``None`` without the API."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    attrs = {**(attributes or {}), **({"az.namespace": NAMESPACE} if azure else {})}
    with tracer.start_as_current_span(
        name, attributes=attrs, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            _error(current, exc)
            raise


def start_span(name: str, attributes: Attributes | None = None, *, azure: bool = False) -> Any:
    """A span that outlives a block (a session's): end it with :func:`end_span`."""
    tracer = _tracer()
    if tracer is None:
        return None
    attrs = {**(attributes or {}), **({"az.namespace": NAMESPACE} if azure else {})}
    return tracer.start_span(name, attributes=attrs)


def end_span(handle: Any, exc: BaseException | None = None) -> None:
    if handle is None:
        return
    if exc is not None:
        _error(handle, exc)
    handle.end()


def current_context(parent: Any = None) -> Any:
    """The OpenTelemetry context to run under: ``parent``'s span made current, or the
    caller's context (``None`` without the API)."""
    if otel_trace is None:
        return None
    if parent is not None:
        return otel_trace.set_span_in_context(parent)
    return otel_context.get_current()


@contextlib.contextmanager
def attached(ctx: Any) -> Iterator[None]:
    """Run a block under ``ctx`` (from :func:`current_context`), in whatever thread."""
    if ctx is None or otel_context is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def phase(name: str, parent: Any, attributes: Attributes | None = None) -> Iterator[Any]:
    """:func:`span` ``name`` as a child of the long-lived span ``parent`` (a session's)."""
    with attached(current_context(parent)), span(name, attributes) as current:
        yield current


def carry(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` bound to the caller's context (OpenTelemetry's included), for another thread."""
    return functools.partial(contextvars.copy_context().run, fn)


class ContextExecutor(ThreadPoolExecutor):
    """A thread pool whose tasks run in the context of the thread that submitted them, so
    that their spans (and the Azure SDK's) nest under the submitter's."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return super().submit(functools.partial(contextvars.copy_context().run, fn, *args, **kwargs))


def _ns(value: dt.datetime) -> int:
    return int(value.timestamp() * 1e9)


@functools.cache
def _instruments() -> dict[str, Any]:
    meter = otel_metrics.get_meter(SCOPE, _version())
    return {
        "files": meter.create_counter("batch_transcode.files", unit="{file}", description="files by outcome"),
        "staged": meter.create_counter(
            "batch_transcode.staged", unit="By", description="bytes uploaded to Blob Storage as inputs"
        ),
        "task": meter.create_histogram(
            "batch_transcode.task.duration", unit="s", description="each task's run time"
        ),
        "nodes": meter.create_counter(
            "batch_transcode.node_seconds", unit="s", description="node time allocated to runs"
        ),
    }


def record_file(result: Any, backend: str, parent: Any) -> None:
    """A finished file: counted by outcome, its task's time recorded, and a span of its own
    (from its task's start to its end, under ``parent``'s context) when it ran. Telemetry
    never fails a run: an error here is logged and dropped."""
    if otel_metrics is None:
        return
    try:
        _record_file(result, backend, parent)
    except Exception:
        log.debug("could not record the telemetry of %s", result.source, exc_info=True)


def _record_file(result: Any, backend: str, parent: Any) -> None:
    tools = _instruments()
    tools["files"].add(1, {"status": str(result.status), "backend": backend})
    if result.started is None or result.ended is None:
        return
    for piece in result.pieces:  # a file encoded in segments: each of its tasks
        tools["task"].record(piece.seconds, {"status": str(piece.status), "backend": backend})
    if not result.pieces:
        seconds = max(0.0, (result.ended - result.started).total_seconds())
        tools["task"].record(seconds, {"status": str(result.status), "backend": backend})
    attrs: dict[str, str | int] = {
        "batch_transcode.status": str(result.status),
        "batch_transcode.backend": backend,
    }
    for key, value in (("batch_transcode.task_id", result.task_id), ("batch_transcode.node_id", result.node)):
        if value:
            attrs[key] = value
    attrs["batch_transcode.retries"] = result.retries
    attrs["batch_transcode.requeues"] = result.requeues
    if backend == "azure":
        attrs["az.namespace"] = NAMESPACE
    handle = _tracer().start_span(
        "batch_transcode.file", context=parent, attributes=attrs, start_time=_ns(result.started)
    )
    if str(result.status) == "failed":
        handle.set_attribute("error.type", "batch_transcode.FileFailed")
        handle.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, "the file failed"))
    handle.end(end_time=_ns(result.ended))


def record_staged(size: int) -> None:
    if otel_metrics is not None and size:
        _instruments()["staged"].add(size)


def record_node_seconds(seconds: float, backend: str) -> None:
    if otel_metrics is not None and seconds > 0:
        _instruments()["nodes"].add(seconds, {"backend": backend})
