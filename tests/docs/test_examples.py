from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_quickstart_example_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
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
