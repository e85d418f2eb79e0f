"""OfflineAzure: start, stop, environment, config, missing Azurite, the CLI command."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batch_transcode import AzureConfig, ConfigError, TranscodeError
from batch_transcode.testing import AzuriteNotFoundError, OfflineAzure
from batch_transcode.testing._azurite import find_azurite
from helpers import alive, batch_client, group_members, interruptible, wait_until

pytestmark = pytest.mark.azure


def test_env_config_and_clean_stop() -> None:
    with OfflineAzure() as oa:
        env = oa.env
        assert set(env) == {
            "AZURE_BATCH_ENDPOINT",
            "AZURE_BATCH_ACCOUNT",
            "AZURE_BATCH_ACCESS_KEY",
            "AZURE_STORAGE_CONNECTION_STRING",
        }
        assert env["AZURE_BATCH_ENDPOINT"].startswith("http://127.0.0.1:")
        assert oa.storage_proxy is not None  # the storage front door (the service's error codes)
        assert (
            f"BlobEndpoint=http://127.0.0.1:{oa.storage_proxy.port}/devstoreaccount1"
            in (env["AZURE_STORAGE_CONNECTION_STRING"])
        )
        config = oa.config()
        assert isinstance(config, AzureConfig)
        assert config.batch_endpoint == env["AZURE_BATCH_ENDPOINT"]
        assert config.dedicated_nodes == 2 and config.task_slots_per_node == 2
        assert config.poll_interval <= 0.2 and config.retry.wait_max <= 0.5
        assert oa.config(dedicated_nodes=1, poll_interval=3.0, poll_interval_max=3.0).dedicated_nodes == 1
        assert "***" in repr(config) and env["AZURE_BATCH_ACCESS_KEY"] not in repr(config)

        # both answer, with the unmodified clients
        client = oa.blob_service_client()
        client.create_container("hello")
        assert oa.containers() == ["hello"]
        with batch_client(oa.batch) as batch:
            assert list(batch.list_pools()) == []
        assert oa.leaks() == {"pools": [], "jobs": [], "containers": ["hello"]}
        pid = oa._azurite.pid if oa._azurite else None
        assert pid is not None and alive(pid)
    assert not alive(pid)
    assert group_members(pid) == []
    with pytest.raises(TranscodeError):
        _ = oa.env


def test_no_stray_processes_when_the_body_raises(tmp_path: Path) -> None:
    oa = OfflineAzure(workdir=tmp_path / "oa")
    with pytest.raises(RuntimeError, match="boom"), oa:
        pid = oa._azurite.pid if oa._azurite else None
        endpoint = oa.batch.endpoint
        raise RuntimeError("boom")
    assert pid is not None and not alive(pid) and group_members(pid) == []
    import socket

    port = int(endpoint.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert (tmp_path / "oa").is_dir()  # a given workdir is kept
    oa.stop()  # harmless twice


def test_startup_failure_halfway_stops_azurite(monkeypatch: pytest.MonkeyPatch) -> None:
    from batch_transcode.testing import _batch_emulator

    def broken_start(self: object) -> None:
        raise OSError("cannot bind")

    monkeypatch.setattr(_batch_emulator.BatchEmulator, "start", broken_start)
    oa = OfflineAzure()
    with pytest.raises(OSError, match="cannot bind"):
        oa.start()
    pid = oa._azurite.pid if oa._azurite else None
    assert pid is None  # stopped and forgotten
    assert oa._workdir is not None and not oa._workdir.exists()


def test_azurite_not_found_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURITE_BLOB", str(tmp_path / "nowhere" / "azurite-blob"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import batch_transcode.testing._azurite as azurite_module

    monkeypatch.setattr(azurite_module, "__file__", str(tmp_path / "pkg" / "_azurite.py"))
    with pytest.raises(AzuriteNotFoundError) as info:
        find_azurite()
    message = str(info.value)
    assert "npm install azurite@3.37.0" in message
    assert "npm ci" in message and "AZURITE_BLOB" in message
    assert isinstance(info.value, ConfigError) and isinstance(info.value, TranscodeError)
    with pytest.raises(AzuriteNotFoundError):
        OfflineAzure().start()


def test_azurite_found_in_a_parent_node_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "node_modules" / ".bin" / "azurite-blob"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.delenv("AZURITE_BLOB", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "a"))
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert find_azurite() == str(exe)


def test_cli_emulator_prints_exports_and_stops_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_transcode", "emulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        preexec_fn=interruptible,
    )
    try:
        lines: list[str] = []
        stdout = proc.stdout
        assert stdout is not None

        def read_to_the_comment() -> bool:  # one line a call; the exports come before a "#" line
            line = stdout.readline()
            if not line or line.startswith("#"):
                return True
            lines.append(line.rstrip("\n"))
            return False

        wait_until(read_to_the_comment, timeout=60, interval=0, what="the export lines")
        names = [line.split("=", 1)[0] for line in lines]
        assert names == [
            "export AZURE_BATCH_ENDPOINT",
            "export AZURE_BATCH_ACCOUNT",
            "export AZURE_BATCH_ACCESS_KEY",
            "export AZURE_STORAGE_CONNECTION_STRING",
        ]
        # the lines are valid shell: bash reads them back unchanged
        script = "\n".join(lines) + '\nprintf %s "$AZURE_STORAGE_CONNECTION_STRING"'
        conn = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
        assert conn.startswith("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    port = conn.split("BlobEndpoint=http://127.0.0.1:")[1].split("/")[0]
    import socket

    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", int(port)), timeout=1):
        pass


def test_tls_mode_serves_https_with_a_ca_bundle() -> None:
    with OfflineAzure(tls=True) as oa:
        assert oa.batch.endpoint.startswith("https://")
        assert oa.ca_bundle is not None and oa.ca_bundle.is_file()
        assert oa.env["REQUESTS_CA_BUNDLE"] == str(oa.ca_bundle)
        with batch_client(oa.batch, connection_verify=str(oa.ca_bundle)) as batch:
            assert list(batch.list_pools()) == []


def test_testing_all_is_sorted_and_importable() -> None:
    import batch_transcode.testing as testing

    assert testing.__all__ == sorted(testing.__all__, key=lambda n: (0 if n[:1].isupper() else 1, n))
    for name in testing.__all__:
        assert hasattr(testing, name), name
