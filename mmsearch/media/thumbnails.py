"""Thumbnails made once per (file, modification time, size) and kept on disk for the web page."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import ImageReadError
from .files import has_alpha, save_thumbnail
from .kinds import is_video

SIZES = {"thumb": 384, "preview": 1280}  # gallery tiles, and the larger view of one hit


class ThumbnailCache:
    """Small JPEG copies of indexed images, so a browser never receives 12 MP originals.

    Entries are keyed by path, modification time and size: an edited photo gets a new thumbnail.
    Safe to use from several threads and processes (files are written atomically).

    Args:
        folder: where thumbnails are kept (``Config.thumbnail_dir``).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).absolute()

    def get(self, path: str | Path, kind: str = "thumb", time: float | None = None) -> Path:
        """Path of the cached thumbnail of image ``path``, made now if missing; of a video, the frame at
        ``time`` seconds (its first frame when None).

        Raises:
            ImageReadError: the image cannot be read (e.g. it was deleted since it was indexed).
        """
        size = SIZES[kind]
        try:
            info = os.stat(path)
        except OSError as exc:
            raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block the thread that opens it
            raise ImageReadError(f"{path} is not a regular file")
        mtime = info.st_mtime_ns
        moment = f"\0{round(float(time), 2)}" if time is not None and is_video(path) else ""
        key = hashlib.sha1(f"{os.path.abspath(path)}\0{mtime}\0{size}{moment}".encode("utf-8", "surrogateescape")).hexdigest()
        for suffix in (".jpg", ".png"):
            dest = self.folder / key[:2] / f"{key}{suffix}"
            if _complete(dest):
                return dest
        # Transparent sources (icons, logos) keep their alpha in a PNG; JPEG would speckle it.
        dest = self.folder / key[:2] / f"{key}{'.png' if has_alpha(path) else '.jpg'}"
        save_thumbnail(path, dest, size, time)  # missing, or damaged on disk since it was made: made again
        return dest


_ENDINGS = {".jpg": b"\xff\xd9", ".png": b"IEND\xaeB`\x82"}  # JPEG end-of-image marker, PNG IEND chunk


def _complete(thumbnail: Path) -> bool:
    """Whether a cached thumbnail is whole: it ends as its format ends (thumbnails are written
    atomically, so only outside damage truncates one)."""
    ending = _ENDINGS[thumbnail.suffix]
    try:
        with open(thumbnail, "rb") as handle:
            handle.seek(-len(ending), os.SEEK_END)
            return handle.read(len(ending)) == ending
    except OSError:
        return False
