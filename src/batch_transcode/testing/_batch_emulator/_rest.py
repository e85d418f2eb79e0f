"""What the REST operations share: the call and reply types, limits, id checks, entity
headers, list paging and file replies, and :class:`Operations`, the base of the
operation groups.

Every REST operation is a method ``op_<operationId>`` of an :class:`Operations`
subclass (``op_Tasks_ListTasks`` answers ``Tasks_ListTasks``); it takes a :class:`Call`
and returns a :class:`Reply`. The groups work on the account state they are given.

Lists follow the Azure Batch REST API list operations (e.g. List Tasks,
https://learn.microsoft.com/rest/api/batchservice/tasks/list-tasks): ``$filter``,
``$select``, ``maxresults`` (1 to 1000, default 1000) and an ``odata.nextLink`` that
carries the next ``$skiptoken``.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from ._errors import BatchServiceError, exists, invalid_query, invalid_value, not_found
from ._model import JSON, Job, Pool, Task, iso, rfc1123
from ._odata import apply_select, parse_filter
from ._state import AccountState

MAX_RESULTS = 1000  # the most items of one list page
MAX_BODY_BYTES = 1024 * 1024  # the largest request body
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class Call:
    """One request, routed: its operationId, path parameters, query, parsed JSON body and
    headers (lower-case names)."""

    operation: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class Reply:
    """An answer: status, a JSON document or bytes, and headers."""

    status: int
    body: JSON | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Call], Reply]


def content_type(path: Path) -> str:
    """The content type the service serves a node file with: ``text/plain`` for text
    files (``stdout.txt``, ``stderr.txt``), else ``application/octet-stream``."""
    return "text/plain" if path.suffix.lower() in (".txt", ".log") else "application/octet-stream"


def check_id(value: Any, prop: str = "id") -> str:
    """``value`` if it is a valid Batch id, else ``InvalidPropertyValue`` for ``prop``."""
    if not isinstance(value, str) or not _ID.match(value):
        raise invalid_value(
            prop,
            value,
            "The id can contain only letters, digits, hyphens and underscores, up to 64 characters.",
        )
    return value


def new_id(value: Any, existing: Mapping[str, object], kind: str) -> str:
    """``value`` if it is a valid id that no ``kind`` in ``existing`` (by lower-case id)
    has yet: ``InvalidPropertyValue``, then ``<kind>Exists``, as the service checks."""
    ident = check_id(value)
    if ident.lower() in existing:
        raise exists(kind)
    return ident


def update_properties(spec: JSON, body: JSON, *, keep: Collection[str] = ()) -> None:
    """An Update (PATCH): each property of ``body`` replaces the resource's, but those in
    ``keep``; the properties the body leaves out stay."""
    for key, value in body.items():
        if key not in keep:
            spec[key] = copy.deepcopy(value)


def replace_properties(spec: JSON, body: JSON, properties: Iterable[str]) -> None:
    """A Replace (PUT): each of ``properties`` takes the body's value, and those the body
    leaves out go back to their defaults (are removed)."""
    for key in properties:
        if key in body:
            spec[key] = copy.deepcopy(body[key])
        else:
            spec.pop(key, None)


class Operations:
    """A group of REST operations on the account ``state``."""

    def __init__(self, state: AccountState) -> None:
        self.state = state

    def handlers(self) -> dict[str, Handler]:
        """operationId -> the ``op_<operationId>`` method that answers it."""
        return {name.removeprefix("op_"): getattr(self, name) for name in dir(self) if name.startswith("op_")}

    @staticmethod
    def _entity_headers(res: Pool | Job | Task, url: str | None = None) -> dict[str, str]:
        """``ETag``, ``Last-Modified`` and (with ``url``) ``DataServiceId`` of a resource."""
        headers = {"ETag": res.etag, "Last-Modified": rfc1123(res.last_modified)}
        if url:
            headers["DataServiceId"] = url
        return headers

    def _reply(self, status: int, res: Pool | Job | Task, body: JSON | None = None) -> Reply:
        """``status`` with ``res``'s entity headers, its URL as ``DataServiceId``."""
        return Reply(status, body, self._entity_headers(res, f"{self.state.endpoint}{res.path}"))

    def _touched(self, status: int, res: Pool | Job | Task) -> Reply:
        """The answer to a change of ``res``'s properties: a new ETag, then :meth:`_reply`."""
        res.touch()
        return self._reply(status, res)

    def _created(self, res: Pool | Job | Task) -> Reply:
        """A Create's answer: 201, with the new resource's URL as ``Location`` too."""
        url = f"{self.state.endpoint}{res.path}"
        return Reply(201, None, {**self._entity_headers(res, url), "Location": url})

    def _element(self, call: Call, doc: JSON, kind: str) -> JSON:
        """A Get's document: ``doc`` with the call's ``$select``, an element of ``kind``."""
        doc = apply_select(doc, call.query.get("$select"))
        doc["odata.metadata"] = f"{self.state.endpoint}/$metadata#{kind}/@Element"
        return doc

    def _get(self, call: Call, res: Pool | Job, kind: str) -> Reply:
        """Get Pool / Get Job (under the lock): ``res``, its ETag and Last-Modified."""
        doc = self._element(call, res.to_json(self.state.endpoint), kind)
        return Reply(200, doc, self._entity_headers(res))

    def _list_all(self, call: Call, resources: Mapping[str, Pool] | Mapping[str, Job], kind: str) -> Reply:
        """List Pools / List Jobs: every one of ``resources`` that the call asks for."""
        with self.state.lock:
            docs = [r.to_json(self.state.endpoint) for r in resources.values()]
        return self._list(call, docs, kind, f"/{kind}")

    @staticmethod
    def _paging(call: Call) -> tuple[str | None, int]:
        """``(continue after this key, page size)`` from ``$skiptoken`` and ``maxresults``.

        A continuation names the last item of the page before (its id, lower case): the
        next page starts after it. Items that begin to match the query between pages are
        then listed if they sort after it and missed if before, and no item that matched
        all along is skipped, however the list changes in between (an offset would skip
        one for each item that began to match ahead of it)."""
        raw_max = call.query.get("maxresults")
        page = MAX_RESULTS
        if raw_max is not None:
            try:
                page = int(raw_max)
            except ValueError as exc:
                raise invalid_query("maxresults", raw_max) from exc
            if not 1 <= page <= MAX_RESULTS:
                raise BatchServiceError(
                    400,
                    "OutOfRangeQueryParameterValue",
                    "A query parameter specified in the request URI is outside the permissible range.",
                    {"QueryParameterName": "maxresults", "QueryParameterValue": raw_max},
                )
        return call.query.get("$skiptoken") or None, page

    def _page_reply(self, call: Call, chunk: list[JSON], after: str | None, kind: str, path: str) -> Reply:
        """A page of ``chunk``; ``after``: the key of its last item when more follow."""
        body: JSON = {
            "odata.metadata": f"{self.state.endpoint}/$metadata#{kind}",
            "value": [apply_select(doc, call.query.get("$select")) for doc in chunk],
        }
        if after is not None:
            q = {"api-version": call.query.get("api-version", "")}
            for name in ("$filter", "$select", "$expand", "maxresults"):
                if call.query.get(name):
                    q[name] = call.query[name]
            q["$skiptoken"] = after
            body["odata.nextLink"] = f"{self.state.endpoint}{path}?{urlencode(q, quote_via=quote, safe='$')}"
        return Reply(200, body)

    def _list(self, call: Call, items: list[JSON], kind: str, path: str) -> Reply:
        """One page of ``items`` after ``$filter``, with ``$select`` and ``odata.nextLink``."""
        predicate = parse_filter(call.query.get("$filter"))
        after, page = self._paging(call)

        def key(doc: JSON) -> str:
            return str(doc.get("id", doc.get("name", ""))).lower()

        # The service lists by id (case-insensitively), which keeps paging stable.
        matched = sorted((d for d in items if predicate(d) and (after is None or key(d) > after)), key=key)
        chunk = matched[:page]
        return self._page_reply(call, chunk, key(chunk[-1]) if len(matched) > page else None, kind, path)

    @staticmethod
    def _file_reply(base: Path, rel: str, url: str, head: bool, headers: dict[str, str]) -> Reply:
        """Get File / Get File Properties (HEAD) of ``base/rel``, honouring ``ocp-range``."""
        target = (base / rel).resolve()
        if base.resolve() not in (target, *target.parents) or not target.is_file():
            raise not_found("File", rel)
        st = target.stat()
        mtime = datetime.fromtimestamp(st.st_mtime, UTC)
        data = b"" if head else target.read_bytes()
        out_headers = {
            "Content-Type": content_type(target),
            "ocp-creation-time": rfc1123(mtime),
            "ocp-batch-file-isdirectory": "False",
            # the service sends the file's URL percent-encoded (https%3A%2F%2F...)
            "ocp-batch-file-url": quote(url, safe=""),
            "ocp-batch-file-mode": f"0o{st.st_mode:o}",
            "Last-Modified": rfc1123(mtime),
            "ETag": f'"0x{int(st.st_mtime_ns):X}"',
        }
        rng = headers.get("ocp-range") or headers.get("range")
        if rng and not head:
            m = re.match(r"bytes=(\d*)-(\d*)", rng)
            if m:
                start = int(m.group(1) or 0)
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                data = data[start : end + 1]
        if head:
            out_headers["Content-Length"] = str(st.st_size)
        return Reply(200, data, out_headers)

    @staticmethod
    def _delete_file(base: Path, rel: str, recursive: bool) -> Reply:
        """Delete Task File / Delete Node File: a file, an empty directory, or (with
        ``recursive``) a directory and everything in it; 200 as the service answers."""
        target = (base / rel).resolve()
        if base.resolve() not in target.parents or not target.exists():
            raise not_found("File", rel)
        if target.is_dir():
            if any(target.iterdir()) and not recursive:
                # "If recursive is false then the directory must be empty or deletion will
                # fail" (REST reference); the service's error code for it is not documented.
                raise BatchServiceError(
                    409,
                    "DirectoryNotEmpty",
                    "The directory is not empty; pass recursive=true to delete it with its content.",
                )
            shutil.rmtree(target)
        else:
            target.unlink()
        return Reply(200, None)

    def _list_files(self, call: Call, base: Path, url_prefix: str, kind: str, path: str) -> Reply:
        """List Files under ``base`` (``recursive=true`` walks subdirectories)."""
        recursive = (call.query.get("recursive") or "false").lower() == "true"
        docs: list[JSON] = []
        if base.is_dir():
            walker: Iterator[Path] = base.rglob("*") if recursive else base.iterdir()
            for p in sorted(walker):
                rel = p.relative_to(base).as_posix()
                st = p.stat()
                doc: JSON = {"name": rel, "url": f"{url_prefix}/{quote(rel)}", "isDirectory": p.is_dir()}
                if p.is_file():
                    t = iso(datetime.fromtimestamp(st.st_mtime, UTC))
                    doc["properties"] = {
                        "creationTime": t,
                        "lastModified": t,
                        "contentLength": str(st.st_size),  # a string: int64 "format" of a string type
                        "contentType": content_type(p),
                        "fileMode": f"0o{st.st_mode:o}",
                    }
                docs.append(doc)
        return self._list(call, docs, kind, path)


class FileOperations(Operations):
    """Get File, Get File Properties, Delete File and List Files of a directory on a node:
    a compute node's disk (``Nodes_*``) or a task's directory (``Tasks_*``). A subclass
    says where the call's files are (:meth:`_files`) and names the four operations after
    its group (``op_Nodes_ListNodeFiles = FileOperations.list_files``)."""

    def _files(self, call: Call) -> tuple[Path, str]:
        """The directory of the call's files and the path of their URLs (under the lock)."""
        raise NotImplementedError

    def get_file(self, call: Call, head: bool = False) -> Reply:
        with self.state.lock:
            base, path = self._files(call)
            rel = call.params["filePath"]
            url = f"{self.state.endpoint}{path}/{quote(rel)}"
            return self._file_reply(base, rel, url, head, call.headers)

    def get_file_properties(self, call: Call) -> Reply:
        return self.get_file(call, head=True)

    def delete_file(self, call: Call) -> Reply:
        with self.state.lock:
            base, _ = self._files(call)
            recursive = (call.query.get("recursive") or "false").lower() == "true"
            return self._delete_file(base, call.params["filePath"], recursive)

    def list_files(self, call: Call) -> Reply:
        with self.state.lock:
            base, path = self._files(call)
            return self._list_files(call, base, f"{self.state.endpoint}{path}", "files", path)
