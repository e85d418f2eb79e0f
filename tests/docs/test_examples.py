from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import NOTHING_LEFT, env_without_azure, partial_files, run_python, wait_until

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
    assert "class='transcode-report'" in html and "no audio stream" in html, "no report page with the failure"
    assert "<svg class='timeline'" in html and "<rect class='bar failed'" in html, "no timeline"
    assert "6/7 converted" in html
    assert (tmp_path / "notebook-mp3s").is_dir()
    # the Azure section, on OfflineAzure started inside the notebook
    assert "estimated cost" in html and "Standard_" in html, "no plan with a price"
    assert "cost at 0.096 per node-hour" in html, "no plan beside the Azure run's actual use"
    assert (tmp_path / "notebook-report.html").is_file()
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


@pytest.fixture
def fastapi_example(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh import of examples/fastapi_app.py on the local backend."""
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLES / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fastapi_app", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _poll(client: Any, url: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    body: dict[str, Any] = {}

    def check() -> bool:
        nonlocal body
        response = client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        return until(body)

    wait_until(check, timeout=120, what=lambda: body)
    return body


def test_fastapi_example_converts_in_the_background(tmp_path: Path, fastapi_example: Any) -> None:
    from fastapi.testclient import TestClient

    from batch_transcode.samples import make_sample_media

    videos = make_sample_media(tmp_path / "in", count=3)
    (tmp_path / "in" / "broken.mp4").write_text("not a video")
    paths = [*map(str, videos), str(tmp_path / "in" / "broken.mp4")]
    app = fastapi_example.app
    with TestClient(app) as client:
        session = app.state.session
        assert "state=open" in repr(session)
        response = client.post("/conversions", json={"paths": paths, "output_dir": str(tmp_path / "out")})
        assert response.status_code == 202, response.text
        url = response.json()["status"]
        body = _poll(client, url, lambda b: b["state"] != "running")
        assert body["state"] == "done"
        assert body["progress"] == {"total": 4, "done": 4, "failed": 1, "cancelled": 0}
        assert len(body["finished"]) == 4
        assert body["report"]["summary"]["converted"] == 3 and body["report"]["summary"]["failed"] == 1
        assert {Path(f["source"]).name: f["status"] for f in body["report"]["files"]}[
            "broken.mp4"
        ] == "failed"
        assert len(list((tmp_path / "out").glob("*.mp3"))) == 3

        bad = client.post("/conversions", json={"paths": [str(tmp_path / "nope.mp4")], "output_dir": "x"})
        assert bad.status_code == 422 and "nope.mp4" in bad.json()["detail"]
        assert client.get("/conversions/unknown").status_code == 404
    assert "state=closed" in repr(session)  # shutdown tore the session down


def test_fastapi_example_cancels_a_conversion(
    tmp_path: Path, fastapi_example: Any, make_media: Callable[..., Path]
) -> None:
    from fastapi.testclient import TestClient

    paths = [str(make_media(tmp_path / "in" / f"long{i}.mp4", "long")) for i in range(6)]
    out = tmp_path / "out"
    app = fastapi_example.app
    with TestClient(app) as client:
        response = client.post(
            "/conversions", json={"paths": paths, "output_dir": str(out), "preset": "flac"}
        )
        assert response.status_code == 202, response.text
        url = response.json()["status"]
        wait_until(lambda: partial_files(out), what="ffmpeg to start writing")
        cancelled = client.delete(url)
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert body["state"] == "cancelled"
        statuses = [f["status"] for f in body["report"]["files"]]
        assert "cancelled" in statuses and len(statuses) == 6
        assert not partial_files(out)


def test_fastapi_example_on_offline_azure(
    tmp_path: Path,
    fastapi_example: Any,
    offline: Any,
    point_env_at: Callable[[Any], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient

    from batch_transcode.samples import make_sample_media

    point_env_at(offline)
    monkeypatch.setenv("TRANSCODE_BACKEND", "azure")
    videos = make_sample_media(tmp_path / "in", count=3)
    app = fastapi_example.app
    with TestClient(app) as client:
        assert app.state.session.backend == "azure" and app.state.session.session_id
        response = client.post(
            "/conversions", json={"paths": list(map(str, videos)), "output_dir": str(tmp_path / "out")}
        )
        assert response.status_code == 202, response.text
        body = _poll(client, response.json()["status"], lambda b: b["state"] != "running")
        assert body["state"] == "done", body
        assert body["report"]["summary"]["converted"] == 3
        assert all(f["task_id"] for f in body["report"]["files"])
    assert len(list((tmp_path / "out").glob("*.mp3"))) == 3
    assert offline.leaks(timeout=60) == NOTHING_LEFT  # the app's shutdown removed the pool
