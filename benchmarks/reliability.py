"""The reliability matrix: the Azure end to end run under each fault switch and a mix.

Each row runs ``--files`` (default 40) 1 s clips through a TranscodeSession on
OfflineAzure (Azurite behind the storage fault proxy, and the Batch emulator) once
per seed, with retry waits off (``batch_transcode.testing.set_testing``), and counts the runs whose
every output decodes with the right duration, the pools/jobs/containers left behind,
and tasks added twice. Prints a markdown table::

    .venv/bin/python benchmarks/reliability.py --seeds 20 --files 40
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))

from reliability_harness import SWITCHES, make_clip, run_e2e, with_seed

from batch_transcode._ffmpeg import find_ffmpeg
from batch_transcode.testing import OfflineAzure, StorageFaults, set_testing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--only", action="append", help="run only these rows (repeatable)")
    args = parser.parse_args()
    set_testing(True)
    ffmpeg = find_ffmpeg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        work = Path(tmp)
        clip = make_clip(ffmpeg, work / "clip.mp4")
        with OfflineAzure(storage_faults=StorageFaults()) as oa:
            for switch, (_, _, _, rate) in SWITCHES.items():
                if args.only and switch not in args.only:
                    continue
                started = time.monotonic()
                correct_runs = outputs = leaks = dupes = injected = requeues = 0
                notes: list[str] = []
                for seed in range(1, args.seeds + 1):
                    faults, storage, overrides = with_seed(switch, seed)
                    try:
                        o = run_e2e(
                            oa,
                            work,
                            clip,
                            files=args.files,
                            faults=faults,
                            storage_faults=storage,
                            overrides=overrides,
                            ffmpeg=ffmpeg,
                        )
                    except Exception as exc:  # a run that raised counts as incorrect
                        notes.append(f"seed {seed}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                        continue
                    outputs += o.correct
                    correct_runs += o.correct == o.files
                    leaks += sum(len(v) for v in o.leaks.values())
                    dupes += len(o.duplicates)
                    injected += o.batch_faults + o.storage_faults
                    requeues += o.requeues
                    notes += [f"seed {seed}: {p}" for p in o.problems[:3]]
                seconds = time.monotonic() - started
                row = (switch, rate, args.seeds, correct_runs, outputs, injected, requeues, leaks, dupes)
                rows.append(row)
                print(f"# {switch}: {correct_runs}/{args.seeds} runs in {seconds:.0f}s", file=sys.stderr)
                for note in notes:
                    print(f"#   {note}", file=sys.stderr)
    total = args.files * args.seeds
    print(
        "| fault | rate | runs | runs with every output correct | outputs correct "
        "| faults injected | preemptions | leaked pools/jobs/containers | duplicate tasks |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for switch, rate, runs, correct_runs, outputs, injected, requeues, leaks, dupes in rows:
        print(
            f"| {switch} | {rate} | {runs} | {correct_runs}/{runs} | {outputs}/{total} "
            f"| {injected} | {requeues} | {leaks} | {dupes} |"
        )
    failed = any(r[3] != r[2] or r[7] or r[8] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
