"""Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, PEF, SRW) through ``rawpy`` (LibRaw).

The JPEG preview a camera embeds is used when it is large enough for the size asked for (fast: no
demosaicing); otherwise the sensor data is demosaiced at half size with the camera's white balance.
EXIF (date, camera, GPS, orientation) comes from the file's own TIFF structure where it has one (DNG,
CR2, NEF, ARW, ORF, RW2, PEF, SRW), else from the preview.
"""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING

from . import MediaKind

if TYPE_CHECKING:
    from PIL import Image

    from ..images import ImageInfo

EXTENSIONS = {".dng": "image/x-adobe-dng", ".cr2": "image/x-canon-cr2", ".cr3": "image/x-canon-cr3",
              ".nef": "image/x-nikon-nef", ".arw": "image/x-sony-arw", ".raf": "image/x-fuji-raf",
              ".orf": "image/x-olympus-orf", ".rw2": "image/x-panasonic-rw2", ".pef": "image/x-pentax-pef",
              ".srw": "image/x-samsung-srw"}


def _signature(head: bytes, ext: str) -> bool:
    if ext == ".cr3":
        return head[4:12] == b"ftypcrx "
    if ext == ".raf":
        return head.startswith(b"FUJIFILMCCD-RAW")
    if ext == ".orf":
        return head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"II*\x00")
    if ext == ".rw2":
        return head[:4] in (b"IIU\x00", b"II*\x00")
    return head[:4] in (b"II*\x00", b"MM\x00*")


@functools.cache
def missing() -> str:
    try:
        import rawpy  # noqa: F401
    except ImportError:
        return "camera RAW: no decoder installed (pip install rawpy)"
    return ""


def decode(data: bytes, min_side: int | None, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    """The preview (when it has ``min_side`` pixels on its short side) or the half-size demosaic, upright,
    with the RAW's full upright size and its EXIF facts."""
    import rawpy
    from PIL import Image

    from ...errors import ImageReadError
    from ..images import info_from_exif, shrink_to

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            if sizes.width * sizes.height > max_pixels:
                raise ImageReadError(f"refused: {sizes.width}x{sizes.height} pixels exceeds the {max_pixels:,} pixel limit")
            full = (sizes.height, sizes.width) if sizes.flip in (5, 6) else (sizes.width, sizes.height)
            image = _preview(raw, min_side, max_pixels)
            if image is None:  # LibRaw turns the demosaiced picture upright itself
                image = Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
    except ImageReadError:
        raise
    except (rawpy.LibRawError, OSError, ValueError, MemoryError) as exc:
        raise ImageReadError(f"cannot decode this RAW file: {type(exc).__name__}: {exc}") from None
    if min_side:
        image = shrink_to(image, min_side)
    return image, info_from_exif(tiff_exif(data), *full)


def _preview(raw: object, min_side: int | None, max_pixels: int) -> Image.Image | None:
    """The embedded JPEG preview, upright, when it is large enough; else None."""
    import rawpy
    from PIL import Image

    from ..images import read_image

    turns = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}
    try:
        thumb = raw.extract_thumb()  # type: ignore[attr-defined]
    except (rawpy.LibRawError, ValueError):
        return None
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    try:
        with Image.open(io.BytesIO(thumb.data)) as probe:
            if min(probe.size) < (min_side or 10**9):
                return None
            turned = probe.getexif().get(0x0112, 1) != 1
        image, _ = read_image(bytes(thumb.data), min_side, max_pixels)
    except (OSError, ValueError, SyntaxError, EOFError):
        return None
    turn = turns.get(raw.sizes.flip)  # type: ignore[attr-defined]
    if not turned and turn is not None:  # the preview lies as the sensor does: turn it as the RAW says
        image = image.transpose(turn)
    return image


def tiff_exif(data: bytes) -> object:
    """The EXIF of a TIFF-structured RAW file (IFD0 and its EXIF and GPS directories), or an empty one."""
    from PIL import Image

    exif = Image.Exif()
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        try:
            exif.load(data)
        except (OSError, ValueError, SyntaxError, EOFError):
            return Image.Exif()
    return exif


KINDS = [MediaKind("raw", "camera RAW", EXTENSIONS, _signature, decode, missing, browser_shows=False)]
