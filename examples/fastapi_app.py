"""A FastAPI service that converts media in the background and reports progress.

One TranscodeSession lives as long as the app (opened at start-up, torn down at
shutdown, off the event loop); each request starts a job in it and returns at
once. Run it with ``uvicorn fastapi_app:app`` (``pip install fastapi uvicorn``);
``TRANSCODE_BACKEND=azure`` runs the jobs on Azure Batch with the ``AZURE_*``
variables.

    POST   /conversions        {"paths": [...], "output_dir": "...", "preset": "mp3"} -> 202 {"id"}
    GET    /conversions/{id}   progress, the results so far, the summary when done
    DELETE /conversions/{id}   cancel: unfinished files end as "cancelled"
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from batch_transcode import (
    AzureConfig,
    FileResult,
    LocalConfig,
    Report,
    TranscodeError,
    TranscodeJob,
    TranscodeSession,
)


def make_config() -> LocalConfig | AzureConfig:
    if os.environ.get("TRANSCODE_BACKEND") == "azure":
        return AzureConfig.from_env()
    return LocalConfig()


@dataclass
class Conversion:
    job: TranscodeJob
    results: list[FileResult] = field(default_factory=list)
    report: Report | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None


async def follow(conversion: Conversion) -> None:
    """Collect results as files finish, then the report. Cancelling this task cancels the job."""
    try:
        async for result in conversion.job:
            conversion.results.append(result)
        conversion.report = await conversion.job
    except TranscodeError as exc:  # the job could not run (e.g. Azure provisioning failed)
        conversion.error = str(exc)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with TranscodeSession(make_config()) as session:
        app.state.session = session
        app.state.conversions = {}
        yield
    # leaving the block stopped running jobs and removed what the session created


app = FastAPI(title="transcoder", lifespan=lifespan)


class ConversionRequest(BaseModel):
    paths: list[str]
    output_dir: str
    preset: str = "mp3"


def _get(conversion_id: str) -> Conversion:
    conversion: Conversion | None = app.state.conversions.get(conversion_id)
    if conversion is None:
        raise HTTPException(status_code=404, detail=f"no conversion {conversion_id}")
    return conversion


@app.post("/conversions", status_code=202)
async def start(request: ConversionRequest) -> dict[str, str]:
    session: TranscodeSession = app.state.session
    try:  # inputs are checked here: a bad request starts nothing
        job = session.submit(request.paths, output_dir=request.output_dir, preset=request.preset)
    except TranscodeError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    conversion_id = uuid.uuid4().hex[:12]
    conversion = Conversion(job=job)
    conversion.task = asyncio.create_task(follow(conversion))
    app.state.conversions[conversion_id] = conversion
    return {"id": conversion_id, "status": f"/conversions/{conversion_id}"}


@app.get("/conversions/{conversion_id}")
async def status(conversion_id: str) -> dict[str, Any]:
    conversion = _get(conversion_id)
    progress = conversion.job.progress
    state = "running"
    if conversion.error is not None:
        state = "error"
    elif conversion.report is not None or (conversion.task is not None and conversion.task.done()):
        state = "cancelled" if conversion.job.cancelled else "done"
    body: dict[str, Any] = {
        "state": state,
        "progress": {
            "total": progress.total,
            "done": progress.done,
            "failed": progress.failed,
            "cancelled": progress.cancelled,
        },
        "finished": [
            {"source": str(r.source), "status": r.status, "error": r.error} for r in conversion.results
        ],
    }
    if state == "cancelled":
        conversion.report = conversion.job.wait()  # the job has stopped: at once
    if conversion.report is not None:
        body["report"] = conversion.report.to_dict()
    if conversion.error is not None:
        body["error"] = conversion.error
    return body


@app.delete("/conversions/{conversion_id}")
async def cancel(conversion_id: str) -> dict[str, Any]:
    conversion = _get(conversion_id)
    if conversion.task is not None and not conversion.task.done():
        conversion.task.cancel()  # cancels the job; the task ends once the job has stopped
        try:
            await conversion.task
        except asyncio.CancelledError:
            pass
    return await status(conversion_id)
