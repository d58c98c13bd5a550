"""A planned search: the record ``SearchEngine.plan`` builds and ranking (``mmsearch.search.ranking``) serves."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Ahead:
    """The finds of a text query that need only its text, started before its vector is encoded
    (``ranking.find_ahead``): ranking takes them instead of starting them again."""

    keywords: Any  # the ``KeywordIndex`` they ran on: ranking takes them only if it ranks with the same
    pool: int  # candidates each find was asked for
    found: Mapping[str, Future]  # signal name -> its ``find``
    named: Future  # the images whose file name is the text (``KeywordIndex.exact``)


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
    ahead: Ahead | None = None  # finds started while the text was encoded

    @property
    def captions_vector(self) -> np.ndarray | None:
        """The vector captions and photo text are compared with, or None when there is none."""
        if self.caption_vector is None and self.shared_captions:
            return self.vector
        return self.caption_vector
