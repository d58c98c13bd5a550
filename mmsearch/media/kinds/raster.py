"""The raster formats Pillow reads itself: JPEG, PNG, GIF, WebP, BMP, TIFF, and AVIF (Pillow 11.3+ with
libavif, or the ``pillow-avif-plugin``)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from . import MediaKind

if TYPE_CHECKING:
    from PIL import Image

    from ..images import ImageInfo


def _starts(*prefixes: bytes):  # noqa: ANN202 - a signature check
    return lambda head, _ext: head.startswith(prefixes)


def _webp(head: bytes, _ext: str) -> bool:
    return head.startswith(b"RIFF") and head[8:12] == b"WEBP"


def iso_brand(head: bytes) -> bytes:
    """The major brand of an ISO base media file (HEIF, AVIF, MP4, MOV), or b"" when ``head`` is not one."""
    return head[8:12] if head[4:8] == b"ftyp" else b""


def _avif(head: bytes, _ext: str) -> bool:
    return iso_brand(head) in (b"avif", b"avis", b"mif1", b"msf1")


def pillow_decode(data: bytes, min_side: int | None, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    """Pillow's own decoder (``images.read_image``)."""
    from ..images import read_image

    return read_image(data, min_side, max_pixels)


@functools.cache
def avif_missing() -> str:
    """Why AVIF cannot be read here ("" when it can)."""
    from PIL import features

    if features.check("avif"):
        return ""
    try:
        import pillow_avif  # noqa: F401 - registers the AVIF plugin
    except ImportError:
        return "AVIF image: no decoder installed (pip install pillow-avif-plugin, or Pillow 11.3+ built with libavif)"
    return ""


TIFF = _starts(b"II*\x00", b"MM\x00*")
KINDS = [
    MediaKind("jpeg", "JPEG image", {".jpg": "image/jpeg", ".jpeg": "image/jpeg"}, _starts(b"\xff\xd8\xff"), pillow_decode),
    MediaKind("png", "PNG image", {".png": "image/png"}, _starts(b"\x89PNG\r\n\x1a\n"), pillow_decode),
    MediaKind("gif", "GIF image", {".gif": "image/gif"}, _starts(b"GIF87a", b"GIF89a"), pillow_decode),
    MediaKind("webp", "WebP image", {".webp": "image/webp"}, _webp, pillow_decode),
    MediaKind("bmp", "BMP image", {".bmp": "image/bmp"}, _starts(b"BM"), pillow_decode),
    MediaKind("tiff", "TIFF image", {".tif": "image/tiff", ".tiff": "image/tiff"}, TIFF, pillow_decode,
              browser_shows=False),
    MediaKind("avif", "AVIF image", {".avif": "image/avif"}, _avif, pillow_decode, avif_missing),
]
