"""What a conversion costs in CPU: seconds of CPU per second of media, measured.

The table comes from ``benchmarks/video_cost.py`` (docs/performance.md, "Video: CPU per
second of media"): each video codec at its default speed and CRF, the output at the
source's height, and each audio preset, on generated sources (``testsrc2`` + a tone,
H.264 + AAC). Video keys are ``(codec, output height)``; audio keys ``(preset name,
source height)`` (an audio output demuxes the video without decoding it, so its height
barely matters); ``("decode", source height)`` is the decoding of a source's video alone,
which a video row holds at its own height: a larger source adds the difference, and
renditions of one source share it. Rerun the script on your own media (``--source FILE``) and replace the
table for estimates that fit it: camera footage costs more than the test pattern.
"""

from __future__ import annotations

from batch_transcode._presets import Preset

__all__ = [
    "CPU_SECONDS_PER_MEDIA_SECOND",
    "audio_key_of_video",
    "cost_key",
    "cpu_per_media_second",
    "decode_per_media_second",
    "video_output_height",
]

#: CPU seconds per second of media: ``(codec or audio preset, height) -> seconds``.
#: Pasted from ``benchmarks/video_cost.py`` (its defaults: 10 s sources at 480p, 720p and
#: 1080p, one conversion each), on a 2-core machine shared with other work:
# ffmpeg version n9.0.2-17-g2a571b6068-20260930; 2 cores (nproc), x86_64
# testsrc2 + sine, 10 s per source; median of 1
CPU_SECONDS_PER_MEDIA_SECOND: dict[tuple[str, int], float] = {
    ("h264", 480): 0.2893, ("h264", 720): 0.5738, ("h264", 1080): 1.207,
    ("hevc", 480): 0.528, ("hevc", 720): 1.052, ("hevc", 1080): 2.263,
    ("av1", 480): 0.7714, ("av1", 720): 1.238, ("av1", 1080): 2.487,
    ("vp9", 480): 1.173, ("vp9", 720): 1.785, ("vp9", 1080): 3.51,
    ("mp3", 480): 0.005471, ("mp3", 720): 0.006498, ("mp3", 1080): 0.006369,
    ("aac", 480): 0.04058, ("aac", 720): 0.04037, ("aac", 1080): 0.04099,
    ("opus", 480): 0.008129, ("opus", 720): 0.00816, ("opus", 1080): 0.01103,
    ("flac", 480): 0.00457, ("flac", 720): 0.005664, ("flac", 1080): 0.006053,
    ("wav", 480): 0.003621, ("wav", 720): 0.003872, ("wav", 1080): 0.00438,
    # The same sources, decoded alone (--codecs --audio --rounds 3: a decode only):
    ("decode", 480): 0.03629, ("decode", 720): 0.06165, ("decode", 1080): 0.1327,
}  # fmt: skip

#: Built-in audio presets by the extension a custom audio preset may share with them.
_AUDIO_BY_EXTENSION = {"mp3": "mp3", "m4a": "aac", "aac": "aac", "opus": "opus", "flac": "flac", "wav": "wav"}
#: The table's row of a video preset's audio encoder (``audio=``).
_AUDIO_OF_VIDEO = {"aac": "aac", "opus": "opus"}


def _heights(key: str) -> list[int]:
    return sorted(h for k, h in CPU_SECONDS_PER_MEDIA_SECOND if k == key)


def cost_key(preset: Preset) -> str | None:
    """The table's name for ``preset``: its video codec, or the audio preset it is (by
    name, else by extension); ``None`` for a thumbnail or a format the table lacks."""
    if preset.is_video:
        return preset.video_codec
    if preset.video_only:
        return None
    for key in (preset.name.lower(), _AUDIO_BY_EXTENSION.get(preset.extension.lower())):
        if key is not None and _heights(key):
            return key
    return None


def video_output_height(preset: Preset, size: tuple[int, int] | None) -> int | None:
    """The height a video preset writes from a source of ``size`` (width, height): inside
    its caps, never upscaled; without a size, its ``max_height`` (or the height
    ``max_width`` gives at 16:9), else ``None`` (unknown)."""
    if size is None:
        if preset.max_height is not None:
            return preset.max_height
        return None if preset.max_width is None else preset.max_width * 9 // 16
    width, height = size
    scale = 1.0
    if preset.max_height is not None:
        scale = min(scale, preset.max_height / height)
    if preset.max_width is not None:
        scale = min(scale, preset.max_width / width)
    return max(2, round(height * scale))


def cpu_per_media_second(key: str, height: int | None) -> float:
    """CPU seconds per second of media for the table's ``key`` at ``height`` (video: the
    output's; audio: the source's): the row at the nearest height at or above it; above
    the largest row, video scales with the pixel count (the square of the height);
    ``None`` (unknown) takes the largest row.

    Raises ``KeyError`` for a key the table lacks (see :func:`cost_key`)."""
    heights = _heights(key)
    if not heights:
        raise KeyError(key)
    top = heights[-1]
    if height is None:
        return CPU_SECONDS_PER_MEDIA_SECOND[key, top]
    for row in heights:
        if row >= height:
            return CPU_SECONDS_PER_MEDIA_SECOND[key, row]
    factor = CPU_SECONDS_PER_MEDIA_SECOND[key, top]
    return factor * (height / top) ** 2 if key not in _AUDIO_BY_EXTENSION.values() else factor


def decode_per_media_second(height: int | None) -> float:
    """CPU seconds per second of media of decoding a source's video of ``height`` alone
    (the ``decode`` rows, as :func:`cpu_per_media_second` reads them; 0 without them)."""
    return cpu_per_media_second("decode", height) if _heights("decode") else 0.0


def audio_key_of_video(preset: Preset) -> str | None:
    """The table's row for a video preset's audio alone (a source without video)."""
    return None if preset.audio is None else _AUDIO_OF_VIDEO.get(preset.audio)
