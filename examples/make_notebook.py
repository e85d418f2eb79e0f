"""Regenerates examples/notebook.ipynb from the cells below (outputs are not stored)."""

from __future__ import annotations

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
    ("markdown", "## Convert, with a progress bar\n\nThe report renders as a table, failures first."),
    (
        "code",
        "with session:\n"
        "    report = session.convert(\n"
        "        paths, output_dir='notebook-mp3s', show_progress=True, skip_existing=False\n"
        "    )\n"
        "report",
    ),
    ("code", "print(report.summary())"),
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
        "azure.plan(paths, price_per_node_hour=0.096)",
    ),
    (
        "markdown",
        "Converting stages the inputs, creates a pool and a job, and removes them all when "
        "the `with` block ends. Should the kernel restart mid-run, "
        "`TranscodeSession.attach(session_id, config, output_dir=...)` picks the job up.",
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


if __name__ == "__main__":
    nbformat.write(build(), Path(__file__).with_name("notebook.ipynb"))
