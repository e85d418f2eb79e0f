"""Output presets: what ffmpeg is asked to produce."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import Any, TypeAlias

import attrs

from batch_transcode._errors import ConfigError

__all__ = [
    "DEFAULT_LOUDNESS_SAMPLE_RATE",
    "PRESETS",
    "Preset",
    "PresetSpec",
    "resolve_preset",
    "resolve_presets",
]

_EXT = re.compile(r"^[A-Za-z0-9]{1,10}$")
_BITRATE = re.compile(r"^[1-9][0-9]{0,6}[kK]?$")

#: The sample rate of a loudness-normalised output whose preset sets none. ffmpeg's
#: loudnorm filter upsamples to 192 kHz in its dynamic (single-pass) mode
#: (https://ffmpeg.org/ffmpeg-filters.html#loudnorm); 48 kHz suits every built-in
#: audio format, Opus included.
DEFAULT_LOUDNESS_SAMPLE_RATE = 48000


def _args(value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError("Preset args must be a list of ffmpeg arguments, not one string")
    return tuple(str(a) for a in value)


def _whole(name: str, value: int | None, low: int, high: int) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
    ):
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}")


def _number(name: str, value: float | None, low: float, high: float, unit: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number ({unit}), got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low:g} to {high:g} {unit}, got {value!r}")


def _copies_audio(args: Sequence[str]) -> bool:
    return any(
        opt in ("-c:a", "-acodec", "-codec:a", "-c", "-codec") and value == "copy"
        for opt, value in itertools.pairwise(args)
    )


@attrs.define(frozen=True, kw_only=True)
class Preset:
    """An output format: a file extension plus the ffmpeg arguments that produce it.

    ``args`` go between the input and the output file (codec, bitrate,
    ``-vn``...). ``audio_only`` presets drop video; an input with no audio
    stream fails cleanly for them. ``video_only`` presets (the thumbnail) drop
    audio; an input with no video stream fails cleanly for them.

    Audio options, applied on top of ``args`` (each replaces what ``args`` says on
    the same point): ``bitrate`` (``"96k"``), ``channels`` (1 = mono, 2 = stereo),
    ``sample_rate`` (Hz) and ``loudness``, an EBU R128 integrated loudness target in
    LUFS (-16 suits podcasts, -23 is broadcast) reached with ffmpeg's ``loudnorm``
    filter in one pass. ``seek`` (seconds) or ``seek_fraction`` (of the input's
    duration, 0 to 0.99) starts the output that far into the input.
    :meth:`with_audio` returns a copy with audio options set::

        PRESETS["mp3"].with_audio(bitrate="96k", channels=1, loudness=-16)

    >>> Preset.custom("mkv", ["-c:v", "libx264", "-crf", "28", "-c:a", "copy"])
    Preset(name='mkv', extension='mkv', args=(...), audio_only=False, ...)
    """

    name: str
    extension: str
    args: tuple[str, ...] = attrs.field(converter=_args)
    audio_only: bool = True
    video_only: bool = False
    bitrate: str | None = None
    channels: int | None = None
    sample_rate: int | None = None
    loudness: float | None = None
    seek: float | None = None
    seek_fraction: float | None = None

    def __attrs_post_init__(self) -> None:
        if not _EXT.match(self.extension):
            raise ConfigError(
                f"preset extension must be 1-10 letters or digits without a dot, got {self.extension!r}"
            )
        if self.audio_only and self.video_only:
            raise ConfigError(f"preset {self.name!r} cannot be both audio_only and video_only")
        if self.bitrate is not None and not (isinstance(self.bitrate, str) and _BITRATE.match(self.bitrate)):
            raise ConfigError(f"bitrate must be bits per second like '128k' or '96000', got {self.bitrate!r}")
        _whole("channels", self.channels, 1, 8)
        _whole("sample_rate", self.sample_rate, 8000, 192000)
        # loudnorm's I option: -70 to -5 LUFS (https://ffmpeg.org/ffmpeg-filters.html#loudnorm)
        _number("loudness", self.loudness, -70.0, -5.0, "LUFS")
        _number("seek", self.seek, 0.0, 10 * 24 * 3600.0, "seconds")
        _number("seek_fraction", self.seek_fraction, 0.0, 0.99, "of the duration")
        if self.seek is not None and self.seek_fraction is not None:
            raise ConfigError("give a preset seek (seconds) or seek_fraction (of the duration), not both")
        if self.has_audio_options and _copies_audio(self.args):
            raise ConfigError(
                f"preset {self.name!r} copies the audio stream as it is (-c:a copy): bitrate, "
                "channels, sample_rate and loudness need it re-encoded; give an audio codec instead"
            )
        if self.video_only and self.has_audio_options:
            raise ConfigError(
                f"preset {self.name!r} writes no audio: bitrate, channels, sample_rate and "
                "loudness do not apply to it"
            )

    @property
    def has_audio_options(self) -> bool:
        return any(v is not None for v in (self.bitrate, self.channels, self.sample_rate, self.loudness))

    def with_audio(
        self,
        *,
        bitrate: str | None = None,
        channels: int | None = None,
        sample_rate: int | None = None,
        loudness: float | None = None,
    ) -> Preset:
        """A copy with the audio options given set (those left ``None`` keep their value)."""
        changes: dict[str, Any] = {
            k: v
            for k, v in {
                "bitrate": bitrate,
                "channels": channels,
                "sample_rate": sample_rate,
                "loudness": loudness,
            }.items()
            if v is not None
        }
        return attrs.evolve(self, **changes)

    @classmethod
    def custom(
        cls, extension: str, args: Sequence[str], *, name: str | None = None, audio_only: bool = False
    ) -> Preset:
        """A preset of your own: ``extension`` of the outputs and ffmpeg ``args``."""
        ext = extension.lstrip(".")
        return cls(name=name or ext, extension=ext, args=_args(args), audio_only=audio_only)

    @classmethod
    def thumbnail(
        cls, at: float | None = None, *, fraction: float | None = None, width: int | None = None
    ) -> Preset:
        """One JPEG frame, ``width`` pixels wide (the height follows the aspect ratio;
        ``None`` keeps the input's size).

        With ``at`` (seconds) it is the frame at that time; an input shorter than that
        fails this output cleanly. With ``fraction`` (0 to 0.99) it is the frame that far
        through the input (``0.5``: half-way; the duration is read from the input's
        header first). With neither, it is the most representative of the first 100
        frames (ffmpeg's ``thumbnail`` filter, which passes over black or faded frames),
        so any video has one. An input without video fails this output cleanly.
        """
        _whole("width", width, 16, 8192)
        placed = at is not None or fraction is not None
        # https://ffmpeg.org/ffmpeg-filters.html#thumbnail and #scale
        chain = [*([] if placed else ["thumbnail"]), *([f"scale={width}:-2"] if width else [])]
        vf = ["-vf", ",".join(chain)] if chain else []
        # -update 1: one image, not a numbered sequence (image2 muxer,
        # https://ffmpeg.org/ffmpeg-formats.html#image2-1); -q:v 2: high JPEG quality.
        args = ["-an", "-sn", "-dn", *vf, "-frames:v", "1", "-q:v", "2", "-update", "1"]
        return cls(
            name="thumbnail",
            extension="jpg",
            args=args,
            audio_only=False,
            video_only=True,
            seek=at,
            seek_fraction=fraction,
        )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(name="mp3", extension="mp3", args=("-vn", "-c:a", "libmp3lame", "-q:a", "2")),
        Preset(name="aac", extension="m4a", args=("-vn", "-c:a", "aac", "-b:a", "192k")),
        Preset(name="opus", extension="opus", args=("-vn", "-c:a", "libopus", "-b:a", "128k")),
        Preset(name="flac", extension="flac", args=("-vn", "-c:a", "flac")),
        Preset(name="wav", extension="wav", args=("-vn", "-c:a", "pcm_s16le")),
        Preset.thumbnail(),
    )
}

#: What ``preset=`` takes: a preset's name, a :class:`Preset`, or a sequence of them.
PresetSpec: TypeAlias = "str | Preset | Sequence[str | Preset]"


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


def resolve_presets(preset: PresetSpec) -> tuple[Preset, ...]:
    """The presets of one run, in order: one for a name or a :class:`Preset`, each of a
    sequence's otherwise. Every output of an input carries its preset's extension, so
    two presets with one extension raise :class:`ConfigError`."""
    if isinstance(preset, (str, Preset)):
        return (resolve_preset(preset),)
    try:
        chosen = tuple(resolve_preset(p) for p in preset)
    except TypeError:
        raise ConfigError(
            f"preset must be a preset name, a Preset or a list of them, got {type(preset).__name__}"
        ) from None
    if not chosen:
        raise ConfigError("preset is an empty list; give at least one preset, e.g. preset=['mp3']")
    seen: dict[str, str] = {}
    for p in chosen:
        ext = p.extension.lower()
        if ext in seen:
            raise ConfigError(
                f"presets {seen[ext]!r} and {p.name!r} both write .{ext} files, so their outputs "
                "would have the same name; keep one of them, or give one another extension "
                "(Preset.custom(extension, args))"
            )
        seen[ext] = p.name
    return chosen
