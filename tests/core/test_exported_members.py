import types

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
