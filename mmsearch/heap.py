"""Giving the C heap's free memory back to the system after a large build (``trim``).

A build that makes and drops many objects (the keyword index from every record: 1.2 GB at its peak at a
million photos) leaves the C allocator's heap full of free holes between the few blocks still in use.
glibc hands back only the free space at the heap's top, so those holes stay resident for the life of the
process (the page, for days). ``malloc_trim`` releases every free page, wherever it is: at a million
photos, the serving process held 4.03 GB after the build and 3.40 GB after the trim.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)


def trim() -> bool:
    """Release the heap's free pages to the system (glibc's ``malloc_trim(0)``); whether it could run
    (other C libraries have nothing to call, and keep what they keep)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@lru_cache(maxsize=1)
def _libc() -> Any | None:
    """The C library if it is glibc (it has ``malloc_trim``), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # no such library, or a C library without malloc_trim (musl, macOS)
        logger.debug("malloc_trim is not available here: the heap keeps its free pages")
        return None
