"""Output presets: what ffmpeg is asked to produce."""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from batch_transcode._errors import ConfigError

__all__ = ["PRESETS", "Preset", "resolve_preset"]

_EXT = re.compile(r"^[A-Za-z0-9]{1,10}$")


def _args(value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError("Preset args must be a list of ffmpeg arguments, not one string")
    return tuple(str(a) for a in value)


@attrs.define(frozen=True, kw_only=True)
class Preset:
    """An output format: a file extension plus the ffmpeg arguments that produce it.

    ``args`` go between the input and the output file (codec, bitrate,
    ``-vn``...). ``audio_only`` presets drop video; an input with no audio
    stream fails cleanly for them.

    >>> Preset.custom("mkv", ["-c:v", "libx264", "-crf", "28", "-c:a", "copy"])
    Preset(name='mkv', extension='mkv', args=(...), audio_only=False)
    """

    name: str
    extension: str
    args: tuple[str, ...] = attrs.field(converter=_args)
    audio_only: bool = True

    def __attrs_post_init__(self) -> None:
        if not _EXT.match(self.extension):
            raise ConfigError(
                f"preset extension must be 1-10 letters or digits without a dot, got {self.extension!r}"
            )

    @classmethod
    def custom(
        cls, extension: str, args: Sequence[str], *, name: str | None = None, audio_only: bool = False
    ) -> Preset:
        """A preset of your own: ``extension`` of the outputs and ffmpeg ``args``."""
        ext = extension.lstrip(".")
        return cls(name=name or ext, extension=ext, args=_args(args), audio_only=audio_only)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(name="mp3", extension="mp3", args=("-vn", "-c:a", "libmp3lame", "-q:a", "2")),
        Preset(name="aac", extension="m4a", args=("-vn", "-c:a", "aac", "-b:a", "192k")),
        Preset(name="opus", extension="opus", args=("-vn", "-c:a", "libopus", "-b:a", "128k")),
        Preset(name="flac", extension="flac", args=("-vn", "-c:a", "flac")),
        Preset(name="wav", extension="wav", args=("-vn", "-c:a", "pcm_s16le")),
    )
}


def resolve_preset(preset: str | Preset) -> Preset:
    """Return the :class:`Preset` for a name, or the preset itself."""
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset.lower()]
    except (KeyError, AttributeError):
        names = ", ".join(sorted(PRESETS))
        raise ConfigError(
            f"unknown preset {preset!r}; use one of {names}, or Preset.custom(extension, args)"
        ) from None
