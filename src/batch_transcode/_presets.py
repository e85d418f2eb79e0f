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
    "VIDEO_CODECS",
    "Preset",
    "PresetSpec",
    "VideoCodec",
    "resolve_preset",
    "resolve_presets",
]

_EXT = re.compile(r"^[A-Za-z0-9]{1,10}$")
_BITRATE = re.compile(r"^[1-9][0-9]{0,6}[kK]?$")
_VIDEO_BITRATE = re.compile(r"^[1-9][0-9]{0,6}[kKmM]?$")
#: A preset name that can stand in a file name (``<stem>.<name>.<ext>`` for renditions).
_FILE_NAME_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

#: The sample rate of a loudness-normalised output whose preset sets none. ffmpeg's
#: loudnorm filter upsamples to 192 kHz in its dynamic (single-pass) mode
#: (https://ffmpeg.org/ffmpeg-filters.html#loudnorm); 48 kHz suits every built-in
#: audio format, Opus included.
DEFAULT_LOUDNESS_SAMPLE_RATE = 48000

#: The audio of a video preset unless told otherwise: stereo (a 5.1 source is downmixed
#: by ffmpeg's default matrix) at a bit rate transparent for stereo AAC and Opus.
VIDEO_AUDIO_BITRATE = "128k"
VIDEO_AUDIO_CHANNELS = 2

_X26X_SPEEDS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip


@attrs.frozen(kw_only=True)
class VideoCodec:
    """What a video preset knows of its codec: the ffmpeg encoder, the pixel formats it
    may write (in preference order; ffmpeg picks the one nearest the source's), the
    ``crf`` range and defaults, what ``speed`` means, the containers it goes in (the
    first is the default) and the audio codec it pairs with by default."""

    name: str
    encoder: str
    pixel_formats: tuple[str, ...]
    crf_max: int
    default_crf: int
    #: x264/x265 preset names (fastest first), or else ``speed_range``: whole numbers.
    speed_names: tuple[str, ...] = ()
    speed_range: tuple[int, int] = (0, 0)
    default_speed: str | int
    containers: tuple[str, ...]
    default_audio: str

    def speed_ok(self, speed: object) -> bool:
        if self.speed_names:
            return speed in self.speed_names
        low, high = self.speed_range
        return isinstance(speed, int) and not isinstance(speed, bool) and low <= speed <= high

    def speed_help(self) -> str:
        if self.speed_names:
            return "one of " + ", ".join(self.speed_names)
        low, high = self.speed_range
        return f"a whole number from {low} (slowest, smallest files) to {high} (fastest)"


#: The codecs of :meth:`Preset.video`, by the name it takes.
VIDEO_CODECS: dict[str, VideoCodec] = {
    c.name: c
    for c in (
        # 8-bit only: every H.264 decoder plays 4:2:0 8-bit; few play High 10.
        VideoCodec(
            name="h264",
            encoder="libx264",
            pixel_formats=("yuv420p",),
            crf_max=51,
            default_crf=23,
            speed_names=_X26X_SPEEDS,
            default_speed="medium",
            containers=("mp4", "mkv", "mov"),
            default_audio="aac",
        ),
        VideoCodec(
            name="hevc",
            encoder="libx265",
            pixel_formats=("yuv420p10le", "yuv420p"),
            crf_max=51,
            default_crf=28,
            speed_names=_X26X_SPEEDS,
            default_speed="medium",
            containers=("mp4", "mkv", "mov"),
            default_audio="aac",
        ),
        VideoCodec(
            name="av1",
            encoder="libsvtav1",
            pixel_formats=("yuv420p10le", "yuv420p"),
            crf_max=63,
            default_crf=35,
            speed_range=(0, 13),
            default_speed=6,
            containers=("mp4", "mkv", "webm"),
            default_audio="opus",
        ),
        VideoCodec(
            name="vp9",
            encoder="libvpx-vp9",
            pixel_formats=("yuv420p10le", "yuv420p"),
            crf_max=63,
            default_crf=31,
            speed_range=(0, 8),
            default_speed=2,
            containers=("webm", "mkv", "mp4"),
            default_audio="opus",
        ),
    )
}

#: Other names :meth:`Preset.video` takes for its codecs (the encoders' among them).
_CODEC_ALIASES = {
    "avc": "h264", "x264": "h264", "libx264": "h264",
    "h265": "hevc", "x265": "hevc", "libx265": "hevc",
    "svt-av1": "av1", "svtav1": "av1", "libsvtav1": "av1",
    "libvpx-vp9": "vp9",
}  # fmt: skip

#: The audio of a video preset (``audio=``) -> the ffmpeg encoder (``copy``: as it is).
VIDEO_AUDIO_ENCODERS = {"aac": "aac", "opus": "libopus", "copy": "copy"}
#: Audio codecs a container cannot hold (the others it takes).
_CONTAINER_REFUSES = {"webm": {"aac"}, "mov": {"opus"}}


def _codec_name(value: str | None) -> str | None:
    if value is None:
        return None
    name = str(value).lower()
    name = _CODEC_ALIASES.get(name, name)
    if name not in VIDEO_CODECS:
        raise ConfigError(
            f"unknown video codec {value!r}; use one of {', '.join(VIDEO_CODECS)} (or its encoder's "
            "name, e.g. libx264), or write the ffmpeg options yourself: Preset.custom(extension, args)"
        )
    return name


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


#: The fields only a video preset has (``Preset.video``).
_VIDEO_FIELDS = ("crf", "speed", "max_width", "max_height", "max_bitrate", "fps", "audio")


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

    A video preset (:meth:`Preset.video`; ``video_codec`` is set) keeps its settings
    as plain fields (``crf``, ``speed``, ``max_width``, ``max_height``,
    ``max_bitrate``, ``fps``, ``audio``), from which the command builder writes the
    ffmpeg options; its ``args`` are extra options after those.

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
    video_codec: str | None = attrs.field(default=None, converter=_codec_name)
    crf: int | None = None
    speed: str | int | None = None
    max_width: int | None = None
    max_height: int | None = None
    max_bitrate: str | None = None
    fps: float | None = None
    audio: str | None = None

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
        if self.video_codec is None:
            given = [f for f in _VIDEO_FIELDS if getattr(self, f) is not None]
            if given:
                raise ConfigError(
                    f"preset {self.name!r}: {', '.join(given)} apply to video presets only; "
                    "make one with Preset.video(codec=..., ...)"
                )
        else:
            self._check_video(VIDEO_CODECS[self.video_codec])

    def _check_video(self, codec: VideoCodec) -> None:
        """The settings of a video preset make sense together (``video_codec`` is set)."""
        if self.audio_only or self.video_only:
            raise ConfigError(
                f"video preset {self.name!r} writes video and, when the input has it, audio: it is "
                "neither audio_only nor video_only (for no audio, pass Preset.video(audio=None))"
            )
        if self.extension.lower() not in codec.containers:
            raise ConfigError(
                f"{codec.name} video goes in {', '.join(codec.containers)} files here, not "
                f".{self.extension}; pass container= one of them"
            )
        _whole("crf", self.crf, 0, codec.crf_max)
        if self.speed is not None and not codec.speed_ok(self.speed):
            raise ConfigError(f"speed of {codec.name} must be {codec.speed_help()}, got {self.speed!r}")
        _whole("max_width", self.max_width, 16, 16384)
        _whole("max_height", self.max_height, 16, 16384)
        if self.max_bitrate is not None and not (
            isinstance(self.max_bitrate, str) and _VIDEO_BITRATE.match(self.max_bitrate)
        ):
            raise ConfigError(
                "max_bitrate must be bits per second like '5M', '2500k' or '800000', "
                f"got {self.max_bitrate!r}"
            )
        _number("fps", self.fps, 1.0, 240.0, "frames per second")
        if self.audio is not None and self.audio not in VIDEO_AUDIO_ENCODERS:
            raise ConfigError(
                "audio of a video preset must be 'aac', 'opus', 'copy' or None (no audio), "
                f"got {self.audio!r}"
            )
        if self.audio in _CONTAINER_REFUSES.get(self.extension.lower(), set()):
            raise ConfigError(
                f".{self.extension} files cannot hold {self.audio} audio; pass audio='opus' or 'aac' "
                "to suit the container, or another container="
            )
        if self.audio in (None, "copy") and self.has_audio_options:
            what = "writes no audio" if self.audio is None else "copies the audio as it is"
            raise ConfigError(
                f"video preset {self.name!r} {what}: bitrate, channels, sample_rate and loudness "
                "need the audio re-encoded; pass audio='aac' or 'opus'"
            )

    @property
    def has_audio_options(self) -> bool:
        return any(v is not None for v in (self.bitrate, self.channels, self.sample_rate, self.loudness))

    @property
    def is_video(self) -> bool:
        """A video preset (made by :meth:`Preset.video`)."""
        return self.video_codec is not None

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
    def video(
        cls,
        *,
        codec: str,
        crf: int | None = None,
        speed: str | int | None = None,
        height: int | None = None,
        width: int | None = None,
        max_bitrate: str | None = None,
        fps: float | None = None,
        audio: str | None = "auto",
        container: str | None = None,
        name: str | None = None,
        args: Sequence[str] = (),
    ) -> Preset:
        """A video output: the input's first video stream encoded with ``codec``, and its
        first audio stream, if it has one, as stereo AAC or Opus.

        ``codec`` is ``"h264"`` (libx264), ``"hevc"`` (libx265), ``"av1"`` (SVT-AV1) or
        ``"vp9"`` (libvpx-vp9). ``crf`` is the constant quality (lower: better and
        bigger; the default is the named preset's); ``speed`` the encoder's speed
        (x264/x265 preset names such as ``"medium"`` or ``"veryfast"``, SVT-AV1 presets
        0-13, VP9 ``cpu-used`` 0-8). ``height`` and ``width`` cap the size, keeping the
        aspect ratio and never upscaling (both dimensions even: the nearest that fit).
        ``max_bitrate`` (``"5M"``) caps the bit rate of the constant quality; ``fps``
        changes the frame rate. ``audio`` is ``"aac"``, ``"opus"``, ``"copy"`` (as it
        is) or ``None`` (no audio); ``"auto"`` is AAC with H.264 and HEVC, Opus with AV1
        and VP9. ``container`` is the file extension (``mp4``, ``mkv``, ``webm``,
        ``mov``: those the codec goes in); ``name`` names the preset (by default the
        codec and its size cap: ``h264-720p``); ``args`` are more ffmpeg output options,
        after the generated ones (``["-map", "0:s?", "-c:s", "copy"]`` in an MKV keeps
        subtitles). Audio options can follow with :meth:`with_audio`.
        """
        spec = VIDEO_CODECS[_codec_name(codec) or ""]
        if audio == "auto":
            audio = spec.default_audio
        ext = (container or spec.containers[0]).lstrip(".").lower()
        if name is None:
            name = spec.name + _size_cap(width, height)
        encoded = audio in ("aac", "opus")
        return cls(
            name=name,
            extension=ext,
            args=_args(args),
            audio_only=False,
            video_codec=spec.name,
            crf=spec.default_crf if crf is None else crf,
            speed=spec.default_speed if speed is None else speed,
            max_width=width,
            max_height=height,
            max_bitrate=max_bitrate,
            fps=fps,
            audio=audio,
            bitrate=VIDEO_AUDIO_BITRATE if encoded else None,
            channels=VIDEO_AUDIO_CHANNELS if encoded else None,
        )

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


def _size_cap(width: int | None, height: int | None) -> str:
    """How a video preset's default name says its size cap: ``-720p``, ``-640w``, ``-640x360``."""
    if width is not None and height is not None:
        return f"-{width}x{height}"
    if height is not None:
        return f"-{height}p"
    return f"-{width}w" if width is not None else ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(name="mp3", extension="mp3", args=("-vn", "-c:a", "libmp3lame", "-q:a", "2")),
        Preset(name="aac", extension="m4a", args=("-vn", "-c:a", "aac", "-b:a", "192k")),
        Preset(name="opus", extension="opus", args=("-vn", "-c:a", "libopus", "-b:a", "128k")),
        Preset(name="flac", extension="flac", args=("-vn", "-c:a", "flac")),
        Preset(name="wav", extension="wav", args=("-vn", "-c:a", "pcm_s16le")),
        Preset.thumbnail(),
        Preset.video(codec="h264"),
        Preset.video(codec="h264", height=1080),
        Preset.video(codec="h264", height=720),
        Preset.video(codec="h264", height=480),
        Preset.video(codec="hevc"),
        Preset.video(codec="av1"),
        Preset.video(codec="vp9"),
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
            f"unknown preset {preset!r}; use one of {names}, Preset.video(codec=...), "
            "or Preset.custom(extension, args)"
        ) from None


def resolve_presets(preset: PresetSpec) -> tuple[Preset, ...]:
    """The presets of one run, in order: one for a name or a :class:`Preset`, each of a
    sequence's otherwise.

    Presets may share an extension (renditions: ``["h264-1080p", "h264-720p"]``); their
    outputs are then named ``<stem>.<preset name>.<ext>``, so those presets need names
    that differ (ignoring case) and can stand in a file name; otherwise this raises
    :class:`ConfigError`."""
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
    by_extension: dict[str, list[Preset]] = {}
    for p in chosen:
        by_extension.setdefault(p.extension.lower(), []).append(p)
    for ext, sharing in by_extension.items():
        if len(sharing) < 2:
            continue
        seen: dict[str, str] = {}
        for p in sharing:
            if not _FILE_NAME_SAFE.match(p.name):
                raise ConfigError(
                    f"presets {', '.join(repr(s.name) for s in sharing)} all write .{ext} files, so "
                    f"their outputs are named <stem>.<preset name>.{ext}; {p.name!r} cannot stand in a "
                    "file name: name it with letters, digits, '-' and '_' (name=...)"
                )
            key = p.name.lower()
            if key in seen:
                raise ConfigError(
                    f"presets {seen[key]!r} and {p.name!r} both write .{ext} files under one name, so "
                    "their outputs would have the same name; keep one of them, or give one a name of "
                    "its own: Preset.video(..., name=...) or Preset.custom(extension, args, name=...)"
                )
            seen[key] = p.name
    return chosen
