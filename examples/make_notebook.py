"""Regenerates examples/notebook.ipynb from the cells below, executed (its outputs stored,
so that the notebook shows them where it is rendered without a kernel, as on GitHub).

    .venv/bin/python examples/make_notebook.py            # build and execute
    .venv/bin/python examples/make_notebook.py --no-execute
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nbformat

CELLS = [
    (
        "markdown",
        "# batch_transcode in a notebook\n\nConvert videos to MP3 with a progress bar, "
        "look at the plan and the report, and work in the background with `submit()`.",
    ),
    (
        "code",
        "from batch_transcode import LocalConfig, TranscodeSession\n"
        "from batch_transcode.samples import make_sample_media\n\n"
        "videos = make_sample_media('notebook-videos', count=6)\n"
        "silent = make_sample_media('notebook-silent', count=1, audio=False)  # will fail: no audio\n"
        "paths = videos + silent",
    ),
    ("markdown", "## Plan first\n\nWhat would it take? Nothing is created."),
    ("code", "session = TranscodeSession(LocalConfig(workers=2))\nsession.plan(paths)"),
    (
        "markdown",
        "## Convert, with a progress bar\n\nThe report renders as a page: node use, the task "
        "timeline (a lane per worker, a bar per file, coloured by outcome), then the files, "
        "failures first.",
    ),
    (
        "code",
        "with session:\n"
        "    report = session.convert(\n"
        "        paths, output_dir='notebook-mp3s', show_progress=True, skip_existing=False\n"
        "    )\n"
        "report",
    ),
    ("code", "print(report.summary())"),
    (
        "markdown",
        "The same page as a file of its own (inline CSS and SVG, no script), to attach or "
        "archive; `batch-transcode convert ... --html FILE` writes it too.",
    ),
    (
        "code",
        "page = report.save_html('notebook-report.html')\n"
        "usage = report.usage\n"
        "print(page, f'{usage.utilisation:.0%} of {usage.slots_per_node} workers busy')",
    ),
    ("markdown", "## In the background\n\n`submit()` returns at once; results arrive as files finish."),
    (
        "code",
        "with TranscodeSession(LocalConfig(workers=2)) as s:\n"
        "    job = s.submit(videos, output_dir='notebook-opus', preset='opus')\n"
        "    for result in job.as_completed():\n"
        "        print(result.source.name, '->', result.output.name if result.ok else result.error)\n"
        "    print(job.progress)",
    ),
    (
        "markdown",
        "## On Azure Batch, offline\n\n"
        "The same calls run on Azure Batch. With no Azure account at hand, `OfflineAzure` "
        "runs Azurite (the Azure Storage emulator) and the project's Batch emulator on this "
        "machine; with an account, use `AzureConfig.from_env()` instead of `offline.config()`.",
    ),
    (
        "code",
        "from batch_transcode.testing import OfflineAzure\n\n"
        "offline = OfflineAzure().start()\n"
        "azure = TranscodeSession(offline.config(dedicated_nodes=2))  # on Azure: AzureConfig.from_env()\n"
        "azure.plan(paths, output_dir='notebook-azure-mp3s', price_per_node_hour=0.096)",
    ),
    (
        "markdown",
        "Converting stages the inputs, creates a pool and a job, and removes them all when "
        "the `with` block ends. Should the kernel restart mid-run, "
        "`TranscodeSession.attach(session_id, config, output_dir=...)` picks the job up. "
        "The session planned these files: the report shows the plan beside what the run "
        "used, and the timeline has a lane per node slot over each node's allocated time.",
    ),
    (
        "code",
        "with azure:\n"
        "    print('session', azure.session_id)\n"
        "    azure_report = azure.convert(paths, output_dir='notebook-azure-mp3s', show_progress=True)\n"
        "azure_report",
    ),
    ("code", "offline.stop()"),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in CELLS:
        maker = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(maker(source))
    return nb


def execute(nb: nbformat.NotebookNode) -> None:
    """Run every cell in a scratch folder (the samples and outputs are written there)."""
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="notebook-") as work:
        resources = {"metadata": {"path": work}}
        NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources).execute()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="regenerate examples/notebook.ipynb")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without outputs")
    notebook = build()
    if not parser.parse_args().no_execute:
        execute(notebook)
    nbformat.write(notebook, Path(__file__).with_name("notebook.ipynb"))
