"""Finding image files: recursive, sorted, hidden entries skipped, symlinked folders followed once, and the
database folder (its thumbnails) never entered."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..media.files import is_image_path, unread_format
from ..paths import within_any

Failed = list[tuple[str, str]]


def scan(paths: Iterable[str | Path], failed: Failed, hidden: bool = False,
         skip: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Image files under ``paths`` (files are taken as given), sorted within each folder.

    Symlinked folders are followed, but a folder reached twice (a symlink loop, or two links to one
    folder) is walked once. Folders that cannot be listed are reported in ``failed``. Nothing inside the
    folders ``skip`` (the database's own, wherever they sit, also reached through a link) is yielded.
    """
    visited: set[tuple[int, int]] = set()
    for folder in skip:
        try:
            info = os.stat(folder)
        except OSError:
            continue
        visited.add((info.st_dev, info.st_ino))  # as if walked already: never entered
    skipped = [os.path.realpath(str(folder)) for folder in skip]
    for root in paths:
        root = Path(os.path.abspath(os.path.expanduser(str(root))))
        if within_any(os.path.realpath(root), skipped):
            continue
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from _walk(root, failed, hidden, visited)
        else:
            failed.append((str(root), "no such file or folder"))


def _walk(root: Path, failed: Failed, hidden: bool, visited: set[tuple[int, int]]) -> Iterator[Path]:
    def on_error(exc: OSError) -> None:
        failed.append((str(exc.filename), f"cannot list folder: {exc.strerror or exc}"))

    for folder, dirs, files in os.walk(root, followlinks=True, onerror=on_error):
        try:
            info = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (info.st_dev, info.st_ino) in visited:
            dirs[:] = []  # reached again through a symlink: a loop or a second link
            continue
        visited.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if hidden or not d.startswith("."))
        for name in sorted(files):
            if not hidden and name.startswith("."):
                continue
            if is_image_path(Path(name)):
                yield Path(folder) / name
            elif unread_format(Path(name)):
                failed.append((os.path.join(folder, name), unread_format(Path(name))))
