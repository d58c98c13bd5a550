"""Filters evaluated in memory: which images a ``where`` filter keeps, read from the keyword index's columns.

Chroma evaluates a filter by materialising every record that passes, and a range on a number by scanning
every record: at a million photos a month's date range cost 8-10 s, a year's folder 1.3 s, and a search paid
it once per filtered read (images, captions, text in photos, and the vectors of the keyword finds). The
keyword index already holds each image's path, camera and places, and its dates, positions and counts of
caption and frame records (``KeywordIndex.numbers``); the clauses ``build_where`` makes are evaluated there
once per search, in numpy, and the reads are handed the ids (``Kept``). A clause of any other shape gives
None: Chroma evaluates that filter, as before.

The keyword index follows the store's numbered writes, checked at most every ``KEYWORD_CHECK`` seconds
(``mmsearch.session``): a filtered search sees what its keyword search sees.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ids import caption_id, frame_id
from ..paths import folders_of
from ..store import CaptionMatch

if TYPE_CHECKING:
    from .keywords import KeywordIndex

RANGES = {"$gte": np.greater_equal, "$gt": np.greater, "$lte": np.less_equal, "$lt": np.less}
NUMBERED = ("date", "lat", "lon")  # the fields a range compares, each a column of ``KeywordIndex.numbers``
EXACT_ROWS = 200_000  # ``Kept.nearest``: at most this many kept images are scored from the keyword index's vectors


@dataclass(frozen=True, eq=False)
class Kept:
    """The images a filter keeps, evaluated in the keyword index: their documents there (``rows``, ascending).

    The ids of their records in each collection (``images``, their ``captions``, their videos' ``frames`` and
    the ``texts`` read in them) are listed only when a read of Chroma is handed them: a search scored from the
    keyword index (``nearest``, ``caption_nearest``; the keyword and lexical finds by ``mask_in``) lists none:
    listing a year's 50,000 photos and their 15,000 captions took ~26 ms, and the keyword and lexical finds
    then looked each id up again."""

    index: KeywordIndex
    rows: np.ndarray

    @cached_property
    def images(self) -> list[str]:
        """The kept images' ids, in document order."""
        return self.index.ids.at(self.rows)

    @cached_property
    def captions(self) -> list[str]:
        """The ids of their caption records."""
        owners, numbers = self._caption_owners()
        return [caption_id(i, n) for i, n in zip(self.index.ids.at(self.rows[owners]), numbers.tolist())]

    @cached_property
    def frames(self) -> list[str]:
        """The ids of their videos' frame records."""
        counts = self.index.numbers["frames"][self.rows]
        videos = np.flatnonzero(counts > 0)
        return [frame_id(i, n) for i, c in zip(self.index.ids.at(self.rows[videos]), counts[videos].tolist())
                for n in range(int(c))]

    @cached_property
    def texts(self) -> list[str]:
        """The ids of the records of the text read in them (one per photo with text)."""
        ocr = self.index.ocr
        return [i for i in self.images if i in ocr] if ocr else []

    @cached_property
    def mask(self) -> np.ndarray:
        """A bool per document of ``index``: whether the filter keeps it."""
        return _mask(len(self.index.ids), self.rows)

    def mask_in(self, index: KeywordIndex) -> np.ndarray:
        """``mask`` for ``index``: this one's, or (an index caught up since) made from the ids."""
        return self.mask if index is self.index else index.mask_of(self.images)

    def nearest(self, vector: np.ndarray, n: int, most: float | None = None,
                going_on: Callable[[], bool] | None = None) -> dict[str, float] | None:
        """The ``n`` kept images nearest ``vector`` (image id -> cosine, best first), scored exactly from the
        keyword index's vectors (``KeywordIndex.vectors``); None where it lacks one of them, or they are more
        than ``most`` (None: ``EXACT_ROWS``), or ``going_on`` said to stop (``VectorRows.nearest``; then the
        store is asked)."""
        if len(self.rows) > (EXACT_ROWS if most is None else most):
            return None
        found = self.index.vectors.nearest(self.rows, vector, n, going_on)
        if found is None:
            return None
        best, similarity = found
        return dict(zip(self.index.ids.at(self.rows[best]), similarity.tolist()))

    def caption_nearest(self, vector: np.ndarray, n: int, most: float = EXACT_ROWS,
                        going_on: Callable[[], bool] | None = None) -> list[CaptionMatch] | None:
        """The ``n`` kept captions nearest ``vector``, best first, scored exactly from the keyword index's caption
        vectors (``KeywordIndex.caption_vectors``); None as ``nearest``, with ``most`` in place of ``EXACT_ROWS``."""
        rows = self.index.caption_rows(self.rows)
        if len(rows) > most:
            return None
        found = self.index.caption_vectors.nearest(rows, vector, n, going_on)
        if found is None:
            return None
        best, similarity = found
        owners, numbers = self._caption_owners()
        images = self.index.ids.at(self.rows[owners[best]])
        return [CaptionMatch(i, c, s) for i, c, s in zip(images, numbers[best].tolist(), similarity.tolist())]

    def _caption_owners(self) -> tuple[np.ndarray, np.ndarray]:
        """Per kept caption, in ``caption_rows`` order: its image's position in ``rows``, and its number."""
        counts = self.index.numbers["captions"][self.rows].astype(np.int64)
        owners = np.repeat(np.arange(len(self.rows)), counts)
        return owners, np.arange(len(owners)) - np.repeat(np.cumsum(counts) - counts, counts)

    def captions_of(self, ids: Iterable[str]) -> dict[str, list[tuple[int, np.ndarray]]] | None:
        """(caption number, vector) of every caption of those of ``ids`` the filter keeps, from the keyword index;
        None where it lacks one."""
        return self.index.captions_of(self.among(ids))

    def vectors_of(self, ids: Iterable[str]) -> dict[str, np.ndarray] | None:
        """The vectors of those of ``ids`` the filter keeps, from the keyword index; None where it lacks one."""
        return self.index.vectors_of(self.among(ids))

    def among(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` the filter keeps, in their order."""
        positions, mask = self.index.positions(), self.mask
        return [i for i in ids if (d := positions.get(i)) is not None and mask[d]]


def select(index: KeywordIndex, where: dict | None) -> Kept | None:
    """What ``where`` keeps among the images ``index`` holds; None when it has a clause this module does not
    evaluate (or there is no filter)."""
    rows = kept_rows(index, where)
    return None if rows is None else Kept(index, rows)


def kept_rows(index: KeywordIndex, where: dict | None) -> np.ndarray | None:
    """The live documents ``where`` keeps, in order; None as ``select``."""
    if not where:
        return None
    mask = _evaluated(index, where)
    return None if mask is None else np.flatnonzero(mask & index.alive)


def _evaluated(index: KeywordIndex, where: dict) -> np.ndarray | None:
    """A bool per document: whether the clause keeps it (switched-off documents included)."""
    if not isinstance(where, dict) or len(where) != 1:
        return None
    (field, value), = where.items()
    if field in ("$and", "$or"):
        parts = [_evaluated(index, part) for part in value] if isinstance(value, list) and value else [None]
        if any(part is None for part in parts):
            return None
        return np.logical_and.reduce(parts) if field == "$and" else np.logical_or.reduce(parts)
    operator, operand = next(iter(value.items())) if isinstance(value, dict) and len(value) == 1 else ("$eq", value)
    if field in NUMBERED and operator in RANGES and _is_number(operand):
        return RANGES[operator](index.numbers[field], float(operand))  # NaN (no such field) passes nothing
    if isinstance(operand, str) and operand:
        return _text_clause(index, field, operator, operand)
    return None


def _text_clause(index: KeywordIndex, field: str, operator: str, operand: str) -> np.ndarray | None:
    if field == "folders" and operator == "$contains":
        return in_folder(index, operand)
    if field == "place_keys" and operator == "$contains":
        return _mask(len(index.ids), index.doc_places.with_field(operand))  # its place keys, tab-separated
    if field == "camera" and operator == "$eq":
        if not index.camera_counts.get(operand):  # the facet counts every live image's camera: none has it
            return np.zeros(len(index.ids), dtype=bool)
        return _mask(len(index.ids), index.doc_cameras.equal_to_any([operand]))
    return None


def in_folder(index: KeywordIndex, folder: str) -> np.ndarray:
    """Whether each document's ``folders`` (``mmsearch.paths.folders_of`` of its path) hold ``folder``.

    A folder the facet counts for every image (a library's one root) holds them all, one it does not count
    none. Otherwise, a path
    whose folders are its text up to each separator (``plain``: nearly all) is inside ``folder`` when it
    starts with ``folder`` and a separator, found by comparing the packed paths' starts in numpy; the others
    (``/a//b.jpg``, ``//host/x.jpg``) are each split as ``folders_of`` splits them."""
    count = index.folder_counts.get(folder)
    if count == len(index):
        return index.alive.copy()
    if not count:  # the facet counts every live image's folders: none is inside this one
        return np.zeros(len(index.ids), dtype=bool)
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    mask = _mask(len(index.ids), index.paths.starting_with(prefix))
    if folder.endswith(os.sep):  # a root: not the paths of a longer one ("//x" is not in "/")
        mask[index.paths.starting_with(prefix + os.sep)] = False
    plain = index.numbers["plain"]
    mask &= plain
    odd = np.flatnonzero(~plain)
    mask[[d for d, path in zip(odd.tolist(), index.paths.at(odd)) if folder in folders_of(path)]] = True
    return mask


def date_order(index: KeywordIndex, rows: np.ndarray, newest: bool, chunk: int) -> Iterator[list[int]]:
    """These documents in the order ``ranking.by_date`` gives their records (date, newest first or oldest
    first, then path; no date counts as 0), about ``chunk`` at a time: sorted by date in numpy, and only
    each chunk's documents sharing a date put in path order."""
    dates = np.nan_to_num(index.numbers["date"][rows], nan=0.0).astype(np.int64)
    keys = -dates if newest else dates
    order = np.argsort(keys, kind="stable")
    rows, keys = rows[order], keys[order]
    start = 0
    while start < len(rows):
        end = int(np.searchsorted(keys, keys[min(start + chunk, len(rows)) - 1], side="right"))  # ties too
        part = rows[start:end].tolist()
        yield [d for _, _, d in sorted(zip(keys[start:end].tolist(), index.paths.at(part), part))]
        start = end


def _mask(size: int, rows: Any) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[np.asarray(rows, dtype=np.int64)] = True
    return mask


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
