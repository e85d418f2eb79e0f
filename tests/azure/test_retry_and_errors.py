"""The retry policies and the Azure error translation, with real azure-core exceptions."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from azure.core import exceptions as az

from batch_transcode import (
    AuthenticationError,
    AzureError,
    RetryPolicy,
    ServiceUnavailableError,
    _retry,
)
from batch_transcode._azure._errors import azure_errors, error_code, translate
from batch_transcode._redact import redact
from helpers import run_python


def http_error(
    status: int, message: str = "boom", cls: type[az.HttpResponseError] = az.HttpResponseError
) -> az.HttpResponseError:
    exc = cls(message=message)
    exc.status_code = status
    return exc


def failing(errors: list[BaseException], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (http_error(429), True),
        (http_error(500), True),
        (http_error(503), True),
        (http_error(504), True),
        (http_error(408), True),
        (az.ServiceRequestError("connect refused"), True),
        (az.ServiceResponseError("connection dropped"), True),
        (http_error(400), False),
        (http_error(403), False),
        (http_error(404, cls=az.ResourceNotFoundError), False),
        (http_error(409, cls=az.ResourceExistsError), False),
        (az.ClientAuthenticationError("nope"), False),
        (ValueError("bug"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert _retry.is_transient(exc) is transient


def test_retries_transient_then_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    fn, calls = failing([http_error(503), az.ServiceResponseError("dropped")])
    with caplog.at_level(logging.WARNING, logger="batch_transcode._retry"):
        assert _retry.call(RetryPolicy(attempts=5), "create pool p", fn) == "ok"
    assert len(calls) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "create pool p" in warnings[0].getMessage()
    assert "attempt 1 of 5" in warnings[0].getMessage()
    assert "HttpResponseError 503" in warnings[0].getMessage()
    assert "next attempt in 0.0s" in warnings[0].getMessage()


def test_never_retries_client_errors() -> None:
    fn, calls = failing([http_error(400, "bad request")])
    with pytest.raises(az.HttpResponseError):
        _retry.call(RetryPolicy(attempts=5), "op", fn)
    assert len(calls) == 1


def test_attempts_are_capped_and_last_error_reraised() -> None:
    errors: list[BaseException] = [http_error(500, f"fail {i}") for i in range(10)]
    fn, calls = failing(errors)
    with pytest.raises(az.HttpResponseError, match="fail 2"):
        _retry.call(RetryPolicy(attempts=3), "op", fn)
    assert len(calls) == 3


def test_total_time_is_capped() -> None:
    _retry.set_testing(False)
    errors: list[BaseException] = [http_error(500) for _ in range(100)]
    fn, calls = failing(errors)
    with pytest.raises(az.HttpResponseError):
        _retry.call(
            RetryPolicy(attempts=100, timeout=0.05, wait_initial=0.01, wait_max=0.02, wait_jitter=0), "op", fn
        )
    assert 2 <= len(calls) < 20


def test_backoff_is_exponential_jittered_and_honours_retry_after() -> None:
    import tenacity

    _retry.set_testing(False)
    policy = RetryPolicy(wait_initial=1.0, wait_max=20.0, wait_jitter=0.5)
    wait = _retry._Wait(policy)

    def state(attempt: int, exc: BaseException) -> tenacity.RetryCallState:
        st = tenacity.RetryCallState(None, None, (), {})
        st.attempt_number = attempt
        fut = tenacity.Future(attempt)
        fut.set_exception(exc)
        st.outcome = fut
        return st

    waits = [wait(state(n, http_error(503))) for n in (1, 2, 3, 4, 10)]
    assert 1.0 <= waits[0] <= 1.5
    assert 2.0 <= waits[1] <= 2.5
    assert 4.0 <= waits[2] <= 4.5
    assert 8.0 <= waits[3] <= 8.5
    assert waits[4] == 20.0  # capped
    throttled = http_error(429)

    class Resp:
        def __init__(self) -> None:
            self.headers = {"Retry-After": "7"}

    throttled.response = Resp()  # type: ignore[assignment]
    assert _retry.retry_after(throttled) == 7.0
    assert 7.0 <= wait(state(1, throttled)) <= 20.0
    _retry.set_testing(True)
    assert wait(state(4, throttled)) == 0.0


def test_translate_authentication() -> None:
    err = translate(az.ClientAuthenticationError("Server failed to authenticate the request"), "list pools")
    assert isinstance(err, AuthenticationError)
    assert "list pools" in str(err)
    assert "AZURE_BATCH_ACCESS_KEY" in str(err)
    assert isinstance(translate(http_error(403, "AuthorizationFailure"), "x"), AuthenticationError)


def test_translate_unavailable_and_other() -> None:
    assert isinstance(translate(az.ServiceRequestError("refused"), "x"), ServiceUnavailableError)
    assert isinstance(translate(http_error(503), "x"), ServiceUnavailableError)
    other = translate(
        http_error(400, "The value provided for one of the properties is invalid"), "create job j"
    )
    assert type(other) is AzureError
    assert "create job j" in str(other)
    assert "HTTP 400" in str(other)


def test_azure_errors_chains() -> None:
    original = az.ServiceResponseError("dropped")
    with pytest.raises(ServiceUnavailableError) as info, azure_errors("poll"):
        raise original
    assert info.value.__cause__ is original


def test_error_code_from_storage_style_errors() -> None:
    exc = http_error(409, cls=az.ResourceExistsError)
    exc.error_code = "ContainerAlreadyExists"  # type: ignore[attr-defined]
    assert error_code(exc) == "ContainerAlreadyExists"
    assert error_code(http_error(500)) is None


def test_secrets_are_redacted_from_messages() -> None:
    url = "https://st.blob.core.windows.net/c/b?sv=2024&sig=abc%2Bdef&se=2026"
    assert redact(f"download of {url} failed") == (
        "download of https://st.blob.core.windows.net/c/b?sv=2024&sig=REDACTED&se=2026 failed"
    )
    assert "s3cr3t" not in redact("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=s3cr3t;")
    err = translate(http_error(400, f"ResourceFile {url} could not be read"), "create task")
    assert "abc%2Bdef" not in str(err)


_FIRST_INSTANCES = """
import inspect, threading
from azure.batch import models as bm
from azure.batch._utils.model_base import Model
from batch_transcode import AzureConfig
from batch_transcode._azure._clients import make_batch_client

classes = [c for c in vars(bm).values() if inspect.isclass(c) and issubclass(c, Model)]
assert not any(f"{c.__module__}.{c.__qualname__}" in Model._calculated for c in classes)
make_batch_client(AzureConfig(batch_endpoint="https://acct.region.batch.azure.com",
                              batch_account="acct", batch_key="a2V5", storage_account="s"))
missing = [c.__name__ for c in classes if f"{c.__module__}.{c.__qualname__}" not in Model._calculated]
assert not missing, missing
print(len(classes))
"""


def test_every_batch_model_class_is_prepared_before_threads_make_models() -> None:
    """azure-batch works out a model class's fields on its first instance without a lock;
    the client's construction does that for every class, in one thread, first."""
    proc = run_python("-c", _FIRST_INSTANCES)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 100
