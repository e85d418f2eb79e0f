"""No account key, connection string or SAS signature leaks from a full Azure run."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from batch_transcode import AuthenticationError, TranscodeSession
from batch_transcode.testing import OfflineAzure
from helpers import MediaFactory

pytestmark = pytest.mark.azure


def _sas_urls_of(body: dict[str, Any]) -> tuple[list[str], list[str], dict[str, Any]]:
    """(input URLs, output URLs, the body without them) of one task."""
    body = json.loads(json.dumps(body))
    inputs = [rf.pop("httpUrl") for rf in body.get("resourceFiles") or [] if "httpUrl" in rf]
    outputs = []
    for of in body.get("outputFiles") or []:
        container = of.get("destination", {}).get("container", {})
        if "containerUrl" in container:
            outputs.append(container.pop("containerUrl"))
    return inputs, outputs, body


def test_no_secret_leaks_and_sas_grants_are_narrow(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    inputs = [make_media(tmp_path / "in" / f"clip{i}.mp4") for i in range(6)]
    broken = tmp_path / "in" / "broken.mp4"
    broken.write_bytes(b"not media at all")
    inputs.append(broken)
    before = len(offline.batch.request_log)
    config = offline.config()
    texts: list[str] = [repr(config), str(config)]
    session = TranscodeSession(config)
    deadline = _deadline(config)
    with session:
        deadline = (deadline[0], _deadline(config)[1])
        report = session.convert(inputs, output_dir=tmp_path / "out")
        texts += [repr(session)]
    texts += [repr(report), report.summary(), *(repr(r) for r in report), *(str(r.error) for r in report)]
    assert not report.ok and len(report.failed) == 1  # the broken file: an error text to inspect
    with (
        pytest.raises(AuthenticationError) as bad_key,
        TranscodeSession(offline.config(batch_key="eHh4eA==")),
    ):
        pass
    texts.append(str(bad_key.value))
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info and r.exc_info[1] is not None]

    sigs: set[str] = set()
    bodies: list[str] = []
    command_lines: list[str] = []
    input_urls: list[str] = []
    output_urls: list[str] = []
    for record in offline.batch.request_log[before:]:
        body = record.request_body.decode("utf-8", "replace")
        if record.operation == "Tasks_CreateTaskCollection" and record.status == 200:
            for task in json.loads(body)["value"]:
                ins, outs, rest = _sas_urls_of(task)
                input_urls += ins
                output_urls += outs
                command_lines.append(task["commandLine"])
                bodies.append(json.dumps(rest))
        else:
            bodies.append(body)
        bodies.append(record.response_body.decode("utf-8", "replace"))
    for url in input_urls + output_urls:
        sigs.add(parse_qs(urlsplit(url).query)["sig"][0])
    assert sigs

    env = offline.env
    secrets = {
        "batch key": env["AZURE_BATCH_ACCESS_KEY"],
        "connection string": env["AZURE_STORAGE_CONNECTION_STRING"],
        "storage key": env["AZURE_STORAGE_CONNECTION_STRING"].split("AccountKey=")[1].split(";")[0],
        **{f"sig {i}": s for i, s in enumerate(sorted(sigs))},
    }
    haystacks = {"logs/errors/reprs": texts, "command lines": command_lines, "request bodies": bodies}
    for where, items in haystacks.items():
        for name, secret in secrets.items():
            variants = {secret, unquote(secret)}
            leaked = [t[:200] for t in items if any(v in t for v in variants)]
            assert leaked == [], f"{name} appears in {where}"
    assert any("sig=REDACTED" in t for t in texts)  # SAS URLs are logged, redacted

    # SAS grants: inputs read-only, one blob each; outputs create/write on the container;
    # all expire at the session deadline
    assert len(input_urls) == len(inputs) and len(set(input_urls)) == len(inputs)
    for url in input_urls:
        q = parse_qs(urlsplit(url).query)
        assert q["sp"] == ["r"] and q["sr"] == ["b"], url.split("sig=")[0]
        assert "/inputs/" in urlsplit(url).path
        _assert_expiry(q["se"][0], deadline)
    assert output_urls
    for url in output_urls:
        q = parse_qs(urlsplit(url).query)
        assert q["sr"] == ["c"] and set(q["sp"][0]) == {"c", "w"}, url.split("sig=")[0]
        _assert_expiry(q["se"][0], deadline)


def _deadline(config: Any) -> tuple[dt.datetime, dt.datetime]:
    """The session deadline of a session opened now (a bound: opening takes a while)."""
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=config.session_timeout)
    return at, at


def _assert_expiry(se: str, deadline: tuple[dt.datetime, dt.datetime]) -> None:
    """``se`` is the session deadline: after the earliest it can be, before the latest."""
    expiry = dt.datetime.strptime(se, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    earliest, latest = deadline
    assert earliest - dt.timedelta(seconds=1) <= expiry <= latest, (expiry, deadline)


def test_keyless_run_hands_tasks_narrow_user_delegation_sas_and_logs_none(
    tmp_path: Path, make_media: MediaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    inputs = [make_media(tmp_path / "in" / f"clip{i}.mp4") for i in range(3)]
    with OfflineAzure(entra_id=True) as oa:
        config = oa.config()
        session = TranscodeSession(config)
        deadline = _deadline(config)
        with session:
            deadline = (deadline[0], _deadline(config)[1])
            report = session.convert(inputs, output_dir=tmp_path / "out")
        assert report.ok, report.summary()
        principal = oa.credential.principal_id
        tenant = oa.credential.tenant_id
        input_urls: list[str] = []
        output_urls: list[str] = []
        for record in oa.batch.request_log:
            if record.operation == "Tasks_CreateTaskCollection" and record.status == 200:
                for task in json.loads(record.request_body)["value"]:
                    ins, outs, _rest = _sas_urls_of(task)
                    input_urls += ins
                    output_urls += outs
        assert oa.storage_proxy is not None and oa.storage_proxy.refused == 0  # no key-signed SAS
        assert oa.leaks(timeout=30) == {"pools": [], "jobs": [], "containers": []}
    assert len(input_urls) == len(inputs) and output_urls
    sigs = set()
    for url in input_urls + output_urls:
        q = parse_qs(urlsplit(url).query)
        sigs.add(q["sig"][0])
        # a user-delegation SAS: signed with a key of the session's own principal
        assert q["skoid"] == [principal] and q["sktid"] == [tenant] and q["sks"] == ["b"], url.split("sig=")[
            0
        ]
        assert "skt" in q and "ske" in q and "skv" in q
        _assert_expiry(q["se"][0], deadline)
        assert q["spr"] == ["https"]
    for url in input_urls:
        q = parse_qs(urlsplit(url).query)
        assert q["sp"] == ["r"] and q["sr"] == ["b"] and "/inputs/" in urlsplit(url).path
    for url in output_urls:
        q = parse_qs(urlsplit(url).query)
        assert q["sr"] == ["c"] and set(q["sp"][0]) == {"c", "w"}
    texts = [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    texts += [repr(config), repr(report), *(repr(r) for r in report)]
    for sig in sigs:
        assert not [t[:200] for t in texts if sig in t or unquote(sig) in t], "a SAS signature was logged"
    assert not [t[:200] for t in texts if "eyJhbGciOiAibm9uZSIs" in t], "a bearer token was logged"
