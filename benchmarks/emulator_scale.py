"""What one Batch request costs the emulator as the job grows: N tasks, the monitoring requests.

For each N, a fresh Batch emulator (in this process, no Azurite) gets a pool without
nodes, a job and N tasks (task collections of 100, one after the other); nothing runs,
so the job holds N active tasks while the requests a monitoring client makes are sent
``--repeat`` times each:

- Get Task Counts;
- the incremental listing of finished tasks (``state eq 'completed' and
  stateTransitionTime ge <a second ago>``, with ``$select``);
- the first page of a full ``$select`` listing, and the first page of ``state eq 'active'``;
- a task collection of 100 more tasks (tasks shaped like a session's: an input and an
  output through SAS URLs).

Printed per N and operation: the emulator's CPU time per request (the answering
thread's, from the request log: other load on the machine does not stretch it) and the
wall time, then the ratio of the largest N to the smallest. A cost that does not grow
with N gives ratios near 1::

    .venv/bin/python benchmarks/emulator_scale.py --tasks 10000 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SELECT = ["id", "state", "stateTransitionTime", "executionInfo"]


def _tasks(prefix: str, start: int, count: int) -> list[Any]:
    """Tasks shaped like a session's: a quoted command line, an input through a SAS URL,
    an output uploaded to a container SAS URL on success, retry and time constraints."""
    from azure.batch import models as bm

    sas = "sv=2025-01-05&se=2026-12-31T00%3A00%3A00Z&sr=b&sp=r&sig=" + "x" * 44
    container = "http://127.0.0.1:10000/devstoreaccount1/bt-out?" + sas.replace("sr=b&sp=r", "sr=c&sp=cw")
    tasks = []
    for i in range(start, start + count):
        name = f"clip{i:07d}"
        tasks.append(
            bm.BatchTaskCreateOptions(
                id=f"{prefix}{i:07d}",
                command_line=f"/bin/sh -c 'ffmpeg -hide_banner -nostdin -y -i {name}.wav -vn {name}.mp3'",
                resource_files=[
                    bm.ResourceFile(
                        http_url=f"http://127.0.0.1:10000/devstoreaccount1/bt-in/{name}.wav?{sas}",
                        file_path=f"{name}.wav",
                    )
                ],
                output_files=[
                    bm.OutputFile(
                        file_pattern=f"{name}.mp3",
                        destination=bm.OutputFileDestination(
                            container=bm.OutputFileBlobContainerDestination(
                                container_url=container, path=f"out/{name}.mp3"
                            )
                        ),
                        upload_options=bm.OutputFileUploadConfiguration(upload_condition="tasksuccess"),
                    )
                ],
                constraints=bm.BatchTaskConstraints(max_task_retry_count=2),
            )
        )
    return tasks


def _measure(emulator: Any, repeat: int, send: Callable[[int], object]) -> tuple[float, float]:
    """Median CPU and wall milliseconds of the requests ``send`` makes, over ``repeat`` calls."""
    cpu: list[float] = []
    wall: list[float] = []
    for i in range(repeat):
        emulator.drain_request_log()
        send(i)
        records = emulator.drain_request_log()
        cpu.append(1000 * sum(getattr(r, "cpu_seconds", r.seconds) for r in records))
        wall.append(1000 * sum(r.seconds for r in records))
    return statistics.median(cpu), statistics.median(wall)


def _one_size(n: int, repeat: int, work: Path) -> dict[str, tuple[float, float]]:
    from azure.batch import BatchClient
    from azure.batch import models as bm
    from azure.core.credentials import AzureNamedKeyCredential

    from batch_transcode.testing._batch_emulator import BatchEmulator

    with BatchEmulator(workdir=work / f"batch-{n}") as emulator:
        client = BatchClient(emulator.endpoint, AzureNamedKeyCredential(emulator.account, emulator.key))
        client.create_pool(
            bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0)
        )
        client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="p")))
        for start in range(0, n, 100):
            client.create_task_collection(
                "j", bm.BatchTaskGroup(task_values=_tasks("t", start, min(100, n - start)))
            )
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        incremental = f"state eq 'completed' and stateTransitionTime ge DateTime'{stamp}'"
        out = {
            "Get Task Counts": _measure(emulator, repeat, lambda i: client.get_job_task_counts("j")),
            "incremental listing": _measure(
                emulator, repeat, lambda i: list(client.list_tasks("j", filter=incremental, select=SELECT))
            ),
            "first page of a full listing": _measure(
                emulator, repeat, lambda i: next(iter(client.list_tasks("j", select=SELECT).by_page()))
            ),
            "first page of state eq 'active'": _measure(
                emulator,
                repeat,
                lambda i: next(
                    iter(client.list_tasks("j", filter="state eq 'active'", select=SELECT).by_page())
                ),
            ),
            "task collection of 100": _measure(
                emulator,
                repeat,
                lambda i: client.create_task_collection(
                    "j", bm.BatchTaskGroup(task_values=_tasks(f"x{i}_", 0, 100))
                ),
            ),
        }
        client.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    results: dict[int, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bt-emulator-scale-") as tmp:
        for n in args.tasks:
            results[n] = _one_size(n, args.repeat, Path(tmp))
            print(f"N = {n}: " + "; ".join(f"{op} {cpu:.2f} ms CPU" for op, (cpu, _) in results[n].items()))
    sizes = sorted(results)
    first, last = sizes[0], sizes[-1]
    print(
        "\n| operation | "
        + " | ".join(f"N = {n}: CPU (wall) ms" for n in sizes)
        + f" | CPU ratio {last} / {first} |"
    )
    print("|---|" + "---|" * (len(sizes) + 1))
    for op in results[first]:
        cells = " | ".join(f"{results[n][op][0]:.2f} ({results[n][op][1]:.1f})" for n in sizes)
        ratio = results[last][op][0] / max(results[first][op][0], 1e-6)
        print(f"| {op} | {cells} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
