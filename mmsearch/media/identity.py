"""Whether a file is still the image that was indexed: what may be served or thumbnailed for a hit.

An index record names a path, but the file at that path can change after indexing: replaced by a
symbolic link to ``/etc/shadow``, or by a hard link to the database. A file is still the indexed image
when it is a regular file (a link is followed, and judged by what it reaches) whose first bytes are the
signature of its format (``mmsearch.media.kinds``), and whose size and modification time are those recorded, or, when the
time differs (a touched file), whose content hash is the recorded one.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from typing import Any, BinaryIO

from .kinds import has_signature

CHUNK = 1 << 20


def is_indexed_file(handle: BinaryIO, path: str, meta: Mapping[str, Any]) -> bool:
    """Whether the open file ``handle`` (of ``path``) is still the image its index record ``meta`` describes
    (module docstring). The handle is left at its start."""
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode) or info.st_size != int(meta.get("size") or -1):
        return False
    head = os.pread(handle.fileno(), 32, 0)
    if not has_signature(path, head):
        return False
    if str(info.st_mtime_ns) == str(meta.get("mtime_ns", "")):
        return True
    digest = hashlib.sha256()
    handle.seek(0)
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
    handle.seek(0)
    return bool(meta.get("sha256")) and digest.hexdigest() == meta.get("sha256")


def open_indexed(path: str, meta: Mapping[str, Any]) -> BinaryIO | None:
    """The file opened for reading when it is still the indexed image (``is_indexed_file``), else None.
    Opened without blocking (a FIFO put in a photo's place never hangs the caller), then checked on the
    open descriptor, so what is checked is what is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    handle = os.fdopen(fd, "rb")
    try:
        if is_indexed_file(handle, path, meta):
            return handle
    except (OSError, ValueError):
        pass
    handle.close()
    return None


def still_indexed(path: str, meta: Mapping[str, Any]) -> bool:
    """Whether the file at ``path`` is still the image its index record ``meta`` describes."""
    handle = open_indexed(path, meta)
    if handle is None:
        return False
    handle.close()
    return True
