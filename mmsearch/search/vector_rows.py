"""The images' vectors beside the keyword index, one row per document (``VectorRows``).

A filtered search scores the images its filter keeps exactly. Read from Chroma by id, a vector costs about
70 us (a month's 4,500 photos among 500,000: 0.31 s of a 0.38 s search), and a larger share went to Chroma's
graph search among the listed ids. The keyword index already lists the kept images (``mmsearch.search.selection``);
with their vectors in its rows, the exact scores are one gather and one product.

Rows are only appended, as documents are: a block per addition, sharing the blocks before it, so an index
brought up to date shares its vectors with the one it came from. ``keywords.npz`` holds them as one array
member, stored uncompressed, that a new process maps from the file instead of reading (a million 512-d
float32 vectors are 2 GB; a search touches only the rows it scores). A row whose vector was not given (an
index built from texts, a record read without its vector) is not ``held``: searches over it read Chroma.
"""

from __future__ import annotations

import logging
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MEMBER = "vector_rows.npy"  # the rows' member of ``keywords.npz``
MAX_BLOCKS = 32  # blocks beyond the first are joined into one past this many (catch-ups add one each)
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local header (its name and extra field follow)


class VectorRows:
    """Per document, its image vector (float32, as stored), and whether it is known (``held``)."""

    def __init__(self, blocks: tuple[np.ndarray | int, ...] = (), held: np.ndarray | None = None, dim: int = 0):
        # each block: an (m, dim) float32 array (rows not held are zeros), or m rows none of which is held
        self.blocks = blocks
        self.held = np.zeros(0, dtype=bool) if held is None else held
        self.dim = dim
        sizes = [b if isinstance(b, int) else len(b) for b in blocks]
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.held)

    def appended(self, vectors: Sequence[np.ndarray | None]) -> VectorRows:
        """These rows with one more per vector (None: a row whose vector is not known); this one is left as it
        was. A vector of another length than the rows' is not held."""
        dim = self.dim or next((len(v) for v in vectors if v is not None), 0)
        held = np.asarray([v is not None and len(v) == dim for v in vectors], dtype=bool)
        block: np.ndarray | int = len(vectors)
        if held.any():
            block = np.zeros((len(vectors), dim), dtype=np.float32)
            block[held] = np.stack([np.asarray(v, dtype=np.float32) for v, h in zip(vectors, held) if h])
        rows = VectorRows((*self.blocks, block), np.concatenate([self.held, held]), dim)
        return rows._joined() if len(rows.blocks) > MAX_BLOCKS else rows

    def _joined(self) -> VectorRows:
        """The same rows with every block after the first joined into one (in memory)."""
        first, rest = self.blocks[0], np.arange(self.starts[1], len(self))
        return VectorRows((first, self._gathered(rest)), self.held, self.dim)

    def of(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of these rows, (len(rows), dim) float32 (zeros where not ``held``)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        at = np.searchsorted(self.starts, rows, side="right") - 1
        for number in np.unique(at).tolist():
            block = self.blocks[number]
            if isinstance(block, int):
                continue
            inside = at == number
            out[inside] = block[rows[inside] - self.starts[number]]
        return out

    def _gathered(self, rows: np.ndarray) -> np.ndarray | int:
        """``rows`` as one block."""
        return self.of(rows) if self.held[rows].any() else len(rows)

    def packed(self, keep: np.ndarray) -> VectorRows:
        """Only the rows ``keep`` (ascending), in one block."""
        return VectorRows((self._gathered(keep),), self.held[keep], self.dim) if len(keep) else \
            VectorRows((), np.zeros(0, bool), self.dim)

    def nearest(self, ids: Sequence[str], rows: np.ndarray, vector: np.ndarray, n: int) -> dict[str, float] | None:
        """The ``n`` of these documents (``ids``: theirs) nearest ``vector`` by cosine, best first, ties in their
        order; None when any of them is not ``held`` (then the store is asked)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.held[rows].all():
            return None
        matrix = self.of(rows)
        vector = np.asarray(vector, dtype=np.float32)
        similarity = matrix @ vector / np.maximum(np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector), 1e-12)
        best = np.argsort(-similarity, kind="stable")[:n]
        return {ids[i]: float(s) for i, s in zip(best.tolist(), similarity[best].tolist())}

    # -- the keyword file ----------------------------------------------------------------------------

    def write_into(self, path: str | Path) -> None:
        """Add the rows to the zip file ``path`` (an ``.npz`` being written) as the member ``MEMBER``, stored
        uncompressed, a block at a time (never all of them in memory at once), so that ``mapped`` can map it."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (len(self), self.dim)}
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED, allowZip64=True) as archive, \
                archive.open(MEMBER, "w", force_zip64=True) as out:
            np.lib.format.write_array_header_2_0(out, header)
            for block in self.blocks:
                if isinstance(block, int):
                    out.write(bytes(4 * block * self.dim))
                else:
                    for start in range(0, len(block), 65536):
                        out.write(np.ascontiguousarray(block[start:start + 65536], dtype=np.float32).tobytes())

    @classmethod
    def mapped(cls, path: str | Path, held: np.ndarray) -> VectorRows | None:
        """The rows ``write_into`` added to ``path``, mapped from the file (read-only), with their ``held``;
        None when the member is missing, compressed or of another size."""
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(MEMBER)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as file:
            file.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(file.read(_LOCAL_HEADER.size))
            if fields[0] != b"PK\x03\x04":
                return None
            file.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
            version = np.lib.format.read_magic(file)
            if version not in ((1, 0), (2, 0)):
                return None
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(file)
            offset = file.tell()
        if fortran or dtype != np.float32 or len(shape) != 2 or shape[0] != len(held):
            return None
        if not shape[0] or not shape[1]:
            return cls((shape[0],) if shape[0] else (), held, shape[1])
        return cls((np.memmap(path, np.float32, "r", offset, shape),), held, shape[1])
