"""Media kinds: every file format mmsearch reads, one module each, behind one record (``MediaKind``), in one
registry keyed by file extension.

A kind says which extensions it owns, how a browser is sent the file (``media_type``, and whether a browser
shows it as it is), the signature its first bytes carry (an original is served only while it still is
the indexed file, ``mmsearch.media.identity``), and how to decode it at the size a model needs. A new
format is one module with a ``MediaKind`` plus a ``register`` call here (or anywhere, for a plug-in).
Photos of every kind decode to upright RGB with their ``ImageInfo``; a video is sampled into frames
(``mmsearch.media.kinds.video``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from ..images import ImageInfo

Decoder = Callable[[bytes, "int | None", int], "tuple[Image.Image, ImageInfo]"]


@dataclass(frozen=True)
class MediaKind:
    """One file format (or a family decoded the same way).

    Attributes:
        name: short name ("jpeg", "heif", "raw", "svg", "video"), as ``kind`` in an image's metadata.
        label: what a person calls it ("HEIC/HEIF image").
        media_types: extension -> the MIME type an original is sent with.
        signature: whether a file's first 32 bytes (and its extension) are of this kind.
        decode: bytes -> (upright RGB image, ``ImageInfo``), at reduced size when ``min_side`` is given,
            refusing more than ``max_pixels``; None for videos (``video.read_video`` samples them).
        missing: why the kind cannot be read on this machine ("" when it can; e.g. a decoder not installed).
        browser_shows: a browser shows the original as it is (else the page shows a rendition).
        video: frames sampled in time, not one picture.
    """

    name: str
    label: str
    media_types: dict[str, str]
    signature: Callable[[bytes, str], bool]
    decode: Decoder | None = None
    missing: Callable[[], str] = field(default=lambda: "")
    browser_shows: bool = True
    video: bool = False

    @property
    def extensions(self) -> tuple[str, ...]:
        return tuple(self.media_types)


_BY_EXTENSION: dict[str, MediaKind] = {}


def register(kind: MediaKind) -> MediaKind:
    """Make ``kind`` the reader of its extensions (replacing an earlier one); returns it."""
    for extension in kind.extensions:
        _BY_EXTENSION[extension.lower()] = kind
    return kind


def kind_of(path: str | Path) -> MediaKind | None:
    """The kind that reads ``path``, by its extension (None: not a format mmsearch knows)."""
    return _BY_EXTENSION.get(os.path.splitext(str(path))[1].lower())


def readable(path: str | Path) -> bool:
    """Whether ``path`` is of a kind this machine can read (its decoder is installed)."""
    kind = kind_of(path)
    return kind is not None and not kind.missing()


def is_video(path: str | Path) -> bool:
    """Whether ``path`` is a video (by its extension)."""
    kind = kind_of(path)
    return kind is not None and kind.video


def registered() -> list[MediaKind]:
    """Every registered kind, once each."""
    return list(dict.fromkeys(_BY_EXTENSION.values()))


def has_signature(path: str | Path, head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts as the kind of ``path``'s extension does."""
    kind = kind_of(path)
    return kind is not None and kind.signature(head, os.path.splitext(str(path))[1].lower())


def decode(path: str | Path, data: bytes, min_side: int | None, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    """``data`` (the bytes of ``path``) decoded by its kind: an upright RGB image and its ``ImageInfo``.

    Raises:
        ImageReadError: not a kind mmsearch reads, its decoder is missing, or the bytes do not decode.
    """
    from ...errors import ImageReadError

    kind = kind_of(path)
    if kind is None or kind.decode is None:
        raise ImageReadError(f"not a photo format mmsearch reads ({os.path.splitext(str(path))[1] or 'no extension'})")
    reason = kind.missing()
    if reason:
        raise ImageReadError(reason)
    return kind.decode(data, min_side, max_pixels)


def _register_builtins() -> None:
    from . import heif, raster, raw, svg, video

    for module in (raster, heif, raw, svg, video):
        for kind in module.KINDS:
            register(kind)


_register_builtins()

__all__ = ["MediaKind", "decode", "has_signature", "is_video", "kind_of", "readable", "register", "registered"]
