"""What finding and checking the inputs costs before a run, per file.

Makes a tree of N empty ``.mp4`` files (100 per folder, plus one ``.txt`` per folder
that a search passes over), then times, several rounds in alternating order:

- ``rglob``: the plain search (``sorted(p for p in root.rglob("*") if p.is_file() and
  the extension is media)``), which checks nothing: the baseline;
- ``find_inputs``: the library's search (links, pipes, hidden files, the output folder,
  duplicates, readability);
- ``cli``: what ``batch-transcode convert`` does before a run: ``find_inputs`` on the
  folder, then the session's own check of the files it found.

Printed: the median of each, microseconds per file, and the ratio to ``rglob``.

    .venv/bin/python benchmarks/discovery.py --files 10000 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from batch_transcode._inputs import MEDIA_EXTENSIONS, find_inputs
from batch_transcode._naming import validate_inputs


def make_tree(root: Path, files: int) -> Path:
    tree = root / "tree"
    for n in range(files):
        folder = tree / f"d{n // 100:04d}"
        if n % 100 == 0:
            folder.mkdir(parents=True)
            (folder / "notes.txt").write_text("not media")
        (folder / f"clip {n:06d}.mp4").touch()
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bt-discovery-") as tmp:
        tree = make_tree(Path(tmp), args.files)
        out = Path(tmp) / "out"

        def rglob() -> int:
            return len(
                sorted(p for p in tree.rglob("*") if p.is_file() and p.suffix[1:].lower() in MEDIA_EXTENSIONS)
            )

        def library() -> int:
            return len(find_inputs([tree], output_dir=out).files)

        def cli() -> int:
            return len(validate_inputs(list(find_inputs([tree], output_dir=out).files), output_dir=out))

        ways: dict[str, Callable[[], int]] = {"rglob": rglob, "find_inputs": library, "cli": cli}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, way in ways.items():
                started = time.perf_counter()
                assert way() == args.files
                times[name].append(time.perf_counter() - started)
    base = statistics.median(times["rglob"])
    for name, taken in times.items():
        median = statistics.median(taken)
        per_file = median / args.files * 1e6
        print(f"{name:12s} {median * 1000:8.1f} ms  {per_file:6.1f} us/file  x{median / base:.2f} of rglob")


if __name__ == "__main__":
    main()
