"""HTTP front end of the emulator: routing, auth, faults, validation, headers, request log."""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from batch_transcode.testing._serving import drop_connection

from ._auth import authenticate
from ._errors import BatchServiceError
from ._model import now, rfc1123
from ._rest import MAX_BODY_BYTES, Call, Reply
from ._service import Service
from ._spec import API_VERSION, match_route, validate_body

LOG = logging.getLogger(__name__)

# Classic REST operation names (as in the service's older specs and docs) for the spec's operationIds.
CLASSIC_NAMES: dict[str, str] = {
    "Pools_CreatePool": "Pool_Add",
    "Pools_GetPool": "Pool_Get",
    "Pools_PoolExists": "Pool_Exists",
    "Pools_DeletePool": "Pool_Delete",
    "Pools_ListPools": "Pool_List",
    "Pools_ResizePool": "Pool_Resize",
    "Pools_StopPoolResize": "Pool_StopResize",
    "Pools_UpdatePool": "Pool_Patch",
    "Pools_ReplacePoolProperties": "Pool_UpdateProperties",
    "Pools_EnablePoolAutoScale": "Pool_EnableAutoScale",
    "Pools_DisablePoolAutoScale": "Pool_DisableAutoScale",
    "Pools_EvaluatePoolAutoScale": "Pool_EvaluateAutoScale",
    "Pools_RemoveNodes": "Pool_RemoveNodes",
    "Pools_ListPoolUsageMetrics": "Pool_ListUsageMetrics",
    "Pools_ListSupportedImages": "Account_ListSupportedImages",
    "Pools_ListPoolNodeCounts": "Account_ListPoolNodeCounts",
    "Nodes_ListNodes": "ComputeNode_List",
    "Nodes_GetNode": "ComputeNode_Get",
    "Nodes_ListNodeFiles": "File_ListFromComputeNode",
    "Nodes_GetNodeFile": "File_GetFromComputeNode",
    "Nodes_GetNodeFileProperties": "File_GetPropertiesFromComputeNode",
    "Nodes_DeleteNodeFile": "File_DeleteFromComputeNode",
    "Jobs_CreateJob": "Job_Add",
    "Jobs_GetJob": "Job_Get",
    "Jobs_DeleteJob": "Job_Delete",
    "Jobs_ListJobs": "Job_List",
    "Jobs_TerminateJob": "Job_Terminate",
    "Jobs_UpdateJob": "Job_Patch",
    "Jobs_ReplaceJob": "Job_Update",
    "Jobs_DisableJob": "Job_Disable",
    "Jobs_EnableJob": "Job_Enable",
    "Jobs_GetJobTaskCounts": "Job_GetTaskCounts",
    "Tasks_CreateTask": "Task_Add",
    "Tasks_CreateTaskCollection": "Task_AddCollection",
    "Tasks_ListTasks": "Task_List",
    "Tasks_GetTask": "Task_Get",
    "Tasks_DeleteTask": "Task_Delete",
    "Tasks_TerminateTask": "Task_Terminate",
    "Tasks_ReplaceTask": "Task_Update",
    "Tasks_ReactivateTask": "Task_Reactivate",
    "Tasks_ListSubTasks": "Task_ListSubtasks",
    "Tasks_ListTaskFiles": "File_ListFromTask",
    "Tasks_GetTaskFile": "File_GetFromTask",
    "Tasks_GetTaskFileProperties": "File_GetPropertiesFromTask",
    "Tasks_DeleteTaskFile": "File_DeleteFromTask",
}
_BY_CLASSIC = {v: k for k, v in CLASSIC_NAMES.items()}


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered (or dropped)."""

    method: str
    path: str
    query: dict[str, str]
    operation: str  # the spec's operationId, e.g. "Tasks_CreateTaskCollection"; "" if no route matched
    classic_operation: str  # the classic name, e.g. "Task_AddCollection"
    status: int  # 0 when the connection was dropped without an answer
    request_body: bytes
    response_body: bytes
    error_code: str | None
    fault: str | None = None
    time: float = field(default_factory=time.time)
    seconds: float = 0.0  # how long the emulator took to answer (reading the body to the log entry)
    #: CPU time the answering thread spent on it (the same span): unlike ``seconds``, not
    #: stretched by other threads and processes competing for the machine.
    cpu_seconds: float = 0.0


class OperationCounts(Counter[str]):
    """Requests per operation, keyed by spec operationId; classic names work as keys too."""

    def __missing__(self, key: str) -> int:
        canonical = _BY_CLASSIC.get(key)
        if canonical is not None and canonical != key:
            return self[canonical]
        return 0


class _Dropped(Exception):
    pass


class BatchHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Set by the emulator after construction.
    service: Service
    account: str
    key: str
    tls: bool
    check_bearer: Callable[[str], None] | None
    records: list[RequestRecord]
    records_lock: threading.Lock

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.debug("connection from %s ended with an error", client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: BatchHTTPServer
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    # ------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            return b""
        return self.rfile.read(n) if n > 0 else b""

    def _handle(self) -> None:
        method = self.command
        raw_target = self.path
        split = urlsplit(raw_target)
        raw_path, raw_query = split.path, split.query
        path = unquote(raw_path)
        query = {k: v[0] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        headers = dict(self.headers.items())
        request_id = str(uuid.uuid4())
        stamp = now()
        started, cpu_started = time.perf_counter(), time.thread_time()
        body = self._read_body()
        service = self.server.service
        route, params, path_known = match_route(method, path)
        operation = route.operation_id if route else ""
        classic = CLASSIC_NAMES.get(operation, operation)
        fault: str | None = None
        reply: Reply
        error_code: str | None = None
        dropped = False
        try:
            authenticate(
                account=self.server.account,
                key=self.server.key,
                allow_bearer=self.server.tls,
                method=method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=headers,
                check_bearer=self.server.check_bearer,
                shared_key=self.server.check_bearer is None,
            )
            if route is None:
                if path_known:
                    raise BatchServiceError(
                        405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb."
                    )
                raise BatchServiceError(
                    400, "InvalidUri", "The requested URI does not represent any resource on the server."
                )
            faults = service.injector.request_faults(operation, (classic,))
            if "slow" in faults:
                fault = "slow"
                time.sleep(service.injector.faults.slow_seconds)
            if "throttle" in faults:
                fault = "throttle"
                raise BatchServiceError(
                    429,
                    "TooManyRequests",
                    "The server is currently throttling requests from this account. "
                    "Please retry your request.",
                    headers={"Retry-After": str(service.injector.faults.retry_after_seconds)},
                )
            if "error" in faults:
                fault = "error"
                status = service.injector.pick_server_error()
                if status == 503:
                    raise BatchServiceError(
                        503,
                        "ServerBusy",
                        "The server is currently unable to receive requests. Please retry your request.",
                    )
                raise BatchServiceError(
                    500,
                    "InternalError",
                    "The server encountered an internal error. Please retry the request.",
                )
            if "drop" in faults:
                fault = "drop"
                dropped = True
            if "api-version" not in query:
                raise BatchServiceError(
                    400,
                    "MissingRequiredQueryParameter",
                    "A required query parameter was not specified for this request.",
                    {"QueryParameterName": "api-version"},
                )
            if query["api-version"] != API_VERSION:
                raise BatchServiceError(
                    400,
                    "UnsupportedRequestVersion",
                    "The specified request version is not supported.",
                    {"QueryParameterName": "api-version", "QueryParameterValue": query["api-version"]},
                )
            reply = self._dispatch(
                service, route.operation_id, route.body_ref, route.body_required, params, query, headers, body
            )
        except BatchServiceError as exc:
            error_code = exc.code
            time_text = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
            payload = b"" if method == "HEAD" else exc.body(service.endpoint, request_id, time_text)
            reply = Reply(
                exc.status, payload, {"Content-Type": "application/json;odata=minimalmetadata", **exc.headers}
            )
        except Exception:
            LOG.exception("emulator failed on %s %s", method, path)
            error_code = "InternalError"
            exc2 = BatchServiceError(
                500, "InternalError", "The server encountered an internal error. Please retry the request."
            )
            reply = Reply(
                500, exc2.body(service.endpoint, request_id, ""), {"Content-Type": "application/json"}
            )

        if isinstance(reply.body, dict):
            payload = json.dumps(reply.body).encode("utf-8")
            content_type = "application/json;odata=minimalmetadata"
        else:
            payload = reply.body or b""
            content_type = reply.headers.pop(
                "Content-Type", "application/json;odata=minimalmetadata" if payload else ""
            )
        record = RequestRecord(
            method=method,
            path=path,
            query=query,
            operation=operation,
            classic_operation=classic,
            status=0 if dropped and reply.status < 400 else reply.status,
            request_body=body,
            response_body=b"" if dropped and reply.status < 400 else payload,
            error_code=error_code,
            fault=fault,
            seconds=time.perf_counter() - started,
            cpu_seconds=time.thread_time() - cpu_started,
        )
        with self.server.records_lock:
            self.server.records.append(record)
        if dropped and reply.status < 400:
            LOG.debug("dropping the connection after %s %s", method, path)
            drop_connection(self)
            return
        self.send_response(reply.status)
        out_headers = {
            "request-id": request_id,
            "Date": rfc1123(stamp),
            "DataServiceVersion": "3.0",  # on every answer of the service, errors included
            "X-Content-Type-Options": "nosniff",
            "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        }
        if content_type:
            out_headers["Content-Type"] = content_type
        if (
            (headers.get("return-client-request-id") or "").lower() == "true"
            and headers.get("client-request-id")
        ) or headers.get("client-request-id"):
            out_headers["client-request-id"] = headers["client-request-id"]
        out_headers.update(reply.headers)
        if method == "HEAD":
            out_headers.setdefault("Content-Length", "0")
        else:
            out_headers["Content-Length"] = str(len(payload))
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD" and payload:
            try:
                self.wfile.write(payload)
            except OSError:
                self.close_connection = True

    def _dispatch(
        self,
        service: Service,
        operation: str,
        body_ref: str | None,
        body_required: bool,
        params: dict[str, str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        parsed: Any = None
        if body_ref is not None:
            if len(body) > MAX_BODY_BYTES:
                raise BatchServiceError(
                    413,
                    "RequestBodyTooLarge",
                    "The request body is too large and exceeds the maximum permissible limit.",
                    {"MaxLimit": str(MAX_BODY_BYTES)},
                )
            if body.strip():
                try:
                    parsed = json.loads(body)
                except ValueError as exc:
                    raise BatchServiceError(
                        400,
                        "InvalidRequestBody",
                        "The specified Request Body is not syntactically valid.",
                        {"Reason": f"The body is not valid JSON: {exc}"},
                    ) from exc
                validate_body(body_ref, parsed)
            elif body_required:
                raise BatchServiceError(
                    400,
                    "InvalidRequestBody",
                    "The specified Request Body is not syntactically valid.",
                    {"Reason": "The request body is missing."},
                )
        handler = service.handler(operation)
        if handler is None:
            raise BatchServiceError(
                400,
                "UnsupportedOperation",  # not a service code: the emulator does not implement this operation
                f"The Batch emulator does not implement {operation}.",
            )
        call = Call(
            operation=operation,
            params=params,
            query=query,
            body=parsed,
            headers={k.lower(): v for k, v in headers.items()},
        )
        return handler(call)


def make_server(host: str, port: int, tls: tuple[str, str] | None) -> BatchHTTPServer:
    server = BatchHTTPServer((host, port), Handler)
    if tls is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls[0], tls[1])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server
