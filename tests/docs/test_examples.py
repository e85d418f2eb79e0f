from __future__ import annotations

import os
from pathlib import Path

from helpers import NOTHING_LEFT, env_without_azure, run_python

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_quickstart_example_runs(tmp_path: Path) -> None:
    proc = run_python(EXAMPLES / "quickstart.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4/4 converted" in proc.stdout
    assert len(list((tmp_path / "quickstart-out").glob("*.mp3"))) == 4


def test_notebook_runs_and_shows_progress_and_report(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    data = [o.get("data", {}) for o in outputs]
    assert any("application/vnd.jupyter.widget-view+json" in d for d in data), "no progress bar widget"
    html = "".join(d.get("text/html", "") for d in data)
    assert "<table>" in html and "no audio stream" in html, "no HTML report with the failure"
    assert "6/7 converted" in html
    assert (tmp_path / "notebook-mp3s").is_dir()
    # the Azure section, on OfflineAzure started inside the notebook
    assert "estimated cost" in html and "Standard_" in html, "no plan with a price"
    assert html.count("6/7 converted") >= 2, "no report of the Azure run"
    widgets = [d for d in data if "application/vnd.jupyter.widget-view+json" in d]
    assert len(widgets) >= 2, "no progress bar for the Azure run"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "session bt-" in text
    azure_mp3s = sorted((tmp_path / "notebook-azure-mp3s").rglob("*.mp3"))
    assert len(azure_mp3s) == 6 and all(p.stat().st_size > 0 for p in azure_mp3s)


def test_embed_in_app_example(tmp_path: Path) -> None:
    from batch_transcode.samples import make_sample_media

    inbox = tmp_path / "inbox"
    make_sample_media(inbox, count=2)
    (inbox / "broken.mp4").write_text("not a video")
    proc = run_python(EXAMPLES / "embed_in_app.py", inbox, tmp_path / "outbox")
    assert proc.returncode == 1, proc.stderr
    assert "could not convert" in proc.stderr and "broken.mp4" in proc.stderr
    assert "2/3 converted" in proc.stderr
    assert len(list((tmp_path / "outbox").glob("*.mp3"))) == 2
    missing = run_python(EXAMPLES / "embed_in_app.py", tmp_path / "nope", tmp_path / "o", timeout=60)
    assert missing.returncode == 2 and "cannot start" in missing.stderr


def test_azure_quickstart_example_runs_on_offline_azure(tmp_path: Path) -> None:
    from batch_transcode.testing import OfflineAzure

    with OfflineAzure() as oa:
        proc = run_python(
            EXAMPLES / "azure_quickstart.py", cwd=tmp_path, env={**os.environ, **oa.env}, timeout=300
        )
        leaks = oa.leaks(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "4/4 converted" in proc.stdout
    assert "estimated cost" in proc.stdout and "per node-hour" in proc.stdout  # the plan
    outputs = sorted((tmp_path / "azure-quickstart-out").glob("*.mp3"))
    assert len(outputs) == 4 and all(p.stat().st_size > 0 for p in outputs)
    assert leaks == NOTHING_LEFT


def test_azure_quickstart_example_without_settings_says_what_to_set(tmp_path: Path) -> None:
    proc = run_python(EXAMPLES / "azure_quickstart.py", cwd=tmp_path, env=env_without_azure(), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "cannot start" in proc.stderr and "AZURE_BATCH_ENDPOINT" in proc.stderr
