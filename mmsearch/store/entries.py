"""What the store remembers of each indexed file (``Entry``: its change markers), and the entries file that
keeps them beside the index between processes.

An index run compares every file it finds against these. Reading them from Chroma means reading every
record's metadata (199 s at 474k images, growing faster than the library), so the store keeps them in
``entries.npz`` (``Config.local_file``) and a new process reads that file and what the numbered writes
changed since (``Store.changed_since``), as the keyword index does with ``keywords.npz``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..packed import pack_named, unpack_named

logger = logging.getLogger(__name__)

FORMAT = 1  # the layout of the entries file; a file of another layout is read again from the store
COLUMNS = ("id", "path", "mtime_ns", "caption_sig", "sha256", "ocr_sig")  # the string fields, one per entry
LISTS = ("captions", "manifest_captions")  # the fields holding a few strings each


class Entry(NamedTuple):
    """What the store remembers about an indexed file to decide whether it changed (a named tuple: a million
    of them are made from the entries file in a fraction of a frozen dataclass's time)."""

    id: str
    size: int
    mtime_ns: str
    caption_sig: str
    sha256: str = ""
    captions: tuple[str, ...] = ()  # every stored caption
    manifest_captions: tuple[str, ...] = ()  # those that came from a manifest (kept until one says otherwise)
    ocr_sig: str = ""  # the OCR engine that read the photo's text ("" = not read)
    path: str = ""


def entry_of(image_id: str, meta: dict) -> Entry:
    """An image record's entry, from its stored metadata (markers compared as strings and ints, never
    floats: Chroma hands back some floats changed)."""
    return Entry(image_id, int(meta["size"]), str(meta["mtime_ns"]), str(meta.get("caption_sig", "")),
                 str(meta.get("sha256", "")), tuple(meta.get("captions") or ()),
                 tuple(meta.get("manifest_captions") or ()), str(meta.get("ocr_sig", "")), str(meta["path"]))


def save(path: Path, key: Sequence[Any], through: int, by_id: dict[str, Entry]) -> None:
    """Write the entries to ``path`` (numpy ``.npz``, no pickle), with ``key`` (which index they are of) and
    ``through`` (the first write number they may lack); a folder that cannot be written is left as it is."""
    entries = list(by_id.values())
    arrays: dict[str, np.ndarray] = {"through": np.int64(through), "size": np.asarray([e.size for e in entries], np.int64)}
    for name, strings in [("key", [json.dumps([FORMAT, *key])]),
                          *((column, [getattr(e, column) for e in entries]) for column in COLUMNS)]:
        arrays |= pack_named(name, strings)
    for name in LISTS:
        lists = [getattr(e, name) for e in entries]
        arrays[f"{name}_counts"] = np.asarray([len(items) for items in lists], np.int64)
        arrays |= pack_named(name, [s for items in lists for s in items])
    partial = path.with_name(f".{path.name}.{os.getpid()}.part.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, **arrays)
        os.replace(partial, path)
    except OSError as exc:  # a read-only index still works: the next process reads the store again
        logger.debug("the entries file %s was not written: %s", path, exc)
        partial.unlink(missing_ok=True)


def load(path: Path, key: Sequence[Any]) -> tuple[int, dict[str, Entry]] | None:
    """(through, entries by id) saved at ``path`` with this ``key``; None when there is no such file, it was
    saved for another index or layout, or it is damaged (it is only a copy of what the store holds)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(unpack_named(data, "key")[0]) != json.loads(json.dumps([FORMAT, *key])):
                return None
            return int(data["through"]), _entries(data)
    except FileNotFoundError:
        return None
    except Exception as exc:  # BadZipFile, EOFError, ValueError, KeyError, ...: read the store again
        logger.debug("the entries file %s is not usable: %s", path, exc)
        return None


def _entries(data: Any) -> dict[str, Entry]:
    columns = [list(unpack_named(data, column)) for column in COLUMNS]
    sizes = data["size"].tolist()
    lists = [_split(list(unpack_named(data, name)), data[f"{name}_counts"].tolist()) for name in LISTS]
    if len({len(sizes), *(len(c) for c in columns), *(len(x) for x in lists)}) != 1:
        raise ValueError("columns of different lengths")
    ids, paths, mtimes, sigs, shas, ocrs = columns
    return dict(zip(ids, map(Entry._make, zip(ids, sizes, mtimes, sigs, shas, *lists, ocrs, paths))))


def _split(flat: list[str], counts: list[int]) -> list[tuple[str, ...]]:
    """``flat`` cut into tuples of ``counts`` strings each."""
    if sum(counts) != len(flat):
        raise ValueError("list counts do not add up")
    ends = list(accumulate(counts))
    return [tuple(flat[end - n:end]) if n else () for n, end in zip(counts, ends)]
