import subprocess
import sys
import types

import pytest

import batch_transcode


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then the rest.
    group = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return group, name


def test_all_is_sorted() -> None:
    assert batch_transcode.__all__ == sorted(batch_transcode.__all__, key=_isort_key)


def test_every_public_name_is_importable_and_listed() -> None:
    for name in batch_transcode.__all__:
        assert hasattr(batch_transcode, name), name
    public = {
        n
        for n in dir(batch_transcode)
        if not n.startswith("_") and not isinstance(getattr(batch_transcode, n), types.ModuleType)
    }
    public -= {"annotations"}
    assert public <= set(batch_transcode.__all__), public - set(batch_transcode.__all__)


def test_every_error_derives_from_transcode_error() -> None:
    for name in batch_transcode.__all__:
        obj = getattr(batch_transcode, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, batch_transcode.TranscodeError), name


def test_version_comes_from_metadata() -> None:
    from importlib.metadata import version

    assert batch_transcode.__version__ == version("batch-transcode")


def test_import_does_not_load_the_azure_sdk() -> None:
    """``import batch_transcode`` stays fast: the Azure SDK comes with the first Azure call
    (the maintenance names that need it, like ``SessionInfo``, load on first use)."""
    code = (
        "import sys, batch_transcode\n"
        "assert not [m for m in sys.modules if m.startswith(('azure', 'tenacity'))], sys.modules\n"
        "assert batch_transcode.cleanup and batch_transcode.list_sessions and batch_transcode.CleanupReport\n"
        "from batch_transcode import OrphanKind, SessionInfo\n"
        "assert OrphanKind.POOL == 'pool' and SessionInfo.__module__.startswith('batch_transcode._azure')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        batch_transcode.no_such_name  # noqa: B018
