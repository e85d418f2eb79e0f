"""Plain helpers the test modules share: ``from helpers import wait_until``.

``tests/conftest.py`` puts this folder on ``sys.path`` (pytest runs with
``--import-mode=importlib``, which does not); the fixtures built on these helpers
live in that conftest. ``reliability/reliability_harness.py`` (shared with
``benchmarks/``) imports ``make_clip`` from here as well.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

if TYPE_CHECKING:
    from azure.batch import BatchClient

    from batch_transcode import AzureConfig
    from batch_transcode.testing import OfflineAzure
    from batch_transcode.testing._batch_emulator import BatchEmulator

#: ``make_media(path, kind="video"|"silent"|"long") -> path`` (the fixture in conftest.py).
MediaFactory = Callable[..., Path]
#: ``duration_of(path)``: the decoded duration in seconds, ``None`` if it does not decode.
DurationOf = Callable[[Path], float | None]

#: What ``OfflineAzure.leaks()`` answers when nothing is left.
NOTHING_LEFT: Mapping[str, list[str]] = {"pools": [], "jobs": [], "containers": []}


# -- waiting ----------------------------------------------------------------------------


def interruptible() -> None:
    """``preexec_fn`` of a child a test sends SIGINT: SIGINT back to its default, so that
    Python installs its KeyboardInterrupt handler in the child even when this test process
    was started with SIGINT ignored (a background job of a shell without job control)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_once_watching(offline: OfflineAzure, argv: Sequence[str]) -> int:
    """Run the client ``argv`` against ``offline`` and SIGKILL it once it watches its job
    (tasks added, the job set to end when they complete, task counts polled); its return
    code."""
    before = len(offline.batch.request_log)
    proc = subprocess.Popen(
        argv, env={**os.environ, **offline.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def watching() -> bool:
            ops = [r.operation for r in offline.batch.request_log[before:]]
            return "Jobs_UpdateJob" in ops and "Jobs_GetJobTaskCounts" in ops

        wait_until(watching, timeout=60, what="the client to watch its job")
        proc.send_signal(signal.SIGKILL)
        return proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str | Callable[[], object] = "the condition",
) -> Any:
    """Call ``predicate`` every ``interval`` s until it returns something true, and return that.

    ``timeout`` only bounds how long a test waits (make it generous): past it the test
    fails with an ``AssertionError`` naming ``what`` (a callable is called then, to show
    the state at that moment). An exception from ``predicate`` ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {detail}")
        time.sleep(interval)


# -- media and files --------------------------------------------------------------------


def make_clip(ffmpeg: str, path: Path, seconds: float = 1.0, *, audio: bool = True) -> Path:
    """A ``seconds`` long 64x48 MPEG-4 video, with a 440 Hz AAC tone unless ``audio=False``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=64x48:rate=5"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    args += ["-c:v", "mpeg4"]
    if audio:
        args += ["-c:a", "aac"]
    args += ["-shortest", str(path)]
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
    return path


def copy_file(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target``, making its folders; return ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def partial_files(root: Path) -> list[Path]:
    """Temporary (``.bt-*``) or half-downloaded (``*.part``) files under ``root``."""
    return [p for p in root.rglob("*") if p.name.startswith(".bt-") or ".part" in p.name]


# -- processes --------------------------------------------------------------------------


def run_python(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args`` (a script, or ``-m module ...``); capture its text output."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def env_without_azure() -> dict[str, str]:
    """This process's environment without any ``AZURE_*`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}


def _stat_fields(pid: str | int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie (a zombie is as good as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


# -- Azure: configs, clients, what is left ----------------------------------------------


def azure_config(**overrides: Any) -> AzureConfig:
    """An AzureConfig for tests that never reach a real service (overrides win)."""
    from batch_transcode import AzureConfig

    base: dict[str, Any] = {
        "batch_endpoint": "https://acct.westeurope.batch.azure.com",
        "batch_key": "a2V5",
        "storage_connection_string": "UseDevelopmentStorage=true",
    }
    return AzureConfig(**(base | overrides))


def azurite_connection_string(port: int, key: str | None = None) -> str:
    """A connection string for Azurite's development account at ``127.0.0.1:port`` (``key``:
    the account's key when it is not the well-known one, as in ``OfflineAzure``)."""
    from batch_transcode.testing._azurite import AZURITE_ACCOUNT, AZURITE_KEY

    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key or AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


def batch_client(emulator: BatchEmulator, key: str | None = None, **kwargs: Any) -> BatchClient:
    """The unmodified ``BatchClient`` with Shared Key credentials for ``emulator``
    (``key`` replaces the right key; ``kwargs`` go to the client)."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential

    credential = AzureNamedKeyCredential(emulator.account, key or emulator.key)
    return BatchClient(emulator.endpoint, credential, **kwargs)  # type: ignore[arg-type]


def session_jobs(oa: OfflineAzure, session_id: str) -> list[str]:
    """The jobs session ``session_id`` created on ``oa``, in order (from the emulator's
    request log: Create Job requests it accepted or found already done)."""
    jobs: list[str] = []
    for record in oa.batch.request_log:
        if record.operation == "Jobs_CreateJob" and record.request_body:
            job_id = json.loads(record.request_body).get("id", "")
            if job_id.startswith(f"{session_id}-") and job_id not in jobs:
                jobs.append(job_id)
    return jobs


def session_resources(oa: OfflineAzure, session_id: str, *, timeout: float = 0.0) -> dict[str, list[str]]:
    """The pools, jobs and containers of session ``session_id`` still in ``oa``
    (after ``OfflineAzure.leaks(timeout=...)``, which waits for all resources to go)."""
    sid = session_id.lower()
    return {kind: [n for n in names if sid in n.lower()] for kind, names in oa.leaks(timeout=timeout).items()}


# -- a scripted Batch endpoint ----------------------------------------------------------


@attrs.frozen
class ScriptedRequest:
    method: str
    path: str  # unquoted, without the query
    body: Any  # the JSON body, None without one
    query: dict[str, list[str]] = attrs.field(factory=dict)  # the query, parsed


#: ``answer(request) -> (status, body)``; a ``str`` body is sent as text, anything else as JSON.
Answer = Callable[[ScriptedRequest], tuple[int, Any]]


class ScriptedEndpoint:
    """A loopback HTTP server that answers every request with ``answer(request)`` (one
    at a time) and keeps the requests, for driving the real BatchClient."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[ScriptedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _respond(self, request: ScriptedRequest) -> tuple[int, bytes, str]:
        with self._lock:
            self.requests.append(request)
            status, body = self.answer(request)
        if isinstance(body, str):
            return status, body.encode(), "text/plain"
        return status, json.dumps(body).encode(), "application/json"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = ScriptedRequest(
                    method=self.command,
                    path=unquote(urlsplit(self.path).path),
                    body=json.loads(raw) if raw else None,
                    query=parse_qs(urlsplit(self.path).query),
                )
                status, data, content_type = endpoint._respond(request)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return Handler


# -- several outputs, loudness, thumbnails ---------------------------------------------


def make_talk(ffmpeg: str, path: Path, seconds: int = 12, *, video: bool = True) -> Path:
    """A ``seconds`` long clip whose audio is speech-like in level: a 220 Hz tone at -40 dBFS
    in even seconds and -20 dBFS in odd ones (a 20 dB swing), with a 64x48 video unless
    ``video=False`` (then an M4A). Its integrated loudness is far from any target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = f"aevalsrc=0.01*(1+9*mod(floor(t)\\,2))*sin(2*PI*220*t):s=44100:d={seconds}"
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=64x48:rate=5"]
    args += ["-f", "lavfi", "-i", tone]
    if video:
        args += ["-c:v", "mpeg4"]
    args += ["-c:a", "aac", "-b:a", "128k", "-shortest", str(path)]
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
    return path


def integrated_loudness(ffmpeg: str, path: Path) -> float:
    """``path``'s EBU R128 integrated loudness in LUFS, measured by ffmpeg's ebur128 filter
    (https://ffmpeg.org/ffmpeg-filters.html#ebur128-1): the ``I:`` of its summary."""
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", "file:" + str(path), "-af", "ebur128", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    summary = proc.stderr[proc.stderr.rindex("Integrated loudness:") :]
    return float(summary.split("I:", 1)[1].split("LUFS", 1)[0])


def stream_info(ffmpeg: str, path: Path) -> str:
    """The ``Stream #...`` lines ffmpeg prints for ``path`` (there is no ffprobe here)."""
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", "file:" + str(path)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return "\n".join(line.strip() for line in proc.stderr.splitlines() if "Stream #" in line)


def make_red_then_blue(ffmpeg: str, path: Path, seconds: int = 4, *, raw: bool = False) -> Path:
    """A 64x48 video, red for its first half and blue for its second, with a tone; with
    ``raw=True`` a bare MPEG-4 video stream (``.m4v``: no container, so no duration)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    half = seconds / 2
    video = f"color=c=red:s=64x48:r=5:d={seconds},drawbox=w=iw:h=ih:color=blue:t=fill:enable='gte(t,{half})'"
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", video]
    if raw:
        args += ["-c:v", "mpeg4", "-f", "m4v", str(path)]
    else:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
        args += ["-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(path)]
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
    return path


def mean_colour(ffmpeg: str, image: Path) -> tuple[int, int, int]:
    """An image's mean colour (R, G, B): ffmpeg scales it to one pixel."""
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", "file:" + str(image),
         "-vf", "scale=1:1", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    r, g, b = proc.stdout[:3]
    return r, g, b


#: A process that opens an Azure session, converts, and stops without closing it.
_LEAVE_BEHIND = """
import os, sys
from batch_transcode import AzureConfig, TranscodeSession

out, *paths = sys.argv[1:]
session = TranscodeSession(AzureConfig.from_env(poll_interval=0.2, poll_interval_max=0.5)).open()
session.submit(paths, output_dir=out).wait()
print(session.session_id, flush=True)
os._exit(0)  # as if the process died: no teardown, no interpreter exit
"""


def leave_session_behind(oa: OfflineAzure, paths: Sequence[Path], output_dir: Path) -> str:
    """Convert ``paths`` on ``oa`` in a child process that then dies without tearing
    down; return the id of the session it leaves (its job complete, pool, containers)."""
    proc = run_python("-c", _LEAVE_BEHIND, output_dir, *paths, env={**os.environ, **oa.env}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
