"""Control-plane budget and client footprint: our session vs the tutorial's pattern.

For each N, on one OfflineAzure (Azurite + the Batch emulator, in this process),
two clients run in child processes, one after the other:

- ``ours``: ``TranscodeSession(AzureConfig)``, converting N tiny WAV files;
- ``tutorial``: the Azure-Samples/batch-python-ffmpeg-tutorial flow written with the raw
  ``azure.batch.BatchClient`` and ``azure-storage-blob`` clients: inputs uploaded one by
  one, a pool with the apt start task, a job, ``create_tasks``, then every second
  ``list_tasks`` (every task, every property) until all are completed.

Both run the same task on the same nodes: by default a stand-in for ffmpeg (a shell
script copying its input to its output, ``--task stub``), so that N=10000 fits in
minutes on a small machine; ``--task ffmpeg`` runs the real ffmpeg (ours: the node
image's through ``StagedFFmpeg``; the tutorial: the same binary).

Printed per run: Batch requests by operation, task-collection requests, monitoring
polls and response bytes per poll, full task listings, the client's peak RSS and CPU
time per task (measured in the child), and where the CPU went on the emulator's side
(the emulator's Python process, the task processes, Azurite) with the time the
emulator took to answer Batch requests.

    .venv/bin/python benchmarks/control_plane.py --files 100 1000
    .venv/bin/python benchmarks/control_plane.py --files 10000 --modes ours

Long runs: ``--interim 60`` prints the figures so far every minute (one JSON line);
``--fit OUTPUT`` reads those lines back and fits the emulator's CPU per task collection
and per other request, so that runs with another mix of requests (or unfinished ones)
compare request for request.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()

STUB = r"""#!/bin/sh
# Stand-in for ffmpeg in the control-plane benchmark: copies the input to the output.
in=""; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    -version) echo "ffmpeg version stub (control-plane benchmark)"; exit 0 ;;
    -i) in="$2"; shift 2; continue ;;
  esac
  out="$1"; shift
done
exec cp -- "${in#file:}" "${out#file:}"
"""

MONITOR_OPS = (
    "Jobs_GetJobTaskCounts",
    "Pools_GetPool",
    "Nodes_ListNodes",
    "Jobs_GetJob",
    "Nodes_GetNodeFile",
)


# -- the parent: emulator, measurements ----------------------------------------------------


@dataclass
class Entry:
    """What is kept of one request (bodies are dropped as the log is drained)."""

    t: float
    operation: str
    status: int
    request_bytes: int
    response_bytes: int
    first_page: bool
    seconds: float
    #: CPU time the emulator's answering thread spent on it.
    cpu_seconds: float
    #: A task listing filtered on stateTransitionTime (an incremental read of finished tasks).
    incremental: bool = False
    #: Tasks in the answer (task listings only).
    tasks: int = 0


def _tasks_in(record: Any) -> int:
    """How many tasks a List Tasks answer holds (0 for any other request)."""
    if record.operation != "Tasks_ListTasks" or not record.response_body:
        return 0
    try:
        return len(json.loads(record.response_body).get("value", []))
    except ValueError:
        return 0


@dataclass
class Collector:
    """Drains the emulator's request log every half second into compact entries."""

    emulator: Any
    entries: list[Entry] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _drain(self) -> None:
        for r in self.emulator.drain_request_log():
            self.entries.append(
                Entry(
                    t=r.time,
                    operation=r.operation or f"{r.method} {r.path}",
                    status=r.status,
                    request_bytes=len(r.request_body),
                    response_bytes=len(r.response_body),
                    first_page="$skiptoken" not in r.query,
                    seconds=getattr(r, "seconds", 0.0),
                    cpu_seconds=getattr(r, "cpu_seconds", 0.0),
                    incremental="stateTransitionTime" in r.query.get("$filter", ""),
                    tasks=_tasks_in(r),
                )
            )

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._drain()

    def start(self) -> Collector:
        self._drain()
        self.entries.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Entry]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._drain()
        return self.entries


@dataclass
class _Interim:
    """Every ``every`` seconds of a long run, one line of figures so far (to stdout):
    files downloaded, Batch requests and the emulator's mean time per request (over the
    run and over the last interval), the client's RSS (now and peak) and CPU per file."""

    every: float
    collector: Collector
    pid: int
    out: Path
    started: float
    files: int
    _stop: threading.Event = field(default_factory=threading.Event)
    _seen: tuple[int, float, float] = (0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.every > 0:
            threading.Thread(target=self._loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                print(json.dumps(self._line()), flush=True)
            except (OSError, ValueError):
                continue

    def _line(self) -> dict[str, Any]:
        entries = list(self.collector.entries)
        answered = sum(e.seconds for e in entries)
        cpu_answered = sum(e.cpu_seconds for e in entries)
        n0, s0, c0 = self._seen
        self._seen = (len(entries), answered, cpu_answered)
        done = sum(1 for _ in os.scandir(self.out)) if self.out.is_dir() else 0
        status = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines()
            if ":" in line
        )
        cpu = _proc_cpu(self.pid)
        return {
            "interim_seconds": round(time.perf_counter() - self.started),
            "files_done": done,
            "requests": len(entries),
            "ms_per_request": round(1000 * answered / max(1, len(entries)), 2),
            "ms_per_request_last": round(1000 * (answered - s0) / max(1, len(entries) - n0), 2),
            "cpu_ms_per_request": round(1000 * cpu_answered / max(1, len(entries)), 2),
            "cpu_ms_per_request_last": round(1000 * (cpu_answered - c0) / max(1, len(entries) - n0), 2),
            "by_operation": dict(collections.Counter(e.operation for e in entries).most_common(5)),
            "listings": sum(1 for e in entries if e.operation == "Tasks_ListTasks"),
            "tasks_listed": sum(e.tasks for e in entries),
            "client_rss_mb": round(int(status["VmRSS"].split()[0]) / 1024),
            "client_peak_rss_mb": round(int(status["VmHWM"].split()[0]) / 1024),
            "client_cpu_ms_per_file_done": round(1000 * cpu / max(1, done), 2),
        }


def fit_interim(lines: list[str]) -> tuple[float, float, int]:
    """The emulator's CPU per task collection and per other request, fitted (least
    squares) to the intervals of a run's ``--interim`` lines: ``(collection ms, other ms,
    intervals)``. Lets a run that did not finish, or whose mix of requests differs
    from another's, be compared request for request."""
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    points: list[tuple[int, int, float]] = []
    before = (0, 0.0, 0)
    for r in rows:
        cpu = r["cpu_ms_per_request"] * r["requests"]
        coll = r["by_operation"].get("Tasks_CreateTaskCollection", 0)
        d_req, d_cpu, d_coll = r["requests"] - before[0], cpu - before[1], coll - before[2]
        before = (r["requests"], cpu, coll)
        if d_req > 0:
            points.append((d_coll, d_req - d_coll, d_cpu))
    saa = sum(a * a for a, _, _ in points)
    sbb = sum(b * b for _, b, _ in points)
    sab = sum(a * b for a, b, _ in points)
    say = sum(a * y for a, _, y in points)
    sby = sum(b * y for _, b, y in points)
    det = saa * sbb - sab * sab
    if not det:
        raise SystemExit("the interim lines do not tell task collections from other requests")
    return (say * sbb - sby * sab) / det, (saa * sby - sab * say) / det, len(points)


def _proc_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a live process, all its threads (from /proc)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _azurite_pids(oa: Any) -> list[int]:
    """Azurite's node process (a child of the azurite-blob wrapper, if any)."""
    azurite = getattr(oa, "_azurite", None)
    pid = getattr(azurite, "pid", None)
    if pid is None:
        return []
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
        pids += [int(p) for p in out.split()]
    except OSError:
        pass
    return pids


#: Hard links made to one source file at most: ext4 allows 65,000 links to a file
#: (``EXT4_LINK_MAX``; ``os.link`` fails with EMLINK beyond), so larger N use more sources.
LINKS_PER_SOURCE = 60_000


def _make_inputs(root: Path, n: int, seconds: float) -> list[Path]:
    """N tiny 16 kHz mono WAVs: hard links to a few identical sources (one per
    ``LINKS_PER_SOURCE`` files), so that any N costs one inode per 60,000 files."""
    frames = int(16000 * seconds)
    folder = root / f"in{n}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        src = root / f"tone{n}-{i // LINKS_PER_SOURCE}.wav"  # of this N: runs of several N share root
        if not src.exists():
            with wave.open(str(src), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                w.writeframes(b"\x00\x10" * frames)
        p = folder / f"clip{i:06d}.wav"
        if not p.exists():
            os.link(src, p)
        paths.append(p)
    return paths


def _summarise(mode: str, n: int, entries: list[Entry]) -> dict[str, Any]:
    by_op = collections.Counter(e.operation for e in entries)
    out: dict[str, Any] = {
        "requests": len(entries),
        "by_operation": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
        "collections": by_op["Tasks_CreateTaskCollection"],
        "collections_target": math.ceil(n / 100),
        "throttled_or_failed": sum(1 for e in entries if e.status >= 500 or e.status == 429),
        "emulator_answer_seconds": round(sum(e.seconds for e in entries), 2),
        "emulator_ms_per_request": round(1000 * sum(e.seconds for e in entries) / max(1, len(entries)), 2),
        "emulator_cpu_ms_per_request": round(
            1000 * sum(e.cpu_seconds for e in entries) / max(1, len(entries)), 2
        ),
        "emulator_cpu_ms_by_operation": {
            op: round(1000 * sum(e.cpu_seconds for e in entries if e.operation == op) / count, 2)
            for op, count in by_op.most_common(6)
        },
        "request_mb": round(sum(e.request_bytes for e in entries) / 1e6, 2),
        "response_mb": round(sum(e.response_bytes for e in entries) / 1e6, 2),
    }
    listings = [e for e in entries if e.operation == "Tasks_ListTasks"]
    if mode == "ours":
        # A poll: one task-count read plus the pool/node checks that follow it, until teardown
        # (finished tasks are listed between polls: counted apart).
        teardown = next((i for i, e in enumerate(entries) if e.operation == "Jobs_DeleteJob"), len(entries))
        polls: list[int] = []
        for e in entries[:teardown]:
            if e.operation == "Jobs_GetJobTaskCounts":
                polls.append(e.response_bytes)
            elif polls and e.operation in MONITOR_OPS:
                polls[-1] += e.response_bytes
        out["polls"] = len(polls)
        out["request_budget"] = 150 + 2 * len(polls)
        out["bytes_per_poll_mean"] = round(sum(polls) / len(polls)) if polls else 0
        out["bytes_per_poll_max"] = max(polls) if polls else 0
        out["full_listings"] = sum(1 for e in listings if e.first_page and not e.incremental)
        out["listing_pages"] = len(listings)
        out["listing_mb"] = round(sum(e.response_bytes for e in listings) / 1e6, 2)
        # Listing bytes against one full $select listing of the N tasks: with the same
        # select, bytes go as tasks listed (envelopes aside: a few hundred bytes a page).
        listed = sum(e.tasks for e in listings)
        out["tasks_listed"] = listed
        out["listing_vs_full"] = round(listed / n, 2)
        out["listings_in_full"] = sum(1 for e in listings if e.first_page and not e.incremental and e.tasks)
    else:
        polls = []
        for e in listings:
            if e.first_page:
                polls.append(0)
            if polls:
                polls[-1] += e.response_bytes
        out["polls"] = len(polls)
        out["bytes_per_poll_mean"] = round(sum(polls) / len(polls)) if polls else 0
        out["bytes_per_poll_max"] = max(polls) if polls else 0
        out["full_listings"] = len(polls)
        out["listing_pages"] = len(listings)
        out["listing_mb"] = round(sum(e.response_bytes for e in listings) / 1e6, 2)
    return out


def _run_child(
    mode: str, oa: Any, args: argparse.Namespace, inputs: Path, n: int, work: Path
) -> dict[str, Any]:
    params = {
        "mode": mode,
        "inputs": str(inputs),
        "files": n,
        "out": str(work / f"out-{mode}-{n}"),
        "task": args.task,
        "stub": str(work / "ffmpeg-stub"),
        "nodes": args.nodes,
        "slots": args.slots,
        "poll_interval": args.poll_interval,
        "poll_interval_max": args.poll_interval_max,
        "tutorial_poll": args.tutorial_poll,
        "tracemalloc": args.tracemalloc,
    }
    env = {**os.environ, **oa.env}
    collector = Collector(oa.batch).start()
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    azurite_pids = _azurite_pids(oa)
    azurite_before = sum(_proc_cpu(p) for p in azurite_pids)
    started = time.perf_counter()
    popen = subprocess.Popen(
        [sys.executable, str(HERE), "_child", json.dumps(params)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reporter = _Interim(args.interim, collector, popen.pid, Path(params["out"]), started, n)
    out, err = popen.communicate()
    reporter.stop()
    proc = subprocess.CompletedProcess(popen.args, popen.returncode, out, err)
    wall = time.perf_counter() - started
    oa.batch.wait_idle(timeout=30)
    entries = collector.stop()
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    azurite_cpu = sum(_proc_cpu(p) for p in azurite_pids) - azurite_before
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{mode} client failed (exit {proc.returncode})")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    client_cpu = child["cpu_user"] + child["cpu_system"]
    children_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    emulator_cpu = (self_after.ru_utime - self_before.ru_utime) + (self_after.ru_stime - self_before.ru_stime)
    result = _summarise(mode, n, entries)
    result.update(
        {
            "mode": mode,
            "files": n,
            "wall_seconds": round(wall, 1),
            "client": child,
            "client_cpu_seconds": round(client_cpu, 2),
            "client_cpu_ms_per_task": round(1000 * client_cpu / n, 2),
            "client_peak_rss_mb": round(child["max_rss_kib"] / 1024, 1),
            "emulator_python_cpu_seconds": round(emulator_cpu, 1),
            "task_processes_cpu_seconds": round(children_cpu - client_cpu, 1),
            "azurite_cpu_seconds": round(azurite_cpu, 1),
        }
    )
    return result


def _print(result: dict[str, Any]) -> None:
    r = result
    print(
        f"\n== {r['mode']}  N={r['files']}  ({r['wall_seconds']} s wall, {r['client']['ok']}/{r['files']} ok)"
    )
    budget = f" (150 + 2 x polls = {r['request_budget']})" if "request_budget" in r else ""
    print(f"  Batch requests: {r['requests']}{budget}  by operation: {json.dumps(r['by_operation'])}")
    print(
        f"  task collections: {r['collections']} (ceil(N/100) = {r['collections_target']}); "
        f"5xx/429 answers: {r['throttled_or_failed']}"
    )
    print(
        f"  monitoring polls: {r['polls']}; response bytes per poll: mean {r['bytes_per_poll_mean']}, "
        f"max {r['bytes_per_poll_max']}"
    )
    print(
        f"  full task listings: {r['full_listings']} ({r['listing_pages']} pages, {r['listing_mb']} MB); "
        f"Batch traffic: {r['request_mb']} MB sent, {r['response_mb']} MB received"
    )
    if "tasks_listed" in r:
        print(
            f"  tasks listed: {r['tasks_listed']} for {r['files']} tasks; listing bytes = "
            f"{r['listing_vs_full']} x one full $select listing (target <= 2); unfiltered listings "
            f"that returned tasks: {r['listings_in_full']}"
        )
    print(
        f"  client: peak RSS {r['client_peak_rss_mb']} MB, CPU {r['client_cpu_seconds']} s "
        f"= {r['client_cpu_ms_per_task']} ms per task; phases {json.dumps(r['client']['phases'])}"
    )
    if "traced" in r["client"]:
        t = r["client"]["traced"]
        print(
            f"  client traced memory beyond the open session: peak {t['traced_peak_bytes_per_file']} "
            f"bytes per file, {t['traced_at_end_bytes_per_file']} at the end (largest snapshot "
            f"{t['traced_snapshot_mb']} MB); what the peak holds, per file:"
        )
        for site in t["top"]:
            print(f"    {site['bytes_per_file']:>6} B  {site['where']}")
        print("  what it holds at the end (the report's results among it), per file:")
        for site in t.get("top_at_end", []):
            print(f"    {site['bytes_per_file']:>6} B  {site['where']}")
    print(
        f"  emulator side CPU: Batch emulator {r['emulator_python_cpu_seconds']} s, task processes "
        f"{r['task_processes_cpu_seconds']} s, Azurite {r['azurite_cpu_seconds']} s; "
        f"time answering Batch requests {r['emulator_answer_seconds']} s "
        f"({r['emulator_ms_per_request']} ms per request; CPU {r['emulator_cpu_ms_per_request']} ms per "
        f"request, by operation {json.dumps(r['emulator_cpu_ms_by_operation'])})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["ours", "tutorial"],
        default=["ours", "tutorial"],
        help="ours: the library; tutorial: the tutorial's pattern",
    )
    parser.add_argument("--task", choices=["stub", "ffmpeg"], default="stub")
    parser.add_argument("--clip-seconds", type=float, default=0.2)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--poll-interval-max", type=float, default=15.0)
    parser.add_argument("--tutorial-poll", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--interim", type=float, default=0.0, help="print figures so far every this many seconds (0: never)"
    )
    parser.add_argument(
        "--fit",
        type=Path,
        metavar="LOG",
        help="read the --interim lines of an earlier run's output and print the emulator's CPU per "
        "task collection and per other request, then exit",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the client's allocations (slower): bytes per file at the peak, and where they are",
    )
    args = parser.parse_args()
    if args.fit is not None:
        coll, other, points = fit_interim(args.fit.read_text().splitlines())
        print(
            f"{points} intervals: a task collection {coll:.1f} ms of emulator CPU, "
            f"any other request {other:.2f} ms"
        )
        return 0

    from batch_transcode.testing import OfflineAzure

    results = []
    work = Path(tempfile.mkdtemp(prefix="bt-control-plane-"))
    try:
        stub = work / "ffmpeg-stub"
        stub.write_text(STUB)
        stub.chmod(0o755)
        for n in args.files:
            _make_inputs(work, n, args.clip_seconds)
            with OfflineAzure(workdir=work / f"offline-{n}") as oa:
                for mode in args.modes:
                    result = _run_child(mode, oa, args, work / f"in{n}", n, work)
                    _print(result)
                    results.append(result)
            shutil.rmtree(work / f"offline-{n}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    _print_markdown(results)
    return 0


def _print_markdown(results: list[dict[str, Any]]) -> None:
    """The two tables of docs/performance.md."""
    print(
        "\n| N | client | Batch requests | task collections | polls | bytes per poll (mean / max) "
        "| full task listings | task list bytes | peak RSS | client CPU per task | wall |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['files']} | {r['mode']} | {r['requests']} | {r['collections']} | {r['polls']} "
            f"| {r['bytes_per_poll_mean']:,} / {r['bytes_per_poll_max']:,} | {r['full_listings']} "
            f"| {r['listing_mb']} MB | {r['client_peak_rss_mb']:.0f} MB | {r['client_cpu_ms_per_task']} ms "
            f"| {r['wall_seconds']:.0f} s |"
        )
    print(
        "\n| N | client | wall | client CPU | Batch emulator CPU | task processes CPU | Azurite CPU "
        "| emulator answering Batch requests |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['files']} | {r['mode']} | {r['wall_seconds']:.0f} s | {r['client_cpu_seconds']:.1f} s "
            f"| {r['emulator_python_cpu_seconds']} s | {r['task_processes_cpu_seconds']} s "
            f"| {r['azurite_cpu_seconds']} s | {r['emulator_answer_seconds']:.1f} s |"
        )


# -- the children: the two clients ---------------------------------------------------------


class _Phases:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(now - self.last, 2)
        self.last = now


class _PhaseLog:
    """Times our session's phases from its INFO log lines (the library is not instrumented)."""

    MARKS = (
        ("inputs: ", "upload"),
        ("added %d tasks", "submit"),
        ("job %s: %d/%d converted", "monitor+list+download"),
    )

    def __init__(self, phases: _Phases) -> None:
        import logging

        self.phases = phases
        handler = logging.Handler()
        handler.emit = self._emit  # type: ignore[method-assign]
        logging.getLogger("batch_transcode").addHandler(handler)
        logging.getLogger("batch_transcode").setLevel(logging.INFO)

    def _emit(self, record: Any) -> None:
        for prefix, name in self.MARKS:
            if str(record.msg).startswith(prefix) and name not in self.phases.phases:
                self.phases.mark(name)


def _child_ours(p: dict[str, Any], phases: _Phases) -> int:
    from batch_transcode import AzureConfig, RetryPolicy, StagedFFmpeg, TranscodeSession

    binary = p["stub"] if p["task"] == "stub" else _real_ffmpeg()
    config = AzureConfig.from_env(
        os.environ,
        ffmpeg=StagedFFmpeg(binary=binary),
        dedicated_nodes=p["nodes"],
        task_slots_per_node=p["slots"],
        poll_interval=p["poll_interval"],
        poll_interval_max=p["poll_interval_max"],
        retry=RetryPolicy(attempts=6, timeout=60.0, wait_initial=0.1, wait_max=2.0, wait_jitter=0.1),
    )
    inputs = sorted(Path(p["inputs"]).iterdir())
    _PhaseLog(phases)
    with TranscodeSession(config) as session:
        phases.mark("open")
        if _PEAK is not None:
            _PEAK.baseline()
        report = session.convert(inputs, output_dir=p["out"], preset="mp3")
        if _PEAK is not None:
            _PEAK.end()  # what the open session and the report hold once convert returned
        phases.mark("rest of convert")
    phases.mark("close")
    return len(report.succeeded)


def _real_ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run_tutorial(
    p: dict[str, Any],
    phases: _Phases | None = None,
    env: Mapping[str, str] | None = None,
    on_result: Callable[[Path], None] | None = None,
) -> int:
    """The tutorial's flow (Azure-Samples/batch-python-ffmpeg-tutorial, batch_python_tutorial_ffmpeg.py),
    with azure-batch 15's names; returns how many tasks exited 0. Shared with pipeline.py.

    ``p``: ``inputs`` (a folder of inputs), ``task``, ``stub`` (the stand-in's path),
    ``nodes``, ``slots``, ``tutorial_poll`` (seconds between listings) and optionally
    ``download``. ``task`` is ``stub`` or ``ffmpeg`` (that binary uploaded and installed
    by the start task after its apt line, as ours stages it) or ``apt`` (the tutorial as
    it is: the node's ffmpeg, from the apt start task). ``phases`` times the phases;
    ``env``: the endpoints and keys (default: this process's environment). With
    ``download`` (a folder) the outputs are then downloaded there one by one, calling
    ``on_result`` with each file (the tutorial itself leaves them in the container).
    """
    import datetime as dt
    import secrets

    from azure.batch import BatchClient
    from azure.batch import models as bm
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.storage.blob import (
        BlobSasPermissions,
        BlobServiceClient,
        ContainerSasPermissions,
        generate_blob_sas,
        generate_container_sas,
    )

    env = os.environ if env is None else env
    phases = _Phases() if phases is None else phases
    blob_service = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
    key = blob_service.credential.account_key
    account = blob_service.account_name
    token = secrets.token_hex(3)
    input_container, output_container = f"tut-{token}-input", f"tut-{token}-output"
    blob_service.create_container(input_container)
    blob_service.create_container(output_container)
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)

    def upload(path: Path) -> bm.ResourceFile:
        blob_service.get_blob_client(input_container, path.name).upload_blob(
            path.read_bytes(), overwrite=True
        )
        sas = generate_blob_sas(
            account,
            input_container,
            path.name,
            account_key=key,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
        )
        url = f"{blob_service.get_blob_client(input_container, path.name).url}?{sas}"
        return bm.ResourceFile(http_url=url, file_path=path.name)

    inputs = sorted(Path(p["inputs"]).iterdir())
    input_files = [upload(path) for path in inputs]  # one by one, as the tutorial does
    # The tutorial's start task installs ffmpeg with apt; with a binary of our own (the
    # stand-in, or the ffmpeg ours stages) it is then put on the node so that both clients
    # run the same task.
    start = '/bin/bash -c "apt-get update && apt-get install -y ffmpeg"'
    start_files: list[bm.ResourceFile] = []
    ffmpeg = "ffmpeg"
    if p["task"] != "apt":
        tool = upload(Path(p["stub"]) if p["task"] == "stub" else Path(_real_ffmpeg()))
        tool.file_path = "ffmpeg-tool"
        start_files = [tool]
        start = (
            '/bin/bash -c "apt-get update && apt-get install -y ffmpeg && '
            'install -m 0755 ffmpeg-tool $AZ_BATCH_NODE_SHARED_DIR/ffmpeg"'
        )
        ffmpeg = "$AZ_BATCH_NODE_SHARED_DIR/ffmpeg"
    out_sas = generate_container_sas(
        account,
        output_container,
        account_key=key,
        permission=ContainerSasPermissions(write=True),
        expiry=expiry,
    )
    output_container_url = f"{blob_service.get_container_client(output_container).url}?{out_sas}"
    phases.mark("upload")

    client = BatchClient(
        env["AZURE_BATCH_ENDPOINT"],
        AzureNamedKeyCredential(env["AZURE_BATCH_ACCOUNT"], env["AZURE_BATCH_ACCESS_KEY"]),
    )
    pool_id, job_id = f"LinuxFfmpegPool-{token}", f"LinuxFfmpegJob-{token}"
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="STANDARD_A1_v2",
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=bm.BatchVmImageReference(
                    publisher="canonical", offer="ubuntu-24_04-lts", sku="server-gen1", version="latest"
                ),
                node_agent_sku_id="batch.node.ubuntu 24.04",
            ),
            target_dedicated_nodes=p["nodes"],
            task_slots_per_node=p["slots"],
            start_task=bm.BatchStartTask(
                command_line=start,
                resource_files=start_files,
                wait_for_success=True,
                user_identity=bm.UserIdentity(
                    auto_user=bm.AutoUserSpecification(scope="pool", elevation_level="admin")
                ),
            ),
        )
    )
    client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))
    tasks = []
    outputs = []
    for idx, rf in enumerate(input_files):
        output = Path(rf.file_path or "").stem + ".mp3"
        outputs.append(output)
        tasks.append(
            bm.BatchTaskCreateOptions(
                id=f"Task{idx}",
                command_line=f'/bin/bash -c "{ffmpeg} -i {rf.file_path} {output}"',
                resource_files=[rf],
                output_files=[
                    bm.OutputFile(
                        file_pattern=output,
                        destination=bm.OutputFileDestination(
                            container=bm.OutputFileBlobContainerDestination(
                                container_url=output_container_url
                            )
                        ),
                        upload_options=bm.OutputFileUploadConfiguration(upload_condition="tasksuccess"),
                    )
                ],
            )
        )
    client.create_tasks(job_id, tasks)
    phases.mark("submit")

    # wait_for_tasks_to_complete: every task, every poll.
    timeout = time.monotonic() + 3600
    while time.monotonic() < timeout:
        listed = list(client.list_tasks(job_id))
        if all(t.state == "completed" for t in listed):
            break
        time.sleep(p["tutorial_poll"])
    else:
        raise RuntimeError("tasks did not complete in time")
    succeeded = {t.id for t in listed if t.execution_info is not None and t.execution_info.exit_code == 0}
    phases.mark("monitor")
    if p.get("download"):
        folder = Path(p["download"])
        folder.mkdir(parents=True, exist_ok=True)
        for idx, name in enumerate(outputs):  # one by one, as the uploads
            if f"Task{idx}" not in succeeded:
                continue
            target = folder / name
            with open(target, "wb") as f:
                blob_service.get_blob_client(output_container, name).download_blob().readinto(f)
            if on_result is not None:
                on_result(target)
        phases.mark("download")
    # The tutorial leaves the outputs in the container; it deletes the input container,
    # then the job and the pool.
    blob_service.delete_container(input_container)
    blob_service.delete_container(output_container)
    client.begin_delete_job(job_id)
    client.begin_delete_pool(pool_id)
    client.close()
    blob_service.close()
    phases.mark("close")
    return len(succeeded)


#: Frames kept per traced allocation: enough to name the library's line behind an
#: allocation made inside ``pathlib``, ``json`` or the Azure SDK.
FRAMES = 8


def _ours(traceback: Any) -> str:
    """The innermost frame of the library (or this script) in ``traceback``."""
    ours = (
        f for f in reversed(traceback) if "batch_transcode" in f.filename or f.filename.endswith(HERE.name)
    )
    frame = next(ours, traceback[-1])  # most recent call last; else the innermost frame
    return f"{'/'.join(Path(frame.filename).parts[-2:])}:{frame.lineno}"


def _top(snapshot: Any, base: Any, files: int) -> list[dict[str, Any]]:
    """What ``snapshot`` holds beyond ``base``, per file, by the library line behind it."""
    sites: collections.Counter[str] = collections.Counter()
    for diff in snapshot.compare_to(base, "traceback"):
        sites[_ours(diff.traceback)] += diff.size_diff
    return [{"where": where, "bytes_per_file": round(size / files)} for where, size in sites.most_common(12)]


class _Peak:
    """The client's traced memory (``--tracemalloc``, one frame per allocation): from the
    moment the session is open (:meth:`baseline`) to its peak, per file, and the lines
    that allocated what the peak holds beyond the baseline. A sampler thread takes a
    snapshot whenever the traced bytes grew by a tenth since the last one."""

    def __init__(self) -> None:
        import tracemalloc

        self._tm = tracemalloc
        tracemalloc.start(FRAMES)
        self.base: Any = None
        self.base_bytes = 0
        self.snapshot: Any = None
        self.snapshot_bytes = 0
        self.end_snapshot: Any = None
        self.end_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def baseline(self) -> None:
        self.base = self._tm.take_snapshot()
        self.base_bytes = self._tm.get_traced_memory()[0]
        self._tm.reset_peak()

    def end(self) -> None:
        self.end_snapshot = self._tm.take_snapshot()
        self.end_bytes = self._tm.get_traced_memory()[0]

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            current, _ = self._tm.get_traced_memory()
            if self.base is not None and current > 1.1 * max(self.snapshot_bytes, self.base_bytes):
                self.snapshot = self._tm.take_snapshot()
                self.snapshot_bytes = current

    def report(self, files: int) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        at_end = self.end_bytes
        peak = self._tm.get_traced_memory()[1]
        top: list[dict[str, Any]] = []
        end_top: list[dict[str, Any]] = []
        if self.base is not None and self.snapshot is not None:
            top = _top(self.snapshot, self.base, files)
        if self.base is not None and self.end_snapshot is not None:
            end_top = _top(self.end_snapshot, self.base, files)
        return {
            "traced_peak_bytes_per_file": round((peak - self.base_bytes) / files),
            "traced_snapshot_mb": round(self.snapshot_bytes / 1e6, 1),
            "traced_at_end_bytes_per_file": round((at_end - self.base_bytes) / files),
            "top": top,
            "top_at_end": end_top,
        }


_PEAK: _Peak | None = None


def child_main(raw: str) -> int:
    p = json.loads(raw)
    global _PEAK  # one per child process
    peak = _PEAK = _Peak() if p.get("tracemalloc") else None
    phases = _Phases()
    ok = run_tutorial(p, phases) if p["mode"] == "tutorial" else _child_ours(p, phases)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "ok": ok,
                "max_rss_kib": usage.ru_maxrss,
                "cpu_user": usage.ru_utime,
                "cpu_system": usage.ru_stime,
                "phases": phases.phases,
                **({"traced": peak.report(p["files"])} if peak is not None else {}),
            }
        )
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_child":
        raise SystemExit(child_main(sys.argv[2]))
    raise SystemExit(main())
