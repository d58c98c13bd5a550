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
    if os.sep != "/":
        return [str(p) for p in reversed(PurePath(path).parents)]
    root, parts = _posix(path)
    if not parts:
        return []
    above = parts[:-1]
    return [root or ".", *((root + "/".join(above[:k])) for k in range(1, len(above) + 1))]


def name_and_parent(path: str) -> tuple[str, tuple[str, ...]]:
    """``PurePath(path).name`` and ``PurePath(path).parent.parts``, without making a path object where paths
    are POSIX (the keyword index reads a million at a time: path objects were 40 % of its build)."""
    if os.sep != "/":
        pure = PurePath(path)
        return pure.name, pure.parent.parts
    root, parts = _posix(path)
    if not parts:
        return "", (root,) if root else ()
    return parts[-1], (root, *parts[:-1]) if root else tuple(parts[:-1])


def _posix(path: str) -> tuple[str, list[str]]:
    """The root of a POSIX path ("", "/", or "//", which POSIX leaves to the system) and its other parts."""
    root = "" if not path.startswith("/") else "//" if path.startswith("//") and not path.startswith("///") else "/"
    return root, [part for part in path.split("/") if part and part != "."]


def plain(path: str) -> bool:
    """Whether a path's folders (``folders_of``) are its text up to each separator, so that it is inside a
    folder exactly when it starts with the folder and a separator: its deepest folder is its text up to its
    last separator, or its root (not ``/a//b.jpg``, ``/a/./b.jpg`` or ``///x.jpg``; on POSIX only)."""
    deepest = folders_of(path)[-1:] if os.sep == "/" else []
    return bool(deepest) and deepest[0] == (path[:path.rfind(os.sep)] or os.sep)
