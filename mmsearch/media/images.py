"""Reading one image: decode, apply EXIF orientation, flatten to RGB, read EXIF facts (date, camera, GPS)
and embedded captions. Pillow is called here and in the media kinds (``mmsearch.media.kinds``), which
decode the formats Pillow does not read itself.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageReadError
from .captions import is_boilerplate

MAX_PIXELS = 120_000_000  # refuse larger images (decompression bombs) before decoding them
# A query image is decoded in the request: JPEGs at reduced scale (draft), others in full, so non-JPEG
# queries are held to fewer pixels (40 MP = 120 MB of RGB; a 100 MP PNG cost 0.8 GB per query before).
QUERY_MAX_PIXELS = 40_000_000
MAX_QUERY_BYTES = 100 * 1024 * 1024

# EXIF tags (see the EXIF 2.32 spec)
_IMAGE_DESCRIPTION, _MAKE, _MODEL, _EXIF_IFD = 0x010E, 0x010F, 0x0110, 0x8769
_XP_COMMENT, _DATETIME, _ORIENTATION = 0x9C9C, 0x0132, 0x0112
_DATETIME_ORIGINAL, _USER_COMMENT, _GPS_IFD = 0x9003, 0x9286, 0x8825
_PNG_CAPTION_KEYS = ("description", "title", "comment")  # the PNG text keywords that hold descriptions
_XMP_DESCRIPTION = re.compile(rb"<dc:description>(.*?)</dc:description>", re.S)
_XMP_ITEM = re.compile(rb"<rdf:li[^>]*>(.*?)</rdf:li>", re.S)


@dataclass(frozen=True)
class ImageInfo:
    """Facts read from an image file without the pixels."""

    width: int
    height: int
    taken: datetime | None = None
    camera: str | None = None
    captions: list[str] = field(default_factory=list)
    lat: float | None = None  # EXIF GPS, degrees north (WGS 84)
    lon: float | None = None  # degrees east
    gps_problem: str = ""  # why a GPS position in the file was not used ("" when there was none or it was)


MAX_FILE_BYTES = 512 * 1024 * 1024  # image files larger than this are skipped unread (phone photos: 2-15 MB)
READ_CHUNK = 1 << 20


def read_capped(path: str) -> tuple[bytes, str]:
    """The file's bytes and their sha256, hashed while reading; files over ``MAX_FILE_BYTES`` are refused
    before anything is read (a sparse 8 GB ``.jpg`` costs nothing).

    Raises:
        ImageReadError: the file is too large or cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise ImageReadError(f"file is {size:,} bytes; image files over {MAX_FILE_BYTES:,} bytes are not read")
            digest, chunks, total = hashlib.sha256(), [], 0
            while chunk := handle.read(READ_CHUNK):
                total += len(chunk)
                if total > MAX_FILE_BYTES:
                    raise ImageReadError(f"file grew past {MAX_FILE_BYTES:,} bytes while being read")
                digest.update(chunk)
                chunks.append(chunk)
    except OSError as exc:
        raise ImageReadError(f"cannot read: {exc.strerror or exc}") from None
    return b"".join(chunks), digest.hexdigest()


def hash_file(path: str) -> str:
    """The sha256 of a file of any size, read in chunks (a video is never held in memory whole).

    Raises:
        ImageReadError: the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(READ_CHUNK * 4):
                digest.update(chunk)
    except OSError as exc:
        raise ImageReadError(f"cannot read: {exc.strerror or exc}") from None
    return digest.hexdigest()


def detail(image: Image.Image) -> float:
    """How much a picture shows: the spread of its grey levels (a black or faded frame has next to none)."""
    from PIL import ImageStat

    return float(ImageStat.Stat(image.convert("L").resize((32, 32))).stddev[0])


def read_image(data: bytes, min_side: int | None = None, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, ImageInfo]:
    """Decode image bytes into an upright RGB image and its ``ImageInfo`` (with the full size).

    Args:
        data: the file's bytes.
        min_side: the consumer needs only this many pixels on the short side (a CLIP model: 224).
            JPEGs are then decoded at reduced scale (Pillow ``draft``: a 12 MP photo decodes ~8x
            faster), and every image larger than that is shrunk exactly as torchvision's
            ``Resize(min_side)`` in open_clip's preprocess would, so the model gets the same input.

    Raises:
        ImageReadError: the bytes are not a readable image, or it is too large to decode safely.
    """
    if not data:
        raise ImageReadError("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        check_size(image, MAX_PIXELS if image.format == "JPEG" and min_side else max_pixels)  # from the header
        info = _read_info(image)
        if min_side:
            image.draft("RGB", (min_side, min_side))
        rgb = to_rgb(ImageOps.exif_transpose(image) or image)
        if min_side:
            rgb = shrink_to(rgb, min_side)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not an image Pillow can identify") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"refused as a possible decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"cannot decode: {exc}") from None
    return rgb, info


LAYOUT_SIDE = 8  # layout vectors: up to 8 x 8 RGB cells = 192 numbers


def layout_vector(image: Image.Image, dim: int) -> list[float]:
    """The image's colour layout: its 8 x 8 RGB thumbnail centred on mid-grey, at unit length, padded
    with zeros to ``dim`` numbers (fewer cells when ``dim`` < 192).

    The registry vector of an index without an image model (offline profile): real content, distinct
    for different pictures (identical placeholder vectors made Chroma's HNSW crawl), never scored as an
    image signal.
    """
    side = LAYOUT_SIDE
    while side > 1 and 3 * side * side > dim:
        side -= 1
    cells = to_rgb(image).resize((side, side), Image.Resampling.BOX)
    values = [v / 255.0 - 0.5 for v in cells.tobytes()]  # R, G, B of each cell in turn
    norm = sum(v * v for v in values) ** 0.5
    if norm < 1e-6:  # exactly mid-grey everywhere
        values, norm = [1.0] + [0.0] * (len(values) - 1), 1.0
    return [v / norm for v in values] + [0.0] * (dim - len(values))


def look_print(image: Image.Image) -> str:
    """The image's look: its 8 x 8 RGB and 16 x 16 grey thumbnails (box filter), stored at index time as
    the second view of the duplicate rule beside the greyscale pHash, in every profile
    (``mmsearch.likeness``). It sees colour (a blue field is not a blank page) and where a picture changes
    (a battery icon at 20 % and at 40 %)."""
    from ..likeness import COLOUR_SIDE, GREY_SIDE, encode_look

    rgb = to_rgb(image)
    colour = rgb.resize((COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BOX).tobytes()
    grey = rgb.convert("L").resize((GREY_SIDE, GREY_SIDE), Image.Resampling.BOX).tobytes()
    return encode_look(colour, grey)


def perceptual_hash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash (imagehash's pHash) as 16 hex digits. Copies, resizes, re-encodes,
    format changes and light edits stay within a few bits; different photos are 16+ bits apart."""
    import imagehash

    return str(imagehash.phash(to_rgb(image)))


def shrink_to(image: Image.Image, side: int) -> Image.Image:
    """Resize so the short side is ``side`` (bicubic), with torchvision ``Resize(side)``'s size rounding.

    Images whose short side is already ``side`` or less are returned unchanged.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short <= side:
        return image
    new_long = int(side * long / short)
    size = (side, new_long) if width <= height else (new_long, side)
    return image.resize(size, Image.Resampling.BICUBIC)


def write_thumbnail(image: Image.Image, dest: str | Path, size: int) -> None:
    """``image`` shrunk to at most ``size`` px on its long side, written atomically to ``dest`` (PNG with
    its alpha when ``dest`` ends in ``.png``, else JPEG)."""
    dest = Path(dest)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
    if dest.suffix == ".png":
        image.save(partial, "PNG", compress_level=3)  # optimize=True tried every filter: slow
    else:
        to_rgb(image).save(partial, "JPEG", quality=85, optimize=True)
    os.replace(partial, dest)


def to_rgb(image: Image.Image) -> Image.Image:
    """Flatten to RGB; transparent areas become white (not black, as a plain convert would make them)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping everything above 255 to white.
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def check_size(image: Image.Image, limit: int = MAX_PIXELS) -> None:
    width, height = image.size
    if width * height > limit:
        raise ImageReadError(f"refused: {width}x{height} pixels exceeds the {limit:,} pixel limit")


def _read_info(image: Image.Image) -> ImageInfo:
    exif = image.getexif()
    found = info_from_exif(exif, *image.size)
    captions = [c for c in [*found.captions, *_png_captions(image), *_xmp_captions(image)]
                if not is_boilerplate(c, found.camera)]
    return replace(found, captions=_dedupe(captions))


def info_from_exif(exif: Image.Exif, width: int = 0, height: int = 0) -> ImageInfo:
    """The facts an EXIF block holds: date taken, camera, captions, GPS position; ``width`` x ``height`` as
    stored, swapped when the orientation says the picture is turned by 90 degrees."""
    sub = exif.get_ifd(_EXIF_IFD) if exif else {}
    camera = " ".join(v for v in (_clean(exif.get(_MAKE)), _clean(exif.get(_MODEL))) if v) or None
    captions = [c for c in _exif_captions(exif, sub) if not is_boilerplate(c, camera)]
    taken = _parse_exif_date(sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME))
    if exif.get(_ORIENTATION) in (5, 6, 7, 8):  # stored rotated by 90 degrees: upright size is swapped
        width, height = height, width
    lat, lon, problem = gps_position(exif.get_ifd(_GPS_IFD) if exif else {})
    return ImageInfo(width, height, taken, camera, _dedupe(captions), lat, lon, problem)


def gps_position(gps: Mapping[int, Any]) -> tuple[float | None, float | None, str]:
    """(latitude, longitude) in degrees of an EXIF GPS directory, and "" ; or (None, None, why) when it holds
    a position that is none: rationals with a zero denominator, degrees out of range, or (0, 0), which is a
    camera without a fix, not a point in the Gulf of Guinea. (None, None, "") when it holds no position."""
    if gps.get(2) is None or gps.get(4) is None:
        return None, None, ""
    try:
        lat = _degrees(gps.get(2), gps.get(1), "S")
        lon = _degrees(gps.get(4), gps.get(3), "W")
    except (TypeError, ValueError, ZeroDivisionError):
        lat = lon = None
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None, "GPS: the position in the EXIF data is not a valid one; the photo is indexed without a place"
    if lat == 0 and lon == 0:
        return None, None, ""  # no fix: nothing to report
    return round(lat, 6), round(lon, 6), ""


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    if value is None:
        return None
    parts = [float(v) for v in (value if isinstance(value, (tuple, list)) else (value,))]
    degrees = sum(p / 60 ** n for n, p in enumerate(parts[:3]))
    if not math.isfinite(degrees):  # NaN or infinite: a rational with a zero denominator
        return None
    ref = ref.decode("ascii", "ignore") if isinstance(ref, bytes) else str(ref or "")
    return -degrees if ref.strip().upper().startswith(negative) else degrees


def _exif_captions(exif: Image.Exif, sub: dict) -> list[str]:
    texts = [_clean(exif.get(_IMAGE_DESCRIPTION))]
    xp = exif.get(_XP_COMMENT)
    if isinstance(xp, (bytes, tuple)):
        texts.append(_clean(bytes(xp).decode("utf-16-le", errors="ignore")))
    texts.append(_decode_user_comment(sub.get(_USER_COMMENT)))
    return [t for t in texts if t]


def _decode_user_comment(value: object) -> str:
    """EXIF UserComment: an 8-byte character-code prefix, then the text."""
    if isinstance(value, str):
        return _clean(value)
    if not isinstance(value, bytes) or len(value) < 8:
        return ""
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        encoding = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
        return _clean(body.decode(encoding, errors="ignore"))
    return _clean(body.decode("utf-8", errors="ignore"))


def _png_captions(image: Image.Image) -> list[str]:
    text = getattr(image, "text", None) or {}
    return [_clean(v) for k, v in text.items() if k.lower() in _PNG_CAPTION_KEYS and _clean(v)]


def _xmp_captions(image: Image.Image) -> list[str]:
    """``dc:description`` of XMP metadata (JPEG APP1 or PNG iTXt), if any."""
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "ignore")
    out = []
    for block in _XMP_DESCRIPTION.findall(xmp):
        items = _XMP_ITEM.findall(block) or [block]
        out.extend(_clean(html.unescape(item.decode("utf-8", "ignore"))) for item in items)
    return [t for t in out if t]


def _parse_exif_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip()[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _clean(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="ignore")
    return value.replace("\x00", "").strip() if isinstance(value, str) else ""


def _dedupe(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))
