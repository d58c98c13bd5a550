"""Reading a file of any media kind: which files are indexed, and decoding by kind (``mmsearch.media.kinds``)
for the model, for OCR, for a query and for thumbnails. ``images`` holds the Pillow steps every kind shares;
this module sits above it and the kinds, so neither imports the other back."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from PIL import Image, ImageOps

from ..errors import ImageReadError
from .images import (
    MAX_PIXELS,
    MAX_QUERY_BYTES,
    QUERY_MAX_PIXELS,
    ImageInfo,
    check_size,
    read_capped,
    read_image,
    to_rgb,
    write_thumbnail,
)
from .kinds import decode, is_video, kind_of, readable
from .kinds.video import frame_at

# Image formats met in real folders that mmsearch does not decode: reported as skipped, never silent.
UNREAD_FORMATS = {
    ".eps": "vector image (EPS), not a raster format", ".pdf": "document (PDF), not a raster format",
    ".jxl": "JPEG XL image: no decoder installed",
    ".ico": "icon container (ICO): not indexed", ".icns": "icon container (ICNS): not indexed",
    ".xpm": "X pixmap (XPM): not indexed", ".xbm": "X bitmap (XBM): not indexed", ".psd": "Photoshop file: not indexed",
}


def unread_format(path: Path) -> str:
    """Why an image-like file is not indexed (e.g. an EPS, or a HEIC without its decoder), or ``""`` for
    files mmsearch reads and files that are not images at all."""
    kind = kind_of(path)
    return kind.missing() if kind is not None else UNREAD_FORMATS.get(path.suffix.lower(), "")


def is_image_path(path: Path) -> bool:
    """Whether the file is of a kind mmsearch indexes (a photo format or a video, ``mmsearch.media.kinds``)
    and its decoder is installed."""
    return readable(path)


def decode_file(path: str | Path, data: bytes, min_side: int | None = None,
                max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, ImageInfo]:
    """The bytes of the file ``path`` decoded by its media kind (``mmsearch.media.kinds``: HEIC, RAW and
    SVG included), or by Pillow when the name says no kind (an upload without an extension).

    Raises:
        ImageReadError: the bytes are not a readable image of that kind.
    """
    if kind_of(path) is None:
        return read_image(data, min_side, max_pixels)
    return decode(path, data, min_side, max_pixels)


def pillow_reads(path: str | Path) -> bool:
    """Whether Pillow opens this file itself (with the HEIF opener registered): not a RAW, an SVG or a video."""
    kind = kind_of(path)
    if kind is not None and kind.name == "heif":
        kind.missing()  # registers the opener
    return kind is None or kind.name not in ("raw", "svg") and not kind.video


def read_for_ocr(data: bytes, side: int, path: str | Path = "") -> Image.Image:
    """Image bytes decoded for reading the text in them: upright RGB whose long side is at least
    ``side`` (or the original size). JPEGs decode at reduced scale (``draft``) when that still gives
    ``side`` pixels on the long side; RAW files and SVGs (``path`` says which) decode by their kind.

    Raises:
        ImageReadError: the bytes are not a readable image.
    """
    if path and not pillow_reads(path):
        return decode_file(path, data, None)[0]
    try:
        image = Image.open(io.BytesIO(data))
        check_size(image, MAX_PIXELS)
        width, height = image.size
        scale = side / max(width, height, 1)
        if scale < 1:
            image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
        return to_rgb(ImageOps.exif_transpose(image) or image)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"cannot decode for OCR: {type(exc).__name__}: {exc}") from None


def open_rgb(source: str | Path | Image.Image, min_side: int | None = None) -> Image.Image:
    """A query image from a path or a PIL image, prepared exactly as indexed images are (decoded at
    reduced scale when the model needs only ``min_side`` pixels; at most ``QUERY_MAX_PIXELS`` unless a
    JPEG, which is decoded small)."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    try:
        info = os.stat(source)
        if not stat.S_ISREG(info.st_mode):
            raise ImageReadError(f"cannot read {source}: not a regular file")
        if info.st_size > MAX_QUERY_BYTES:
            raise ImageReadError(f"cannot read {source}: {info.st_size:,} bytes is too large for a query image")
        data = Path(source).read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read {source}: {exc.strerror or exc}") from None
    return decode_file(source, data, min_side, QUERY_MAX_PIXELS)[0]


def save_thumbnail(source: str | Path, dest: str | Path, size: int, time: float | None = None) -> None:
    """Write a copy no larger than ``size`` px on its long side (never enlarged), upright, to ``dest``
    (atomically): a PNG keeping the transparency when ``dest`` ends in ``.png``, else a JPEG. Of a video,
    the frame at ``time`` seconds (0 when None).

    JPEGs are decoded at reduced scale (``draft``), so a 12 MP photo costs a fraction of a full decode;
    RAW files and SVGs are decoded by their kind (``mmsearch.media.kinds``).

    Raises:
        ImageReadError: ``source`` cannot be read or decoded.
    """
    try:
        if pillow_reads(source):
            with Image.open(source) as image:
                check_size(image)
                image.draft("RGB", (size, size))
                upright = ImageOps.exif_transpose(image) or image
                upright = upright.convert("RGBA") if Path(dest).suffix == ".png" else to_rgb(upright)
                write_thumbnail(upright, dest, size)
        elif is_video(source):
            write_thumbnail(frame_at(str(source), time or 0.0, size), dest, size)
        else:
            write_thumbnail(decode_file(source, read_capped(str(source))[0], size)[0], dest, size)
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot make a thumbnail of {source}: {exc}") from None


def has_alpha(path: str | Path) -> bool:
    """Whether an image file has transparency (read from its header)."""
    if not pillow_reads(path):
        return False
    try:
        with Image.open(path) as image:
            return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return False


def position_of(path: str) -> tuple[float | None, float | None]:
    """Where a file was taken, read from its metadata without decoding its pixels: EXIF GPS (photos, HEIC,
    TIFF-based RAW), or the container's ISO 6709 position (videos); (None, None) when it has none.

    Raises:
        ImageReadError: the file cannot be read.
    """
    from .images import info_from_exif
    from .kinds.raw import tiff_exif
    from .kinds.video import container_facts

    kind = kind_of(path)
    if kind is not None and kind.video:
        facts = container_facts(path)
        return facts.lat, facts.lon
    if kind is not None and kind.name == "raw":
        info = info_from_exif(tiff_exif(read_capped(path)[0]))
        return info.lat, info.lon
    if kind is not None and kind.name == "svg":
        return None, None
    try:
        with Image.open(path) as image:
            info = info_from_exif(image.getexif())
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"cannot read {path}: {exc}") from None
    return info.lat, info.lon
