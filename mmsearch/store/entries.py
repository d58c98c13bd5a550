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
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..packed import PackedStrings, RowFinder, ints, pack, pack_named, unpack_named

logger = logging.getLogger(__name__)

FORMAT = 1  # the layout of the entries file; a file of another layout is read again from the store
COLUMNS = ("id", "path", "mtime_ns", "caption_sig", "sha256", "ocr_sig")  # the string fields, one per entry
LISTS = ("captions", "manifest_captions")  # the fields holding a few strings each


class Entry(NamedTuple):
    """What the store remembers about an indexed file to decide whether it changed (a named tuple: one is
    made from the packed rows for each file an index run looks up, in a fraction of a frozen dataclass's
    time)."""

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


class Entries(MutableMapping[str, Entry]):
    """Entries by image id: the rows of the entries file, kept packed as the file holds them, with those
    written or removed since over them (``copy`` one, then change the copy: the rows are shared, never
    written). ``by_path`` is the same entries by path, as an index run looks files up.

    A million entries take about 0.3 GB this way and open in about a second; as a million ``Entry`` objects
    and a dict by path they took 0.7 GB and nine seconds.
    """

    def __init__(self, rows: _Rows | None = None):
        self._rows = rows if rows is not None else _Rows.of(())
        self._hidden = np.zeros(len(self._rows), dtype=bool)  # rows removed or written again since
        self._shown = len(self._rows)
        self._new: dict[str, Entry] = {}  # written since, by id
        self._new_paths: dict[str, str] = {}  # their ids by path

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> Entries:
        """These entries, packed."""
        return cls(_Rows.of(entries))

    def _row(self, image_id: str) -> int:
        row = self._rows.ids.row(image_id)
        return -1 if row < 0 or self._hidden[row] else row

    def __getitem__(self, image_id: str) -> Entry:
        found = self._new.get(image_id)
        if found is not None:
            return found
        row = self._row(image_id)
        if row < 0:
            raise KeyError(image_id)
        return self._rows.entry(row)

    def __setitem__(self, image_id: str, entry: Entry) -> None:
        self._forget(image_id)
        self._new[image_id] = entry
        self._new_paths[entry.path] = image_id

    def __delitem__(self, image_id: str) -> None:
        if not self._forget(image_id):
            raise KeyError(image_id)

    def _forget(self, image_id: str) -> bool:
        """Take ``image_id``'s entry out; whether there was one."""
        old = self._new.pop(image_id, None)
        if old is not None:
            if self._new_paths.get(old.path) == image_id:
                del self._new_paths[old.path]
            return True
        row = self._row(image_id)
        if row >= 0:
            self._hidden[row] = True
            self._shown -= 1
        return row >= 0

    def discard(self, image_ids: Iterable[str]) -> None:
        """Take these ids' entries out, where there are any."""
        for image_id in image_ids:
            self._forget(image_id)

    def __len__(self) -> int:
        return self._shown + len(self._new)

    def _shown_rows(self) -> Iterator[int]:
        return (row for row, hidden in enumerate(self._hidden.tolist()) if not hidden)

    def _shown_values(self, column: str) -> Iterator[str]:
        """The packed rows' ``column`` (one of ``COLUMNS``), those removed or written again since left out."""
        return (value for value, hidden in zip(self._rows.strings[column], self._hidden.tolist()) if not hidden)

    def __iter__(self) -> Iterator[str]:
        yield from self._shown_values("id")
        yield from self._new

    def items(self) -> Iterator[tuple[str, Entry]]:  # type: ignore[override]
        for row in self._shown_rows():
            entry = self._rows.entry(row)
            yield entry.id, entry
        yield from self._new.items()

    def copy(self) -> Entries:
        """The same entries, sharing the packed rows, to change without changing these."""
        other = Entries.__new__(Entries)
        other._rows, other._hidden, other._shown = self._rows, self._hidden.copy(), self._shown
        other._new, other._new_paths = dict(self._new), dict(self._new_paths)
        return other

    def packed(self) -> Entries:
        """The same entries, every one in the packed rows (none as an object)."""
        if not self._new and self._shown == len(self._rows):
            return self
        return Entries(self._rows.kept(~self._hidden).joined(_Rows.of(self._new.values())))

    def arrays(self) -> dict[str, np.ndarray]:
        """The entries as the entries file holds them (``load`` reads them back)."""
        return self.packed()._rows.arrays()

    def by_path(self) -> Mapping[str, Entry]:
        """The same entries by path (a view: it follows changes to these)."""
        return _ByPath(self)


class _ByPath(Mapping[str, Entry]):
    """``Entries`` by path: the packed rows' paths found by hash, those written since in a dict."""

    def __init__(self, entries: Entries):
        self._entries = entries

    def __getitem__(self, path: str) -> Entry:
        entries = self._entries
        image_id = entries._new_paths.get(path)
        if image_id is not None:
            return entries._new[image_id]
        row = entries._rows.paths.row(path)
        if row < 0 or entries._hidden[row]:
            raise KeyError(path)
        return entries._rows.entry(row)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        yield from self._entries._shown_values("path")
        yield from self._entries._new_paths

    def items(self) -> Iterator[tuple[str, Entry]]:  # type: ignore[override]
        return ((entry.path, entry) for _, entry in self._entries.items())


class _Rows:
    """The entries file's columns: a packed string column per ``COLUMNS``, the sizes, and each of ``LISTS``
    as its strings back to back with every entry's offsets into them. Never changed once made."""

    def __init__(self, strings: dict[str, PackedStrings], sizes: np.ndarray,
                 lists: dict[str, tuple[PackedStrings, np.ndarray]]):
        self.strings, self.sizes, self.lists = strings, sizes, lists
        if len({len(sizes), *(len(c) for c in strings.values()), *(len(o) - 1 for _, o in lists.values())}) != 1:
            raise ValueError("columns of different lengths")
        if any(int(offsets[-1]) != len(flat) for flat, offsets in lists.values()):
            raise ValueError("list counts do not add up")
        self._columns = [strings[column] for column in COLUMNS]  # in ``COLUMNS``' order, for ``entry``
        self._lists = [(lists[name][0], ints(lists[name][1])) for name in LISTS]
        self._sizes = ints(sizes)

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> _Rows:
        entries = list(entries)
        strings = {column: _packed([getattr(e, column) for e in entries]) for column in COLUMNS}
        lists = {}
        for name in LISTS:
            items = [getattr(e, name) for e in entries]
            lists[name] = (_packed([s for group in items for s in group]), _offsets([len(g) for g in items]))
        return cls(strings, np.asarray([e.size for e in entries], dtype=np.int64), lists)

    @classmethod
    def read(cls, data: Any) -> _Rows:
        """The rows ``arrays`` saved (ValueError when they do not fit together)."""
        lists = {name: (unpack_named(data, name), _offsets(np.asarray(data[f"{name}_counts"], np.int64)))
                 for name in LISTS}
        return cls({column: unpack_named(data, column) for column in COLUMNS},
                   np.asarray(data["size"], dtype=np.int64), lists)

    def arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"size": self.sizes}
        for column in COLUMNS:
            arrays |= pack_named(column, self.strings[column])
        for name, (flat, offsets) in self.lists.items():
            arrays[f"{name}_counts"] = np.diff(offsets)
            arrays |= pack_named(name, flat)
        return arrays

    def __len__(self) -> int:
        return len(self.sizes)

    @cached_property
    def ids(self) -> RowFinder:
        return RowFinder(self.strings["id"])

    @cached_property
    def paths(self) -> RowFinder:
        return RowFinder(self.strings["path"])

    def entry(self, row: int) -> Entry:
        """The entry in ``row`` (made anew: a few microseconds)."""
        image_id, path, mtime_ns, caption_sig, sha256, ocr_sig = [s.text(row) for s in self._columns]
        (captions, at), (manifest, manifest_at) = self._lists
        return Entry(image_id, self._sizes[row], mtime_ns, caption_sig, sha256,
                     tuple([captions.text(n) for n in range(at[row], at[row + 1])]),
                     tuple([manifest.text(n) for n in range(manifest_at[row], manifest_at[row + 1])]), ocr_sig, path)

    def kept(self, keep: np.ndarray) -> _Rows:
        """The rows where the bool array ``keep`` is true."""
        lists = {}
        for name, (flat, offsets) in self.lists.items():
            counts = np.diff(offsets)
            lists[name] = (flat.kept(np.repeat(keep, counts)), _offsets(counts[keep]))
        return _Rows({c: s.kept(keep) for c, s in self.strings.items()}, self.sizes[keep], lists)

    def joined(self, more: _Rows) -> _Rows:
        """These rows, then ``more``'s."""
        lists = {name: (flat.joined(more.lists[name][0]),
                        np.concatenate([offsets, more.lists[name][1][1:] + offsets[-1]]))
                 for name, (flat, offsets) in self.lists.items()}
        return _Rows({c: s.joined(more.strings[c]) for c, s in self.strings.items()},
                     np.concatenate([self.sizes, more.sizes]), lists)


def _packed(strings: Sequence[str]) -> PackedStrings:
    data, ends = pack(strings)
    return PackedStrings(data.tobytes(), ends)


def _offsets(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Where each entry's items start among all of them, and where the last ends."""
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def save(path: Path, key: Sequence[Any], through: int, entries: Mapping[str, Entry]) -> None:
    """Write ``entries`` (by id) to ``path`` (numpy ``.npz``, no pickle), with ``key`` (which index they are
    of) and ``through`` (the first write number they may lack); a folder that cannot be written is left as
    it is."""
    kept = entries if isinstance(entries, Entries) else Entries.of(entries.values())
    arrays = {"through": np.int64(through), **pack_named("key", [json.dumps([FORMAT, *key])]), **kept.arrays()}
    partial = path.with_name(f".{path.name}.{os.getpid()}.part.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, **arrays)
        os.replace(partial, path)
    except OSError as exc:  # a read-only index still works: the next process reads the store again
        logger.debug("the entries file %s was not written: %s", path, exc)
        partial.unlink(missing_ok=True)


def load(path: Path, key: Sequence[Any]) -> tuple[int, Entries] | None:
    """(through, entries by id) saved at ``path`` with this ``key``; None when there is no such file, it was
    saved for another index or layout, or it is damaged (it is only a copy of what the store holds)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(unpack_named(data, "key")[0]) != json.loads(json.dumps([FORMAT, *key])):
                return None
            return int(data["through"]), Entries(_Rows.read(data))
    except FileNotFoundError:
        return None
    except Exception as exc:  # BadZipFile, EOFError, ValueError, KeyError, ...: read the store again
        logger.debug("the entries file %s is not usable: %s", path, exc)
        return None
