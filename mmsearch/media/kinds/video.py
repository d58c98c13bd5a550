"""Videos (mp4, mov, m4v, mkv, webm, avi, 3gp) through PyAV (FFmpeg in its wheels), sampled in time.

A video is one searchable item made of frames taken about every ``EVERY`` seconds (at most
``MAX_FRAMES``, spread evenly over longer videos), each at the middle of its stretch of time: a phone video
may have one keyframe in several seconds and an encoded file one in 250 frames, so frames are taken by
time, not keyframes only. The reader seeks to the keyframe before each sample only when the sample is
more than ``SEEK_GAP`` seconds ahead and otherwise decodes on, so a 4K hour costs at most ``MAX_FRAMES``
seeks and a short clip is decoded once; only the small frames are kept. Duration, date and place come
from the container (QuickTime ``creation_time`` / ``com.apple.quicktime.creationdate`` and ``©xyz`` /
``com.apple.quicktime.location.ISO6709``).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import MediaKind
from .raster import iso_brand

if TYPE_CHECKING:
    from PIL import Image

EXTENSIONS = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
              ".webm": "video/webm", ".avi": "video/x-msvideo", ".3gp": "video/3gpp"}
EVERY = 2.0  # seconds of video per sampled frame
MAX_FRAMES = 32  # frames of one video at most (longer videos get them spread evenly)
SEEK_GAP = 3.0  # seconds: a sample further ahead than this is reached by seeking, a nearer one by decoding on
MAX_VIDEO_PIXELS = 8192 * 4320  # 8K: larger frames are refused before any decoding
_ISO6709 = re.compile(r"^\s*([+-]\d{1,2}(?:\.\d+)?)([+-]\d{1,3}(?:\.\d+)?)")


@dataclass(frozen=True)
class VideoInfo:
    """Facts of a video from its container."""

    width: int
    height: int
    duration: float  # seconds (0.0 when the container does not say and no frame told)
    taken: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    codec: str = ""


@dataclass
class Video:
    """A read video: its facts and its sampled frames (time in seconds, upright RGB image), and why
    fewer frames than planned were read ("" when all were)."""

    info: VideoInfo
    frames: list[tuple[float, Image.Image]] = field(default_factory=list)
    problem: str = ""


def _signature(head: bytes, ext: str) -> bool:
    if ext in (".mkv", ".webm"):
        return head.startswith(b"\x1a\x45\xdf\xa3")
    if ext == ".avi":
        return head.startswith(b"RIFF") and head[8:12] == b"AVI "
    return bool(iso_brand(head)) or head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip")


@functools.cache
def missing() -> str:
    try:
        import av  # noqa: F401
    except ImportError:
        return "video: no decoder installed (pip install av)"
    return ""


def sample_times(duration: float, every: float = EVERY, cap: int = MAX_FRAMES) -> list[float]:
    """When to take frames: the middle of each of ``n`` equal stretches, ``n`` = duration / ``every`` (at
    least 1, at most ``cap``)."""
    if not duration or duration <= 0 or not math.isfinite(duration):
        return [0.0]
    count = min(cap, max(1, math.ceil(duration / every - 1e-9)))
    step = duration / count
    return [round(step * (n + 0.5), 3) for n in range(count)]


def read_video(path: str, min_side: int | None, max_pixels: int = MAX_VIDEO_PIXELS) -> Video:
    """The video's facts and its frames sampled in time (``sample_times``), each shrunk so its short side is
    ``min_side`` (as a photo is). A video that breaks off part way keeps the frames read before, and
    ``problem`` says so.

    Raises:
        ImageReadError: not a video FFmpeg reads, no video stream, too large, or no frame decodes.
    """
    import os

    import av

    from ...errors import ImageReadError

    if os.path.getsize(path) == 0:
        raise ImageReadError("empty file (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ImageReadError(f"not a video FFmpeg can read: {_reason(exc)}") from None
    with container:
        if not container.streams.video:
            raise ImageReadError("no video stream in this file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise ImageReadError(f"refused: {width}x{height} video frames exceed the {max_pixels:,} pixel limit")
        info = _info(container, stream)
        video = Video(info)
        times = sample_times(info.duration)
        try:
            _sample(container, stream, times, min_side, video)
        except (av.FFmpegError, OSError, ValueError, MemoryError) as exc:
            video.problem = f"read {len(video.frames)} of {len(times)} frames, then the video broke off: {_reason(exc)}"
        else:
            end = video.frames[-1][0] if video.frames else 0.0
            if len(video.frames) < len(times) and end < info.duration - EVERY:
                video.problem = (f"read {len(video.frames)} of {len(times)} frames: the pictures end at {end:.1f} s of "
                                 f"{info.duration:.1f} s (a truncated file?)")
    if not video.frames:
        raise ImageReadError(f"no frame of this video could be decoded{': ' + video.problem if video.problem else ''}")
    if width and height and video.frames and video.frames[0][1].width < video.frames[0][1].height and width > height:
        width, height = height, width  # turned upright by its display matrix
    video.info = VideoInfo(width, height, info.duration or video.frames[-1][0], info.taken, info.lat, info.lon, info.codec)
    return video


def _sample(container: Any, stream: Any, times: list[float], min_side: int | None, video: Video) -> None:
    """Append a frame at (or just after) each of ``times`` to ``video.frames``."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    rate = float(stream.average_rate or 30)
    decoder, position, last = None, -math.inf, None
    for wanted in times:
        if decoder is None or wanted - position > SEEK_GAP:
            container.seek(int((start + wanted) / stream.time_base), stream=stream, backward=True, any_frame=False)
            decoder = container.decode(stream)
        taken = None
        for frame in decoder:
            position = float(frame.time - start) if frame.time is not None else position
            last = frame
            if position >= wanted - 0.5 / rate:
                taken = frame
                break
        if taken is None:  # the stream ended before this time (a duration that overstated): its last frame
            if last is not None and (not video.frames or video.frames[-1][0] < position):
                video.frames.append((round(max(position, 0.0), 3), _picture(last, min_side)))
            return
        video.frames.append((round(max(position, 0.0), 3), _picture(taken, min_side)))


def _picture(frame: Any, min_side: int | None) -> Image.Image:
    """An upright RGB picture of a decoded frame, scaled by FFmpeg so its short side is ``min_side``."""
    from PIL import Image

    width, height = frame.width, frame.height
    if min_side and min(width, height) > min_side:
        scale = min_side / min(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    image = frame.to_image(width=width, height=height)
    turn = {90: Image.Transpose.ROTATE_90, -90: Image.Transpose.ROTATE_270, 270: Image.Transpose.ROTATE_270,
            180: Image.Transpose.ROTATE_180, -180: Image.Transpose.ROTATE_180}.get(int(getattr(frame, "rotation", 0) or 0))
    return image.transpose(turn) if turn is not None else image


def frame_at(path: str, time: float, side: int) -> Image.Image:
    """The frame at ``time`` seconds (or the nearest one before the end), its short side at most ``side``:
    a hit's thumbnail.

    Raises:
        ImageReadError: the video cannot be read.
    """
    import av

    from ...errors import ImageReadError

    video = Video(VideoInfo(0, 0, 0.0))
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise ImageReadError("no video stream in this file")
            stream = container.streams.video[0]
            _sample(container, stream, [max(0.0, float(time))], side, video)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ImageReadError(f"cannot read this video: {_reason(exc)}") from None
    if not video.frames:
        raise ImageReadError(f"no frame at {time:.1f} s")
    return video.frames[0][1]


def container_facts(path: str) -> VideoInfo:
    """A video's facts from its container alone (no frame decoded): for schema steps that add them.

    Raises:
        ImageReadError: not a video FFmpeg reads.
    """
    import av

    from ...errors import ImageReadError

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise ImageReadError("no video stream in this file")
            return _info(container, container.streams.video[0])
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ImageReadError(f"not a video FFmpeg can read: {_reason(exc)}") from None


def _info(container: Any, stream: Any) -> VideoInfo:
    metadata = {k.lower(): v for k, v in {**dict(stream.metadata), **dict(container.metadata)}.items()}
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    lat, lon = iso6709(metadata.get("com.apple.quicktime.location.iso6709") or metadata.get("location") or "")
    taken = _date(metadata.get("com.apple.quicktime.creationdate") or metadata.get("creation_time") or "")
    return VideoInfo(stream.codec_context.width, stream.codec_context.height, max(duration, 0.0), taken, lat, lon,
                     stream.codec_context.name or "")


def iso6709(text: str) -> tuple[float | None, float | None]:
    """(latitude, longitude) of an ISO 6709 position in decimal degrees ("+38.7223-009.1393+012.000/",
    as phones write it), or (None, None)."""
    match = _ISO6709.match(text or "")
    if not match:
        return None, None
    lat, lon = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None, None
    return round(lat, 6), round(lon, 6)


def _date(text: str) -> datetime | None:
    """A container's date as local time without a zone (as EXIF dates are), or None."""
    text = text.strip().replace("Z", "+00:00")
    if re.match(r".*[+-]\d{4}$", text):  # "+0100" -> "+01:00"
        text = text[:-2] + ":" + text[-2:]
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.year < 1971:  # 1904-01-01 or 1970: an unset QuickTime date
        return None
    return value.astimezone().replace(tzinfo=None) if value.tzinfo else value


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__


KINDS = [MediaKind("video", "video", EXTENSIONS, _signature, None, missing, browser_shows=True, video=True)]
