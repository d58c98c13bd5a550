"""HEIC/HEIF photos (iPhones since 2017, many Android phones) through ``pillow-heif``, registered as a
Pillow opener: they then decode as a JPEG does, EXIF (date, camera, GPS) included.

libheif applies the file's own rotation and mirroring (``irot``/``imir``) while decoding, and pillow-heif
then sets the EXIF orientation to 1, so a photo is never turned twice. ``draft`` picks an embedded
thumbnail at least the size asked for (an iPhone stores a 320 x 240 one), which is much faster than
decoding 12 MP.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from . import MediaKind
from .raster import iso_brand

if TYPE_CHECKING:
    from PIL import Image

    from ..images import ImageInfo

BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")


@functools.cache
def missing() -> str:
    """Why HEIC cannot be read here ("" when it can); registers the opener the first time."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return "HEIC/HEIF image: no decoder installed (pip install pillow-heif)"
    register_heif_opener(thumbnails=True)
    return ""


def decode(data: bytes, min_side: int | None, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    from ..images import read_image

    missing()
    return read_image(data, min_side, max_pixels)


KINDS = [MediaKind("heif", "HEIC/HEIF image", {".heic": "image/heic", ".heif": "image/heif", ".hif": "image/heif"},
                   lambda head, _ext: iso_brand(head) in BRANDS, decode, missing, browser_shows=False)]
