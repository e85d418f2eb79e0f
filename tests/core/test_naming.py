from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_transcode import InputError, MissingInputError, OutputCollisionError
from batch_transcode._naming import discover, plan_work, validate_inputs


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_layout_is_kept_relative_to_common_parent(tmp_path: Path) -> None:
    a = _touch(tmp_path / "in" / "day1" / "talk.mp4")
    b = _touch(tmp_path / "in" / "day2" / "talk.mp4")
    items = plan_work([a, b], tmp_path / "out", ["mp3"])
    assert [i.outputs[0] for i in items] == [tmp_path / "out/day1/talk.mp3", tmp_path / "out/day2/talk.mp3"]
    assert [i.relative_outputs[0] for i in items] == ["day1/talk.mp3", "day2/talk.mp3"]
    assert [i.relative_source for i in items] == ["day1/talk.mp4", "day2/talk.mp4"]


def test_inner_dots_are_kept(tmp_path: Path) -> None:
    a = _touch(tmp_path / "a.b.c.mp4")
    noext = _touch(tmp_path / "README")
    items = plan_work([a, noext], tmp_path / "out", ["mp3"])
    assert [i.outputs[0].name for i in items] == ["a.b.c.mp3", "README.mp3"]


def test_two_inputs_for_one_output_raise_before_work(tmp_path: Path) -> None:
    a = _touch(tmp_path / "song.mp4")
    b = _touch(tmp_path / "song.mkv")
    with pytest.raises(OutputCollisionError) as info:
        plan_work([a, b], tmp_path / "out", ["mp3"])
    assert "song.mp3" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_output_may_not_overwrite_its_source(tmp_path: Path) -> None:
    a = _touch(tmp_path / "song.flac")
    with pytest.raises(OutputCollisionError):
        plan_work([a], tmp_path, ["flac"])


def test_names_equal_after_case_folding_do_not_collide(tmp_path: Path) -> None:
    a = _touch(tmp_path / "Song.mp4")
    b = _touch(tmp_path / "song.mp4")
    items = plan_work([a, b], tmp_path / "out", ["mp3"])
    assert len({i.outputs[0] for i in items}) == 2


def test_missing_inputs_are_all_named(tmp_path: Path) -> None:
    ok = _touch(tmp_path / "ok.mp4")
    with pytest.raises(MissingInputError) as info:
        validate_inputs([ok, tmp_path / "gone1.mp4", Path("/dev/null"), tmp_path / "gone2.mp4"])
    err = info.value
    assert err.paths == (tmp_path / "gone1.mp4", Path("/dev/null"), tmp_path / "gone2.mp4")
    assert "gone1.mp4" in str(err) and "gone2.mp4" in str(err) and "not a regular file" in str(err)
    assert isinstance(err, ValueError)


def test_a_single_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="list of paths"):
        validate_inputs(str(_touch(tmp_path / "a.mp4")))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no input"):
        validate_inputs([])


def test_folders_stand_for_the_media_below_them(tmp_path: Path) -> None:
    a = _touch(tmp_path / "talks" / "day 1" / "a.mp4")
    b = _touch(tmp_path / "talks" / "b.mov")
    _touch(tmp_path / "talks" / "notes.txt")
    assert validate_inputs([tmp_path / "talks"]) == sorted([a, b])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no media files"):
        validate_inputs([tmp_path / "empty"])


def test_discover_walks_folders_for_media(tmp_path: Path) -> None:
    _touch(tmp_path / "v" / "b.MP4")
    _touch(tmp_path / "v" / "sub" / "a.mkv")
    _touch(tmp_path / "v" / "notes.txt")
    loose = _touch(tmp_path / "loose.bin")
    found = discover([tmp_path / "v", loose])
    assert found == [tmp_path / "v/b.MP4", tmp_path / "v/sub/a.mkv", loose]


name_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")
names = st.text(name_chars, min_size=1, max_size=20).filter(lambda s: s not in {".", ".."})


@given(st.lists(st.tuples(names, names), min_size=1, max_size=8, unique=True))
def test_distinct_sources_in_distinct_folders_map_to_distinct_outputs(pairs: list[tuple[str, str]]) -> None:
    root = Path("/data/in")
    sources = [root / d / f"{n}.mp4" for d, n in pairs]
    items = plan_work(sources, "/data/out", ["mp3"])
    assert len({i.outputs[0] for i in items}) == len(sources)
    for item, (d, n) in zip(items, pairs, strict=True):
        assert item.outputs[0].parent.name == d or len({p[0] for p in pairs}) == 1
        assert item.outputs[0].name == f"{n}.mp3"
        assert item.outputs[0].is_relative_to("/data/out")
        assert item.relative_source == f"{d}/{n}.mp4" or len({p[0] for p in pairs}) == 1
        assert item.relative_outputs == (item.outputs[0].relative_to(Path("/data/out")).as_posix(),)


def test_hard_links_are_inputs_of_their_own_while_a_symlink_is_the_same_input(tmp_path: Path) -> None:
    """Two hard links are two names a user sees (two outputs); a symbolic link to a file,
    or the file named twice, is the file once."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"x")
    (folder / "b.mp4").hardlink_to(folder / "a.mp4")
    (folder / "c.mp4").symlink_to(folder / "a.mp4")
    (folder / "d.mp4").write_bytes(b"y")
    (folder / "e.mp4").symlink_to(folder / "d.mp4")
    found = validate_inputs([folder, folder / "b.mp4"])
    assert [p.name for p in found] == ["a.mp4", "b.mp4", "d.mp4"]
