"""Replay recorded Azure Batch service traffic against the emulator and print how far they agree.

Microsoft records the official ``azure-batch`` SDK tests against the live service
(public repository Azure/azure-sdk-assets, folder
``python/sdk/batch/azure-batch/tests/recordings/``). Give this script a directory of
those recording files (JSON, ``{"Entries": [...]}``); each recording is replayed on a
fresh emulator, its requests in order, and three figures are printed:

- status codes: the share of in-scope operations answered with the service's status;
- response keys: the share of the service's response keys (JSON paths) that the
  emulator's answer also has;
- default values: the share of the values the service filled in itself (a key no
  request of the recording set, with a value that is not an id, a time, an ETag, a
  state or a count) that the emulator answers with the same value.

The replay rewrites ``api-version`` to the emulator's (2025-06-01), collapses polling
runs (consecutive identical requests count once, compared with the last answer), follows
the emulator's own ``odata.nextLink`` where the recording has a sanitized
``$skiptoken``, and creates the pools a recording uses without creating them (the SDK
tests make those in a preparer that is not recorded) from the first answer the
recording shows for them. An operation is out of scope when the emulator does not
implement it (it answers ``UnsupportedOperation``)::

    .venv/bin/python benchmarks/conformance.py /tmp/batch-recordings
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest, HttpResponse

from batch_transcode.testing import BatchEmulator

API_VERSION = "2025-06-01"
#: Seconds the emulator takes to allocate nodes (the service takes minutes): long enough
#: that a pool is still resizing right after it is created, as the recordings show.
ALLOCATION_DELAY = 1.0
#: How long a polled request is repeated for the emulator to reach the recorded state.
POLL_SECONDS = 10.0

#: Keys whose values are made up per call or per resource: never "default values".
VOLATILE = frozenset(
    {
        "odata.metadata",
        "odata.nextLink",
        "id",
        "url",
        "eTag",
        "lastModified",
        "creationTime",
        "state",
        "previousState",
        "stateTransitionTime",
        "previousStateTransitionTime",
        "allocationState",
        "allocationStateTransitionTime",
        "startTime",
        "endTime",
        "timestamp",
        "poolId",
        "currentDedicatedNodes",
        "currentLowPriorityNodes",
        "affinityId",
        "ipAddress",
        "publicIPAddress",
        "publicFQDN",
        "allocationTime",
        "lastBootTime",
        "nodeUrl",
        "taskRootDirectory",
        "taskRootDirectoryUrl",
        "version",
        "lastUpdateTime",
        "message",
        "value",
    }
)

#: Properties the 2025-06-01 API no longer has (the certificates feature and the node
#: communication mode were retired): dropped from replayed requests, not counted in answers.
RETIRED = frozenset({"certificateReferences", "targetNodeCommunicationMode", "currentNodeCommunicationMode"})

#: A pool a recording uses but does not create is made with these properties of its
#: first recorded answer (those Create Pool accepts and that leave it steady).
CREATE_POOL_KEYS = (
    "id",
    "displayName",
    "vmSize",
    "virtualMachineConfiguration",
    "networkConfiguration",
    "userAccounts",
    "metadata",
    "taskSlotsPerNode",
    "taskSchedulingPolicy",
    "startTask",
    "targetNodeCommunicationMode",
)


@dataclass
class Tally:
    ops: int = 0
    status_equal: int = 0
    keys: int = 0
    keys_present: int = 0
    defaults: int = 0
    defaults_equal: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.ops += other.ops
        self.status_equal += other.status_equal
        self.keys += other.keys
        self.keys_present += other.keys_present
        self.defaults += other.defaults
        self.defaults_equal += other.defaults_equal
        self.misses.extend(other.misses)


def without_retired(doc: Any) -> Any:
    """``doc`` without the properties in :data:`RETIRED`, at any depth."""
    if isinstance(doc, dict):
        return {k: without_retired(v) for k, v in doc.items() if k not in RETIRED}
    if isinstance(doc, list):
        return [without_retired(v) for v in doc]
    return doc


def send(client: BatchClient, request: HttpRequest) -> HttpResponse:
    """The emulator's answer, error or not (the client's error policy raises on errors)."""
    try:
        return client.send_request(request)
    except HttpResponseError as exc:
        if exc.response is None:
            raise
        return exc.response  # type: ignore[return-value]


def leaves(doc: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of every key of ``doc``; a list item is addressed by its ``id``
    or ``name`` when it has one (``value[batch_ade]``), else by position."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            sub = f"{path}.{key}" if path else key
            yield sub, value
            yield from leaves(value, sub)
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            label = str(i)
            if isinstance(item, dict):
                label = str(item.get("id") or item.get("poolId") or item.get("name") or i)
                if label.startswith("tvmps_"):  # node ids are made up by the service
                    label = str(i)
            yield from leaves(item, f"{path}[{label}]")


def shape(path: str) -> str:
    """A path with list labels dropped: what a request sets, wherever the item is."""
    return re.sub(r"\[[^]]*\]", "[]", path)


def requested(bodies: list[Any]) -> set[tuple[str, str]]:
    """(key path shape without the list and the resource prefix, value) pairs the requests set."""
    out: set[tuple[str, str]] = set()
    for body in bodies:
        for path, value in leaves(body):
            if not isinstance(value, dict | list):
                tail = shape(path).removeprefix("value[].")
                out.add((tail.lower(), json.dumps(value).lower()))
    return out


def is_requested(path: str, value: Any, sent: set[tuple[str, str]]) -> bool:
    tail = shape(path).removeprefix("value[].").lower()
    text = json.dumps(value).lower()
    # a request for a resource sets its properties at the root (Create Pool) or under an
    # auto pool / job property: match on the path suffix
    return any(
        (text == v) and (tail == k or tail.endswith("." + k) or k.endswith("." + tail)) for k, v in sent
    )


def compare(service: Any, ours: Any, sent: set[tuple[str, str]], tally: Tally, where: str) -> None:
    if not isinstance(service, dict):
        return
    mine = dict(leaves(ours)) if isinstance(ours, dict) else {}
    for path, value in leaves(service):
        tally.keys += 1
        if path in mine:
            tally.keys_present += 1
        else:
            tally.misses.append(f"{where}: missing key {path}")
        key = "odata" if "odata." in path else path.rsplit(".", 1)[-1].split("[", 1)[0]
        if (
            isinstance(value, dict | list)
            or key in VOLATILE
            or key == "odata"
            or is_requested(path, value, sent)
        ):
            continue
        if "[" in path.rsplit(".", 1)[-1] or path.split(".")[0] in ("values",):
            continue
        tally.defaults += 1
        if path in mine and mine[path] == value:
            tally.defaults_equal += 1
        else:
            tally.misses.append(
                f"{where}: default {path} = {value!r}, emulator {mine.get(path, '<missing>')!r}"
            )


def collapse(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive identical GETs (polling) count once, with the last answer; such an
    entry is marked ``"Polled"`` and replayed as a poll (see :func:`poll`)."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        key = (entry["RequestMethod"], entry["RequestUri"], json.dumps(entry.get("RequestBody")))
        if entry["RequestMethod"] != "GET" or "skiptoken" in entry["RequestUri"]:  # not polling
            out.append(entry)
        elif (
            out
            and (out[-1]["RequestMethod"], out[-1]["RequestUri"], json.dumps(out[-1].get("RequestBody")))
            == key
        ):
            out[-1] = {**entry, "Polled": True}
        else:
            out.append(entry)
    return out


def settled(entry: dict[str, Any], status: int, ours: Any) -> bool:
    """Whether a polled answer reached the status and state the service's last answer shows."""
    service = entry.get("ResponseBody")
    if status != entry["StatusCode"]:
        return False
    if not isinstance(service, dict) or not isinstance(ours, dict):
        return True
    keys = ("state", "allocationState")
    if "value" in service and isinstance(service["value"], list) and isinstance(ours.get("value"), list):
        return [tuple(d.get(k) for k in keys) for d in service["value"]] == [
            tuple(d.get(k) for k in keys) for d in ours["value"]
        ]
    return all(service.get(k) == ours.get(k) for k in keys if k in service)


def prepare_pools(client: BatchClient, entries: list[dict[str, Any]]) -> list[Any]:
    """Create the pools the recording uses before (or without) creating them; the bodies sent."""
    bodies: list[Any] = []
    created: set[str] = set()
    for entry in entries:
        path = urlsplit(entry["RequestUri"]).path
        if (
            entry["RequestMethod"] == "POST"
            and path == "/pools"
            and isinstance(entry.get("RequestBody"), dict)
        ):
            created.add(str(entry["RequestBody"].get("id", "")).lower())
            continue
        m = re.match(r"^/pools/([^/]+)", path)
        if not m or m.group(1).lower() in created:
            continue
        pool_id = m.group(1)
        created.add(pool_id.lower())
        first = next(
            (
                e["ResponseBody"]
                for e in entries
                if urlsplit(e["RequestUri"]).path == f"/pools/{pool_id}"
                and e["RequestMethod"] == "GET"
                and e["StatusCode"] == 200
                and isinstance(e.get("ResponseBody"), dict)
            ),
            None,
        )
        if first is None:
            continue  # the recording never finds it: nothing to prepare
        spec = copy.deepcopy({k: v for k, v in first.items() if k in CREATE_POOL_KEYS})
        for account in spec.get("userAccounts") or []:
            account.setdefault("password", "Replayed-1")  # answers never show passwords
        spec.setdefault("id", pool_id)
        response = send(
            client, HttpRequest("POST", f"/pools?api-version={API_VERSION}", json=without_retired(spec))
        )
        if response.status_code != 201:  # the recording's requests on it will show it
            print(f"  could not prepare pool {pool_id}: {response.status_code} {response.text()[:300]}")
            continue
        bodies.append(spec)
    return bodies


def replay(path: Path, verbose: bool) -> Tally:
    data = json.loads(path.read_text("utf-8"))
    entries = collapse(data["Entries"])
    tally = Tally()
    name = path.name.removeprefix("test_batch.pyTestBatch").removesuffix(".json")
    with BatchEmulator(allocation_delay=ALLOCATION_DELAY) as emulator:
        client = BatchClient(
            emulator.endpoint, AzureNamedKeyCredential(emulator.account, emulator.key), retry_total=0
        )
        sent: list[Any] = prepare_pools(client, entries)
        next_link: str | None = None
        for i, entry in enumerate(entries):
            split = urlsplit(entry["RequestUri"])
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            query["api-version"] = API_VERSION
            url = f"{split.path}?{urlencode(query)}"
            if query.get("$skiptoken") == "Sanitized" and next_link:
                nxt = urlsplit(next_link)
                url = f"{nxt.path}?{nxt.query}"
            body = without_retired(entry.get("RequestBody"))
            request = HttpRequest(entry["RequestMethod"], url, json=body if body is not None else None)
            deadline = time.monotonic() + POLL_SECONDS
            while True:
                response = send(client, request)
                ours: Any = None
                try:
                    ours = response.json() if response.content else None
                except ValueError:
                    ours = None
                polled = entry.get("Polled") and time.monotonic() < deadline
                if not polled or settled(entry, response.status_code, ours):
                    break
                time.sleep(0.1)
            if isinstance(ours, dict) and ours.get("code") == "UnsupportedOperation":
                if verbose:
                    print(f"  {name}#{i} out of scope: {entry['RequestMethod']} {split.path}")
                continue
            if body is not None:
                sent.append(body)
            next_link = ours.get("odata.nextLink") if isinstance(ours, dict) else None
            where = f"{name}#{i} {entry['RequestMethod']} {split.path}"
            tally.ops += 1
            if response.status_code == entry["StatusCode"]:
                tally.status_equal += 1
            else:
                tally.misses.append(f"{where}: status {response.status_code}, service {entry['StatusCode']}")
            service_body = without_retired(entry.get("ResponseBody"))
            if isinstance(service_body, dict):
                compare(service_body, ours, requested(sent), tally, where)
            for header in ("DataServiceVersion",):
                if header in entry.get("ResponseHeaders", {}):
                    tally.keys += 1
                    if response.headers.get(header) == entry["ResponseHeaders"][header]:
                        tally.keys_present += 1
                    else:
                        tally.misses.append(f"{where}: header {header} missing")
    return tally


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}% ({a}/{b})" if b else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a directory of recording files (*.json)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every difference")
    args = parser.parse_args()
    files = sorted(args.directory.glob("*.json"))
    if not files:
        print(f"no recordings (*.json) in {args.directory}", file=sys.stderr)
        return 2
    total = Tally()
    for file in files:
        tally = replay(file, args.verbose)
        total.add(tally)
        print(
            f"{file.name}: {tally.ops} operations, status {pct(tally.status_equal, tally.ops)}, "
            f"keys {pct(tally.keys_present, tally.keys)}, "
            f"defaults {pct(tally.defaults_equal, tally.defaults)}"
        )
        if args.verbose:
            for miss in tally.misses:
                print(f"  {miss}")
    print()
    print(f"recordings:      {len(files)}")
    print(f"status codes:    {pct(total.status_equal, total.ops)}")
    print(f"response keys:   {pct(total.keys_present, total.keys)}")
    print(f"default values:  {pct(total.defaults_equal, total.defaults)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
