"""`batch-transcode emulator`: keyless exports, and the extra it needs."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import MediaFactory, env_without_azure, interruptible, run_python, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _exports(*options: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start the emulator command; its exported variables once it printed them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_transcode", "emulator", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=interruptible,
    )
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None

    def read_to_the_comment() -> bool:
        line = stdout.readline()
        if not line or line.startswith("#"):
            return True
        lines.append(line.rstrip("\n"))
        return False

    wait_until(read_to_the_comment, timeout=90, interval=0, what="the export lines")
    script = "\n".join(lines) + "\nenv -0"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env={}).stdout
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    return proc, {k: v for k, v in env.items() if k not in ("PWD", "SHLVL", "_")}


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=30)  # reads and closes the pipes
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.azure
def test_entra_id_prints_the_identity_endpoint_and_no_key() -> None:
    proc, env = _exports("--entra-id")
    try:
        assert env["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")
        assert len(env["IDENTITY_HEADER"]) >= 32
        assert env["AZURE_BATCH_ENDPOINT"].startswith("https://127.0.0.1:")
        assert not {"AZURE_BATCH_ACCESS_KEY", "AZURE_STORAGE_CONNECTION_STRING"} & set(env)
    finally:
        _stop(proc)
    assert proc.returncode == 0


@pytest.mark.azure
def test_the_docs_steps_run_the_public_cloud_app_offline(tmp_path: Path, make_media: MediaFactory) -> None:
    """docs/offline-testing.md, "Run your own app offline": the emulator's exports, then
    the app, unchanged."""
    videos = [make_media(tmp_path / f"clip{i}.mp4") for i in range(2)]
    proc, exported = _exports("--intercept", "--entra-id", "--region", "northeurope")
    try:
        assert exported["AZURE_BATCH_ENDPOINT"] == "https://devbatch.northeurope.batch.azure.com"
        assert exported["HTTPS_PROXY"].startswith("http://127.0.0.1:")
        app = run_python(
            ROOT / "examples" / "public_cloud_app.py",
            tmp_path / "mp3s",
            *videos,
            env=env_without_azure() | exported,
            timeout=300,
        )
        assert app.returncode == 0, app.stdout + app.stderr
        assert sorted(p.name for p in (tmp_path / "mp3s").iterdir()) == ["clip0.mp3", "clip1.mp3"]
    finally:
        _stop(proc)
    assert proc.returncode == 0


def test_without_the_testing_extra_it_says_which_extra_to_install() -> None:
    # jsonschema made unimportable, as on an installation without the extra
    code = (
        "import sys; sys.modules['jsonschema'] = None\n"
        "from batch_transcode._cli import main\n"
        "sys.exit(main(['emulator']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "pip install 'batch-transcode[testing]'" in done.stderr
    assert "jsonschema" in done.stderr and "Traceback" not in done.stderr
