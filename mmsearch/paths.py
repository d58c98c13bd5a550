"""Path rules shared by every layer: whether a path lies inside a folder, and the folders above a file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import PurePath


def within(path: str, folder: str) -> bool:
    """Whether the absolute ``path`` is the absolute ``folder`` or inside it (``/a/bc`` is not in ``/a/b``)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def within_any(path: str, folders: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``folders`` or inside one of them."""
    return any(within(path, folder) for folder in folders)


def folders_of(path: str) -> list[str]:
    """Every folder above a file, the root first (``/a/b/c.jpg`` -> ``/``, ``/a``, ``/a/b``): what an image
    record's ``folders`` holds, the folder filter matches and the folder facet counts."""
    return [str(p) for p in reversed(PurePath(path).parents)]
