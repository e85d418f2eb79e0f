"""OpenTelemetry on OfflineAzure: our spans for the session, its phases and each file, the
Azure SDK's HTTP spans nested under them (azure-core tracing through
azure-core-tracing-opentelemetry), metrics through the API's Meter; no secret in any
attribute. Captured with the OpenTelemetry SDK's in-memory exporter and reader."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

otel_sdk = pytest.importorskip("opentelemetry.sdk", reason="the [otel] extra is not installed")

from azure.core.settings import settings  # noqa: E402
from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from batch_transcode import TranscodeSession  # noqa: E402
from batch_transcode.testing import OfflineAzure  # noqa: E402
from helpers import NOTHING_LEFT, MediaFactory, run_python  # noqa: E402

pytestmark = pytest.mark.azure

EXPORTER = InMemorySpanExporter()
READER = InMemoryMetricReader()


class Switched(SimpleSpanProcessor):
    """Exports only while a test here runs: the process's provider outlives it."""

    on = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            super().on_end(span)


PROCESSOR = Switched(EXPORTER)


@pytest.fixture
def captured() -> Iterator[InMemorySpanExporter]:
    """The process's tracer and meter providers (set once: OpenTelemetry refuses a second),
    azure-core tracing on for the test."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(PROCESSOR)
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    EXPORTER.clear()
    before = settings.tracing_implementation()
    settings.tracing_implementation = "opentelemetry"
    PROCESSOR.on = True
    try:
        yield EXPORTER
    finally:
        PROCESSOR.on = False
        EXPORTER.clear()
        settings.tracing_implementation = before


def _points(name: str) -> list[Any]:
    data = READER.get_metrics_data()
    return [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_spans_nest_sdk_requests_and_metrics_count_files(
    captured: InMemorySpanExporter, offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / f"talk {n}.mp4") for n in range(3)]
    inputs.append(make_media(tmp_path / "in" / "silent.mp4", kind="silent"))
    files_before = sum(p.value for p in _points("batch_transcode.files"))
    with TranscodeSession(offline.config()) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out", preset="mp3")
    assert len(report.succeeded) == 3

    spans: list[ReadableSpan] = list(captured.get_finished_spans())
    by_id = {s.context.span_id: s for s in spans}
    ours = {s.name: s for s in spans if s.name.startswith("batch_transcode.")}  # one each, but files
    session_span = ours["batch_transcode.session"]
    run = ours["batch_transcode.run"]

    def parent(span: ReadableSpan) -> ReadableSpan | None:
        return by_id.get(span.parent.span_id) if span.parent is not None else None

    for name in ("provision", "run", "teardown"):
        assert parent(ours[f"batch_transcode.{name}"]) is session_span, name
    for name in ("stage", "submit", "watch", "collect"):
        assert parent(ours[f"batch_transcode.{name}"]) is run, name
    attributes = session_span.attributes or {}
    assert attributes["az.namespace"] == "Microsoft.Batch"
    assert attributes["batch_transcode.session_id"] == session.session_id

    files = [s for s in spans if s.name == "batch_transcode.file"]
    assert len(files) == 4 and all(parent(f) is run for f in files)
    failed = [f for f in files if (f.attributes or {}).get("batch_transcode.status") == "failed"]
    assert len(failed) == 1 and (failed[0].attributes or {}).get("error.type")
    assert {(f.attributes or {}).get("batch_transcode.task_id") for f in files} == {r.task_id for r in report}

    # the Azure SDK's HTTP spans: children of ours, in the session's trace. The emulated
    # nodes run in this process too; their requests (resource files and outputs through
    # SAS URLs, which the client itself never uses) are theirs, not ours.
    http = [
        s
        for s in spans
        if (s.attributes or {}).get("http.request.method")
        and "sig=" not in str((s.attributes or {}).get("url.full"))
    ]
    assert len(http) > 10

    def ancestors(span: ReadableSpan) -> list[str]:
        names, up = [], parent(span)
        while up is not None:
            names.append(up.name)
            up = parent(up)
        return names

    lineage = [ancestors(s) for s in http]
    assert all("batch_transcode.session" in names for names in lineage), [
        (s.name, (s.attributes or {}).get("url.full"), n)
        for s, n in zip(http, lineage, strict=True)
        if "batch_transcode.session" not in n
    ][:3]
    under = {name for names in lineage for name in names}
    phases = ("provision", "stage", "submit", "watch", "collect", "teardown")
    assert {f"batch_transcode.{p}" for p in phases} <= under  # each phase made requests

    # no secret in any attribute
    env = offline.env
    secrets = [v for k, v in env.items() if k.endswith(("_KEY", "CONNECTION_STRING")) and v]
    text = repr([(s.name, s.attributes, [e.attributes for e in s.events]) for s in spans])
    assert secrets and not any(secret in text for secret in secrets)
    assert not re.search(r"sig=(?!REDACTED)", text) and "AccountKey" not in text  # SAS signatures redacted

    # metrics through the API's Meter, to the SDK's reader
    assert sum(p.value for p in _points("batch_transcode.files")) - files_before == 4
    assert {dict(p.attributes)["status"] for p in _points("batch_transcode.files")} >= {"converted", "failed"}
    assert sum(p.value for p in _points("batch_transcode.staged")) > 0
    assert sum(p.count for p in _points("batch_transcode.task.duration")) >= 4
    assert sum(p.value for p in _points("batch_transcode.node_seconds")) > 0


def test_the_docs_console_exporter_example_prints_our_spans_and_metrics(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    """docs/report.md's console example, run as written in a process of its own (it sets
    the process's global providers, which the docs runner's shared process must not keep)."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"To see them on the console.*?```python\n(.*?)```", page, re.S)
    paths = [make_media(tmp_path / "talks" / f"talk {n}.mp4") for n in range(2)]
    script = tmp_path / "example.py"
    script.write_text(f"paths = {[str(p) for p in paths]!r}\n{code}", encoding="utf-8")
    proc = run_python(script, cwd=tmp_path, env={**os.environ, **offline.env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("batch_transcode.session", "batch_transcode.watch", "batch_transcode.file"):
        assert f'"name": "{name}"' in proc.stdout, name
    assert '"name": "batch_transcode.files"' in proc.stdout  # the metrics, printed at shutdown
    assert (tmp_path / "mp3s" / "talk 0.mp3").is_file()
    assert offline.leaks(timeout=15) == NOTHING_LEFT
