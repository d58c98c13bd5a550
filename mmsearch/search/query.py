"""A planned search: the record ``SearchEngine.plan`` builds and ranking (``mmsearch.search.ranking``) serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .keywords import KeywordIndex
    from .selection import Kept


@dataclass(frozen=True, eq=False)
class Query:
    """One search, ready to rank."""

    vector: np.ndarray
    text: str  # "" for image-only queries
    k: int
    weights: dict[str, float]  # signal -> weight in the fused score
    where: dict | None = None
    min_score: float = 0.0
    exclude: str | None = None  # an image id never returned ("more like this" leaves the image out)
    caption_vector: np.ndarray | None = None  # the caption space's own query (refined by examples); else ``vector``
    demoted: frozenset[str] = frozenset()  # images marked irrelevant: ranked after every other candidate
    feedback: dict[str, float] = field(default_factory=dict)  # lasting marks' signal per image id (search.feedback)
    shared_captions: bool = True  # captions share ``vector``'s space; if not, no ``caption_vector`` = no caption signal
    lexical: dict[int, float] = field(default_factory=dict)  # the text's BGE-M3 lexical weights (the sparse signal)
    min_relevance: float | None = None  # hits below this calibrated relevance are left out (None: none are)
    collapse: bool = False  # copies of one photo in the hits fold into the best one (``Hit.similar``)
    near: tuple[float, float, float] | None = None  # (lat, lon, km): only hits inside this circle
    excluded: tuple[str, ...] = ()  # words and phrases a hit's texts must not contain (``-word``)
    sort: str = "best"  # "best" (relevance), "date" (newest first) or "date-asc"
    kept: Kept | None = None  # what ``where`` keeps, evaluated in memory (``mmsearch.search.selection``); None: not

    def listed(self, records: str) -> list[str] | None:
        """The ids of the ``records`` ("images", "captions", "frames" or "texts") the filter keeps, where it
        was evaluated in memory; None otherwise (then the store lists them under ``where``)."""
        return None if self.kept is None else getattr(self.kept, records)

    def kept_mask(self, index: KeywordIndex) -> np.ndarray | None:
        """A bool per document of ``index``: whether the filter keeps it, where it was evaluated in memory; None
        otherwise."""
        return None if self.kept is None else self.kept.mask_in(index)

    def allowed(self, ids: list[str]) -> tuple[list[str], dict | None]:
        """``ids``, and the ``where`` a read of them must still apply: those the filter keeps and no
        ``where``, where it was evaluated in memory."""
        return (ids, self.where) if self.kept is None else (self.kept.among(ids), None)

    @property
    def captions_vector(self) -> np.ndarray | None:
        """The vector captions and photo text are compared with, or None when there is none."""
        if self.caption_vector is None and self.shared_captions:
            return self.vector
        return self.caption_vector
