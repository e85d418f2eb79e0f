from __future__ import annotations

from pathlib import Path

from batch_transcode.samples import decoded_duration, make_sample_media


def test_sample_media_and_decoded_duration(tmp_path: Path) -> None:
    (with_audio,) = make_sample_media(tmp_path / "a", count=1, seconds=1.5)
    (silent,) = make_sample_media(tmp_path / "b", count=1, seconds=1.0, audio=False)
    assert with_audio.name == "sample 01.mp4"
    assert abs((decoded_duration(with_audio) or 0) - 1.5) < 0.15
    assert abs((decoded_duration(silent) or 0) - 1.0) < 0.15
    junk = tmp_path / "junk.mp4"
    junk.write_text("not media")
    assert decoded_duration(junk) is None
    assert decoded_duration(tmp_path / "missing.mp4") is None
