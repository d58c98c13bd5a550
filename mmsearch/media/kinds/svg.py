"""SVG drawings (icon themes, diagrams) rendered to a raster at the size a model needs, through ``resvg``
(``resvg-py``: a Rust renderer in a self-contained wheel).

Measured on 400 icons of /usr/share/icons at 224 px: resvg 3.8-4.5 ms per icon, CairoSVG 3.3-3.4 ms, no
failures either way. resvg was kept: it needs no system library (CairoSVG needs libcairo), and it renders
more of SVG. It reads local files an ``<image href="/path">`` names, so every SVG is first parsed by
``defusedxml`` (no DTD, no entities: no billion laughs, no XXE) and loses every reference that is not
inside the document (``#id``) or inline (``data:``): an SVG never makes mmsearch read or fetch anything.
The canvas is rendered at the size asked for whatever the file claims (a 10^8-pixel ``width`` costs
nothing), and a drawing far longer than wide is held to ``MAX_ASPECT``.
"""

from __future__ import annotations

import functools
import gzip
import io
import re
import zlib
from typing import TYPE_CHECKING

from . import MediaKind

if TYPE_CHECKING:
    from PIL import Image

    from ..images import ImageInfo

MAX_SVG_BYTES = 16 * 1024 * 1024  # after gunzip (an .svgz is a gzip stream)
RENDER_SIDE = 512  # the short side rendered when no model size is asked for (thumbnails ask for theirs)
MAX_ASPECT = 8  # the long side is at most this many times the short side
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|pt|mm|cm|in|pc)?\s*$")
_UNITS = {None: 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}
_HREF = ("href", "{http://www.w3.org/1999/xlink}href")
_URL = re.compile(r"url\(\s*['\"]?\s*(?!#)[^)]*\)", re.I)
_IMPORT = re.compile(r"@import[^;]*;?", re.I)


def _signature(head: bytes, ext: str) -> bool:
    if ext == ".svgz":
        return head.startswith(b"\x1f\x8b")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<?xml", b"<svg", b"<!--", b"<!doctype svg"))


@functools.cache
def missing() -> str:
    try:
        import defusedxml  # noqa: F401
        import resvg_py  # noqa: F401
    except ImportError:
        return "SVG image: no renderer installed (pip install resvg-py defusedxml)"
    return ""


def decode(data: bytes, min_side: int | None, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    """The drawing rendered with its short side at ``min_side`` (else ``RENDER_SIDE``), on white.

    Raises:
        ImageReadError: not well-formed SVG, a DTD or entity in it, too large, or resvg refused it.
    """
    import resvg_py
    from PIL import Image

    from ...errors import ImageReadError
    from ..images import ImageInfo, to_rgb

    text, (width, height) = sanitised(_inflated(data))
    side = min_side or RENDER_SIDE
    scale = side / max(min(width, height), 1e-9)
    out = (max(1, round(min(width * scale, side * MAX_ASPECT))), max(1, round(min(height * scale, side * MAX_ASPECT))))
    if out[0] * out[1] > max_pixels:
        raise ImageReadError(f"refused: rendering {out[0]}x{out[1]} pixels exceeds the {max_pixels:,} pixel limit")
    try:
        png = resvg_py.svg_to_bytes(svg_string=text, width=out[0], height=out[1], dpi=96)  # CSS px: 96 per inch
        image = Image.open(io.BytesIO(bytes(png)))
        image.load()
    except (ValueError, OSError, RuntimeError) as exc:
        raise ImageReadError(f"cannot render this SVG: {exc}") from None
    return to_rgb(image), ImageInfo(max(1, round(width)), max(1, round(height)))


def _inflated(data: bytes) -> bytes:
    from ...errors import ImageReadError

    if not data.startswith(b"\x1f\x8b"):
        return data
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_SVG_BYTES + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise ImageReadError(f"cannot read this .svgz: {exc}") from None
    if len(out) > MAX_SVG_BYTES:
        raise ImageReadError(f"refused: this .svgz inflates past {MAX_SVG_BYTES:,} bytes")
    return out


def sanitised(data: bytes) -> tuple[str, tuple[float, float]]:
    """The SVG as text with no reference outside itself, and its intrinsic (width, height) in px.

    Raises:
        ImageReadError: it is not well-formed XML with an ``<svg>`` root, or it declares a DTD or entities.
    """
    from xml.etree.ElementTree import ParseError, tostring

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    from ...errors import ImageReadError

    if len(data) > MAX_SVG_BYTES:
        raise ImageReadError(f"refused: SVG of {len(data):,} bytes (at most {MAX_SVG_BYTES:,})")
    try:
        root = fromstring(data, forbid_dtd=False)  # a DOCTYPE naming the SVG DTD is common and harmless
    except DefusedXmlException as exc:
        raise ImageReadError(f"refused: this SVG declares a DTD or entities ({type(exc).__name__})") from None
    except (ParseError, ValueError) as exc:
        raise ImageReadError(f"not well-formed SVG: {exc}") from None
    if not root.tag.endswith("svg"):
        raise ImageReadError("not an SVG drawing (its root element is not <svg>)")
    for element in root.iter():
        for name in _HREF:
            value = element.get(name)
            if value is not None and not value.strip().startswith(("#", "data:")):
                del element.attrib[name]
        style = element.get("style")
        if style and "url(" in style.lower():
            element.set("style", _URL.sub("none", style))
        if element.tag.endswith("style") and element.text:
            element.text = _URL.sub("none", _IMPORT.sub("", element.text))
        for name, value in list(element.attrib.items()):
            if name not in _HREF and "url(" in value.lower() and _URL.search(value):
                element.set(name, _URL.sub("none", value))
    return tostring(root, encoding="unicode"), _size(root)


def _size(root: object) -> tuple[float, float]:
    """The drawing's width and height in px: its ``width``/``height``, else its ``viewBox``, else 100 x 100."""
    get = root.get  # type: ignore[attr-defined]
    box = [float(v) for v in re.split(r"[\s,]+", (get("viewBox") or "").strip()) if _is_number(v)]
    box_size = (box[2], box[3]) if len(box) == 4 and box[2] > 0 and box[3] > 0 else None
    width, height = _length(get("width")), _length(get("height"))
    if width and height:
        return width, height
    if box_size:
        ratio = box_size[1] / box_size[0]
        if width:
            return width, width * ratio
        if height:
            return height / ratio, height
        return box_size
    return 100.0, 100.0


def _length(value: str | None) -> float | None:
    match = _LENGTH.match(value or "")
    if not match:
        return None  # a percentage or nothing: the viewBox decides
    number = float(match.group(1)) * _UNITS[match.group(2)]
    return number if number > 0 else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


KINDS = [MediaKind("svg", "SVG drawing", {".svg": "image/svg+xml", ".svgz": "image/svg+xml"}, _signature, decode,
                   missing, browser_shows=False)]
