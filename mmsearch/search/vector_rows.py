"""Vectors beside the keyword index (``VectorRows``): one row per image, and one per caption record.

A filtered search scores the images and captions its filter keeps exactly. Read from Chroma by id, a vector
costs about 65 us (a month's 4,500 photos among 500,000: 0.31 s of a 0.38 s search), and a larger share went to
Chroma's graph search among the listed ids. The keyword index already lists the kept images
(``mmsearch.search.selection``); with their vectors in its rows, the exact scores are one gather and one product.

Where the rows are:
- **the base** (``Base``): a file of raw float32 rows beside ``keywords.npz``, written once and never changed,
  read by every process that reads the index (a million 512-d vectors are 2 GB; a search touches only the rows
  it scores: rows in few runs read from the file, many scattered ones through its mapping). A build from every
  record (or from a first index run's writes) writes its rows there as they come (``spilling``), so it never
  holds them all;
- **the tail**: the rows added since the base was written, in memory and in ``keywords.npz`` (``TAIL_MAX`` at
  most when saved: past that the live rows are written into a new base, and the old one is deleted).

Each document points at its row (``where``), so packing switched-off documents away and appending copy no
vector. A row whose vector was not given (an index built from texts, a record read without its vector) is not
``held``: searches over it read Chroma.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..config import VECTOR_BASE
from ..store.collections import best_of, cosines

logger = logging.getLogger(__name__)

# An appended block joins the last one when both are smaller than this many rows: catch-ups add a few rows every
# few seconds, and a gather loops over the blocks it touches; a build's chunks (``keywords.CHUNK``) stay apart.
JOIN_BELOW = 8192
TAIL_MAX = 20_000  # rows saved in ``keywords.npz`` past the base, at most (40 MB of 512-d): past it, a new base
WRITE_ROWS = 65_536  # rows gathered at a time while a base is written
READ_RUNS = 1024  # a gather of base rows in at most this many runs of consecutive rows reads them from the file (``Base``)
SCORE_ROWS = 8192  # rows gathered at a time while scored (``nearest``): 16 MB of 512-d, where 200,000 at once took 0.4 GB
ORPHAN_AGE = 3600.0  # seconds after which a base file no keyword file names is deleted (``sweep``)


class Spill:
    """A base file being written by a build: rows appended as they come, mapped once it is done."""

    def __init__(self, path: Path):
        self.path, self.rows = path, 0
        self.file: BinaryIO | None = None  # opened by the first rows, closed by ``done``

    def write(self, rows: np.ndarray) -> None:
        if self.file is None:
            self.file = open(self.path, "wb")  # noqa: SIM115
        self.file.write(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
        self.rows += len(rows)

    def done(self, dim: int) -> np.ndarray:
        """The rows written, mapped."""
        if self.file is not None:
            self.file.close()
            self.file = None
        return Base(self.path, self.rows, dim)


class Base:
    """A base file's rows, float32 ``(rows, dim)``, never changed. A gather whose rows form at most ``READ_RUNS``
    runs of consecutive rows reads them from the file (``os.preadv``, one call per run) and maps nothing; one of
    more (many scattered rows: a filter that keeps every tenth photo) goes through the file's mapping, which
    stays; a copy of every row (``VectorRows.saving``) reads them all.

    Mapped, a few scattered rows count whole large folios of the file in the process: at 789,000 photos, 10,000
    random rows of the 1.6 GB image base left 1.5 GB of it in the RSS. Giving those pages back after each gather
    (``madvise(MADV_DONTNEED)``) cost a large filter more than its search did: 78,900 rows scattered through a
    500,000-row base took 26 ms mapped and warm, against 79 ms mapped again plus 36 ms for the madvise, and 110 ms
    read a row at a time. Read, 100 scattered rows take 0.1 ms and 512 take 0.8 ms, and 79,000 rows in 316 runs
    23 ms (24 ms mapped and warm): a process serving unfiltered searches, or filters whose photos sit together
    (a folder, the days of a trip: an index run writes a folder's photos one after another), counts none of the
    bases. Copied through the mapping, a million photos' bases stayed mapped in the process that wrote the new
    ones: +1.8 GiB of RSS, and 9.0 s against 5.1 s read."""

    def __init__(self, path: Path | None = None, rows: int = 0, dim: int = 0):
        self.path, self.shape = path, (rows, dim)
        self.fd = -1  # open while this is alive: the file may be deleted (``retire``), its rows stay readable
        if path is None or not rows or not dim:  # none (a file of no bytes cannot be mapped)
            self.mapping: np.ndarray = np.zeros((rows, dim), np.float32)
            return
        self.mapping = np.memmap(path, np.float32, "r", shape=(rows, dim))
        if hasattr(os, "preadv"):  # not on Windows: there every gather goes through the mapping
            self.fd = os.open(path, os.O_RDONLY)
            weakref.finalize(self, os.close, self.fd)

    def __len__(self) -> int:
        return self.shape[0]

    def gather(self, rows: np.ndarray, mapped: bool | None = None) -> np.ndarray:
        """These rows (each ``0 <= row < len(self)``): through the mapping where ``mapped`` (None: where they
        form more than ``READ_RUNS`` runs of consecutive rows), else read from the file."""
        if self.fd < 0 or not len(rows) or mapped:
            return np.asarray(self.mapping[rows])
        starts = np.flatnonzero(np.diff(rows) != 1) + 1
        if mapped is None and len(starts) >= READ_RUNS:
            return np.asarray(self.mapping[rows])
        out = np.empty((len(rows), self.shape[1]), np.float32)
        size, view = 4 * self.shape[1], memoryview(out).cast("B")
        cuts = [0, *starts.tolist(), len(rows)]
        got = sum(os.preadv(self.fd, [view[start * size:end * size]], int(rows[start]) * size)
                  for start, end in zip(cuts, cuts[1:]))
        if got != out.nbytes:  # a base file is never changed: only a damaged disk reads short
            raise OSError(f"{self.path}: read {got} of {out.nbytes} bytes")
        return out


class VectorRows:
    """Per document, its image vector (float32, as stored), and whether it is known (``held``)."""

    def __init__(self, where: np.ndarray | None = None, base: Base | None = None, base_file: str = "",
                 tail: tuple[np.ndarray, ...] = (), dim: int = 0, spill: Spill | None = None, kind: str = "image"):
        self.where = np.zeros(0, np.int64) if where is None else where  # per document: its row, -1 if none
        self.dim = dim
        self.base = Base(None, 0, dim) if base is None else base  # rows 0 .. len(base) - 1
        self.base_file = base_file  # its file's name, in the folder of ``keywords.npz`` ("": none yet)
        self.tail = tail  # the rows after the base, in blocks
        self.tail_starts = len(self.base) + np.concatenate([[0], np.cumsum([len(b) for b in tail])]).astype(np.int64)
        self.spill = spill  # a build's base being written (``spilling``): rows go there until ``finished``
        self.kind = kind  # what the rows are ("image", "caption"): the names of its arrays and base files

    @classmethod
    def spilling(cls, keywords: Path, kind: str = "image") -> VectorRows:
        """Empty rows for a build that writes its rows into a new base file beside the keyword file ``keywords``,
        as they are appended; ``finished`` maps it."""
        name = VECTOR_BASE.format(stem=keywords.stem, kind=kind, token=uuid.uuid4().hex[:12])
        return cls(base_file=name, spill=Spill(keywords.parent / name), kind=kind)

    def finished(self) -> VectorRows:
        """A build's rows, its base file mapped (these rows, where not ``spilling``)."""
        if self.spill is None:
            return self
        base = self.spill.done(self.dim)
        return VectorRows(self.where, base, self.base_file if len(base) else "", (), self.dim, kind=self.kind)

    def __len__(self) -> int:
        return len(self.where)

    @property
    def held(self) -> np.ndarray:
        """A bool per document: whether its vector is known."""
        return self.where >= 0

    @property
    def tail_rows(self) -> int:
        return int(self.tail_starts[-1] - len(self.base))

    def holds(self, docs: np.ndarray) -> bool:
        """Whether the vectors of all these documents are known."""
        return bool(self.held_of(docs).all())

    def held_of(self, docs: np.ndarray) -> np.ndarray:
        """A bool per one of these documents: whether its vector is known."""
        return self.where[docs] >= 0 if len(self.where) else np.zeros(len(docs), dtype=bool)

    def appended(self, vectors: Sequence[np.ndarray | None]) -> VectorRows:
        """These rows with one more document per vector (None: one whose vector is not known); this one is left
        as it was. A vector of another length than the rows' is not held."""
        dim = self.dim or next((len(v) for v in vectors if v is not None), 0)
        held = np.asarray([v is not None and len(v) == dim for v in vectors], dtype=bool)
        where = np.full(len(vectors), -1, np.int64)
        if self.spill is not None:
            where[held] = self.spill.rows + np.arange(int(held.sum()))
            if held.any():
                self.spill.write(np.stack([v for v, h in zip(vectors, held) if h]))
            return VectorRows(np.concatenate([self.where, where]), None, self.base_file, (), dim, self.spill, self.kind)
        where[held] = self.tail_starts[-1] + np.arange(int(held.sum()))
        tail = self.tail
        if held.any():
            tail = (*tail, np.stack([np.asarray(v, dtype=np.float32) for v, h in zip(vectors, held) if h]))
            if len(tail) > 1 and max(len(tail[-1]), len(tail[-2])) < JOIN_BELOW:
                tail = (*tail[:-2], np.concatenate(tail[-2:]))
        base = self.base if self.dim else Base(None, 0, dim)
        return VectorRows(np.concatenate([self.where, where]), base, self.base_file, tail, dim, kind=self.kind)

    def packed(self, keep: np.ndarray) -> VectorRows:
        """Only the documents ``keep`` (ascending); their rows stay where they are."""
        return VectorRows(self.where[keep], self.base, self.base_file, self.tail, self.dim, kind=self.kind)

    def of(self, docs: np.ndarray, mapped: bool | None = None) -> np.ndarray:
        """The vectors of these documents, (len(docs), dim) float32 (zeros where not ``held``); ``mapped`` as
        ``Base.gather``."""
        return self._rows(self.where[np.asarray(docs, dtype=np.int64)], mapped)

    def _rows(self, rows: np.ndarray, mapped: bool | None = None) -> np.ndarray:
        if len(rows) and rows.min() >= 0 and rows.max() < len(self.base):  # all in the base: one gather
            return self.base.gather(rows, mapped)
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        in_base = (rows >= 0) & (rows < len(self.base))
        if in_base.any():
            out[in_base] = self.base.gather(rows[in_base], mapped)
        in_tail = rows >= len(self.base)
        if in_tail.any():
            at = np.searchsorted(self.tail_starts, rows, side="right") - 1
            for number in np.unique(at[in_tail]).tolist():
                inside = in_tail & (at == number)
                out[inside] = self.tail[number][rows[inside] - self.tail_starts[number]]
        return out

    def nearest(self, docs: np.ndarray, vector: np.ndarray, n: int, going_on: Callable[[], bool] | None = None
                ) -> tuple[np.ndarray, np.ndarray] | None:
        """The positions in ``docs`` of the ``n`` documents nearest ``vector`` by cosine, best first (ties in their
        order), and those cosines; None when any of them is not ``held`` (then the store is asked), or, with
        ``going_on``, as soon as it says to stop (asked before each ``SCORE_ROWS`` rows are read)."""
        docs = np.asarray(docs, dtype=np.int64)
        if not len(docs):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if not self.holds(docs) or self.dim != len(vector):
            return None
        parts = []
        for start in range(0, len(docs), SCORE_ROWS):
            if going_on is not None and not going_on():
                return None
            parts.append(cosines(self._rows(self.where[docs[start:start + SCORE_ROWS]]), vector))
        return best_of(np.concatenate(parts), n)

    # -- on disk -------------------------------------------------------------------------------------

    def saving(self, folder: Path, stem: str) -> VectorRows:
        """These rows as ``keywords.npz`` in ``folder`` will hold them: the same, or, where the tail is past
        ``TAIL_MAX``, the base's file is gone, or most of the base's rows are no document's any more, every held
        row written into a new base file (mapped), whose name starts with ``stem``. ``arrays`` gives what the
        ``.npz`` holds; ``retire`` deletes the old base."""
        held = int(np.count_nonzero(self.held))
        if self.tail_rows <= TAIL_MAX and len(self.base) <= 2 * max(held, TAIL_MAX) \
                and (not self.base_file or (folder / self.base_file).exists()):
            return self
        name = VECTOR_BASE.format(stem=stem, kind=self.kind, token=uuid.uuid4().hex[:12])
        docs = np.flatnonzero(self.held)
        partial = folder / f".{name}.{os.getpid()}.part"
        try:
            with open(partial, "wb") as out:  # read and written, not mapped: no page counts in this process
                for start in range(0, len(docs), WRITE_ROWS):
                    out.write(self.of(docs[start:start + WRITE_ROWS], mapped=False).tobytes())
            os.replace(partial, folder / name)
        except OSError:  # a full disk: nothing half written is left
            partial.unlink(missing_ok=True)
            raise
        logger.debug("%s vectors: %d rows written into %s", self.kind, len(docs), name)
        sweep(folder, stem, self.kind, name)
        where = np.full(len(self), -1, np.int64)
        where[docs] = np.arange(len(docs))
        return VectorRows(where, Base(folder / name, len(docs), self.dim), name, (), self.dim, kind=self.kind)

    def arrays(self) -> dict[str, np.ndarray]:
        """What ``keywords.npz`` holds of the rows: where each document's is, the tail, the base's name."""
        tail = np.concatenate(self.tail) if self.tail else np.zeros((0, self.dim), np.float32)
        kind = self.kind
        return {f"{kind}_where": self.where, f"{kind}_tail": tail,
                f"{kind}_base": np.asarray([self.base_file, str(len(self.base))]), f"{kind}_dim": np.int64(self.dim)}

    def retire(self, folder: Path, old: VectorRows) -> None:
        """Delete ``old``'s base file where it is not this one's (a process that maps it keeps its pages; on its
        next save it finds the file gone and writes a base of its own). Only a base this process replaced is
        deleted at once: two processes deleting each other's would each write a new one on every save."""
        if old.base_file and old.base_file != self.base_file:
            (folder / old.base_file).unlink(missing_ok=True)

    @classmethod
    def from_arrays(cls, data: object, folder: Path, kind: str = "image") -> VectorRows | None:
        """The rows ``arrays`` wrote into a ``.npz`` (``data``), the base mapped from ``folder``; None when the
        base file is missing or does not fit them (then the index is built again)."""
        where, tail = data[f"{kind}_where"], data[f"{kind}_tail"]  # type: ignore[index]
        base_file, count = (str(v) for v in data[f"{kind}_base"])  # type: ignore[index]
        dim, path = int(data[f"{kind}_dim"]), folder / base_file  # type: ignore[index]
        if base_file and (not path.exists() or path.stat().st_size != 4 * int(count) * dim):
            return None
        base = Base(path if base_file else None, int(count), dim)
        if tail.dtype != np.float32 or tail.ndim != 2 or tail.shape[1] != dim \
                or (len(where) and where.max() >= len(base) + len(tail)):
            return None
        return cls(where, base, base_file, (tail,) if len(tail) else (), dim, kind=kind)


def sweep(folder: Path, stem: str, kind: str, written: str, pattern: str = VECTOR_BASE) -> None:
    """Delete the base files (named by ``pattern``) of ``<stem>.npz``'s rows of this ``kind`` left behind (the
    file deleted and built again, a process that ended after writing one): those older than ``ORPHAN_AGE`` that
    it does not name."""
    try:
        with np.load(folder / f"{stem}.npz") as data:
            named = str(data[f"{kind}_base"][0])
    except Exception:  # none yet, or damaged: it names no base
        named = ""
    old = time.time() - ORPHAN_AGE
    for path in folder.glob(pattern.format(stem=stem, kind=kind, token="*")):
        if path.name not in (written, named) and path.stat().st_mtime < old:
            path.unlink(missing_ok=True)
