"""Each image's stored metadata beside the keyword index (``RecordRows``), as the search shows it.

A new process's first search waited for Chroma to load the images' vector index (3.2-3.8 s at a million
photos) only to read its hits' records: Chroma loads one collection at a time, and any read of a collection,
a ``get`` by id included, waits until its index is loaded. While that load runs (``Store.warming``), the
hits' metadata is read from here instead: the keyword index already reads every record as it follows the
store (``KeywordFeed``), so it keeps what it read.

Where the rows are, as ``mmsearch.search.vector_rows`` keeps vectors: a base file of JSON rows back to back
(``RECORD_BASE``, its row ends in ``keywords.npz``), written once and never changed, read a few rows at a time
(a search reads only its hits') and never mapped; and the rows added since, in memory and in ``keywords.npz``
(``TAIL_MAX`` at most: past that, the live rows are written into a new base). Each document points at its row
(``where``). The vectors, and the internal fields a hit does not show, are left out (``LEFT_OUT``).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
import weakref
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..config import RECORD_BASE
from ..records import HIDDEN_METADATA
from ..store.collections import CAPTION_VECTORS, VECTOR
from .vector_rows import TAIL_MAX, sweep

logger = logging.getLogger(__name__)

# Metadata fields not kept here: the vectors, and what a hit does not show (``HIDDEN_METADATA``) but the photo's
# look, by which copies fold into one hit (``search.collapse``; about 500 of a record's 800 bytes).
LEFT_OUT = frozenset({VECTOR, CAPTION_VECTORS, *HIDDEN_METADATA}) - {"look"}
KIND = "records"  # the kind in the base file's name (``RECORD_BASE``) and the ``keywords.npz`` arrays' names
WRITE_ROWS = 65_536  # rows read at a time while a new base is written


def encoded(meta: dict) -> bytes | None:
    """A record's metadata as one JSON row (``LEFT_OUT`` left out); None for one JSON cannot hold (then the
    store is read for it)."""
    try:
        return json.dumps({k: v for k, v in meta.items() if k not in LEFT_OUT}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return None


def decoded(row: bytes) -> dict[str, Any]:
    return json.loads(row.decode("utf-8", "surrogatepass"))


class RecordBase:
    """A base file's rows: JSON back to back, ``ends[n]`` the end of row ``n``. Read with ``os.pread``, one call
    per run of consecutive rows; never mapped, so no page of it counts in the process."""

    def __init__(self, path: Path | None = None, ends: np.ndarray | None = None):
        self.path, self.ends = path, np.zeros(0, np.int64) if ends is None else ends
        self.fd = -1
        if path is not None and len(self.ends):
            self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            weakref.finalize(self, os.close, self.fd)

    def __len__(self) -> int:
        return len(self.ends)

    def rows(self, rows: Sequence[int]) -> list[bytes]:
        """These rows (each ``0 <= row < len(self)``), in the order given."""
        order = sorted(set(rows))
        got: dict[int, bytes] = {}
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and order[end] == order[end - 1] + 1:
                end += 1
            first, last = order[start], order[end - 1]
            offset = int(self.ends[first - 1]) if first else 0
            data = _read(self.fd, offset, int(self.ends[last]) - offset, self.path)
            for row in range(first, last + 1):
                got[row] = data[(int(self.ends[row - 1]) if row else 0) - offset:int(self.ends[row]) - offset]
            start = end
        return [got[row] for row in rows]


def _read(fd: int, offset: int, size: int, path: Path | None) -> bytes:
    data = os.pread(fd, size, offset) if hasattr(os, "pread") else _seek_read(fd, offset, size)
    if len(data) != size:  # a base file is never changed: only a damaged disk reads short
        raise OSError(f"{path}: read {len(data)} of {size} bytes")
    return data


def _seek_read(fd: int, offset: int, size: int) -> bytes:  # Windows
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


class RecordRows:
    """Per document, its stored metadata (``encoded``), and whether it is known (``held``)."""

    def __init__(self, where: np.ndarray | None = None, base: RecordBase | None = None, base_file: str = "",
                 tail: tuple[bytes, ...] = (), spill: _Spill | None = None):
        self.where = np.zeros(0, np.int64) if where is None else where  # per document: its row, -1 if none
        self.base = RecordBase() if base is None else base  # rows 0 .. len(base) - 1
        self.base_file = base_file  # its file's name, in the folder of ``keywords.npz`` ("": none yet)
        self.tail = tail  # the rows after the base
        self.spill = spill  # a build's base being written (``spilling``): rows go there until ``finished``

    @classmethod
    def spilling(cls, keywords: Path) -> RecordRows:
        """Empty rows for a build that writes its rows into a new base file beside the keyword file ``keywords``
        as they are appended (``VectorRows.spilling``'s rule: a million records are about 0.4 GB)."""
        name = RECORD_BASE.format(stem=keywords.stem, kind=KIND, token=uuid.uuid4().hex[:12])
        return cls(base_file=name, spill=_Spill(keywords.parent / name))

    def finished(self) -> RecordRows:
        """A build's rows, its base file opened (these rows, where not ``spilling``)."""
        if self.spill is None:
            return self
        base = self.spill.done()
        return RecordRows(self.where, base, self.base_file if len(base) else "")

    def __len__(self) -> int:
        return len(self.where)

    def appended(self, metas: Sequence[dict | None]) -> RecordRows:
        """These rows with one more document per metadata (None: one not known); this one is left as it was."""
        rows = [None if meta is None else encoded(meta) for meta in metas]
        held = np.asarray([row is not None for row in rows], dtype=bool)
        kept = [row for row in rows if row is not None]
        where = np.full(len(rows), -1, np.int64)
        if self.spill is not None:
            where[held] = self.spill.rows + np.arange(len(kept))
            self.spill.write(kept)
            return RecordRows(np.concatenate([self.where, where]), None, self.base_file, (), self.spill)
        where[held] = len(self.base) + len(self.tail) + np.arange(len(kept))
        return RecordRows(np.concatenate([self.where, where]), self.base, self.base_file, (*self.tail, *kept))

    def packed(self, keep: np.ndarray) -> RecordRows:
        """Only the documents ``keep`` (ascending); their rows stay where they are."""
        return RecordRows(self.where[keep], self.base, self.base_file, self.tail)

    def of(self, docs: Sequence[int]) -> list[dict[str, Any] | None]:
        """The metadata of these documents (None where not held)."""
        return [None if row is None else decoded(row) for row in self._rows(self.where[np.asarray(docs, np.int64)])]

    def _rows(self, rows: np.ndarray) -> list[bytes | None]:
        listed = rows.tolist()
        in_base = [r for r in listed if 0 <= r < len(self.base)]
        read = dict(zip(in_base, self.base.rows(in_base)))
        return [None if r < 0 else read[r] if r < len(self.base) else self.tail[r - len(self.base)] for r in listed]

    # -- on disk -------------------------------------------------------------------------------------

    def saving(self, folder: Path, stem: str) -> RecordRows:
        """These rows as ``keywords.npz`` in ``folder`` will hold them: the same, or (the tail past ``TAIL_MAX``,
        the base's file gone, or most of the base's rows no document's any more) every held row written into a
        new base file, whose name starts with ``stem``; ``retire`` then deletes the old base."""
        docs = np.flatnonzero(self.where >= 0)
        if len(self.tail) <= TAIL_MAX and len(self.base) <= 2 * max(len(docs), TAIL_MAX) \
                and (not self.base_file or (folder / self.base_file).exists()):
            return self
        if not len(docs):
            return RecordRows(np.full(len(self), -1, np.int64))
        name = RECORD_BASE.format(stem=stem, kind=KIND, token=uuid.uuid4().hex[:12])
        partial, spill = folder / f".{name}.{os.getpid()}.part", None
        try:
            spill = _Spill(partial)
            for start in range(0, len(docs), WRITE_ROWS):
                spill.write([row for row in self._rows(self.where[docs[start:start + WRITE_ROWS]]) if row is not None])
            spill.close()
            os.replace(partial, folder / name)
        except OSError:  # a full disk: nothing half written is left
            if spill is not None:
                spill.close()
            partial.unlink(missing_ok=True)
            raise
        logger.debug("records: %d rows written into %s", len(docs), name)
        sweep(folder, stem, KIND, name, RECORD_BASE)
        where = np.full(len(self), -1, np.int64)
        where[docs] = np.arange(len(docs))
        return RecordRows(where, RecordBase(folder / name, np.frombuffer(spill.ends, np.int64).copy()), name)

    def arrays(self) -> dict[str, np.ndarray]:
        """What ``keywords.npz`` holds of the rows: where each document's is, the tail, the base's name and row
        ends."""
        return {f"{KIND}_where": self.where, f"{KIND}_tail": np.frombuffer(b"".join(self.tail), np.uint8),
                f"{KIND}_tail_ends": np.cumsum([len(row) for row in self.tail], dtype=np.int64),
                f"{KIND}_base": np.asarray([self.base_file]), f"{KIND}_base_ends": self.base.ends}

    def retire(self, folder: Path, old: RecordRows) -> None:
        """Delete ``old``'s base file where it is not this one's (``VectorRows.retire``'s rule)."""
        if old.base_file and old.base_file != self.base_file:
            (folder / old.base_file).unlink(missing_ok=True)

    @classmethod
    def from_arrays(cls, data: Any, folder: Path) -> RecordRows | None:
        """The rows ``arrays`` wrote into a ``.npz`` (``data``), the base opened from ``folder``; None when the
        base file is missing or does not fit them (then the index is built again)."""
        where, ends = data[f"{KIND}_where"], data[f"{KIND}_base_ends"]
        tail, tail_ends, base_file = data[f"{KIND}_tail"].tobytes(), data[f"{KIND}_tail_ends"], str(data[f"{KIND}_base"][0])
        path = folder / base_file
        if base_file and (not path.exists() or path.stat().st_size != (int(ends[-1]) if len(ends) else 0)) \
                or not base_file and len(ends):
            return None
        if len(where) and where.max() >= len(ends) + len(tail_ends):
            return None
        starts = [0, *tail_ends[:-1].tolist()]
        rows = tuple(tail[start:end] for start, end in zip(starts, tail_ends.tolist()))
        return cls(where, RecordBase(path if base_file else None, ends), base_file, rows)


class _Spill:
    """A base file being written: rows appended as they come, their ends counted."""

    def __init__(self, path: Path):
        self.path, self.ends, self.size = path, array("q"), 0  # not a list: a million ends are 8 MB, not 36
        self.file: BinaryIO | None = None  # opened by the first rows

    @property
    def rows(self) -> int:
        return len(self.ends)

    def write(self, rows: list[bytes]) -> None:
        if not rows:
            return
        if self.file is None:
            self.file = open(self.path, "wb")  # noqa: SIM115
        self.file.write(b"".join(rows))
        for row in rows:
            self.size += len(row)
            self.ends.append(self.size)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def done(self) -> RecordBase:
        """The rows written, opened for reading."""
        self.close()
        return RecordBase(self.path if self.ends else None, np.frombuffer(self.ends, np.int64).copy())
