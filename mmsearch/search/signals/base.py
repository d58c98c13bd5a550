"""The signal protocol: what every signal of a search is (``mmsearch.search.signals`` registers them).

A signal has a ``name`` (its key in ``Hit.scores`` and in the fusion weights), a ``weight`` for a query,
a way to ``find`` candidates, a way to ``score`` candidates exactly, and what a score says about
``relevance`` on one scale for every query (``mmsearch.search.relevance``). Ranking (``mmsearch.search.ranking``)
runs ``find`` then ``score`` for each query; ``mmsearch eval`` runs ``score`` alone over every image of its
corpus (``Context.exhaustive``), so a signal's formula is written once, in its own module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..relevance import Background

if TYPE_CHECKING:
    from ...store.client import OcrRecord, Store
    from ..keywords import KeywordIndex
    from ..ocr_matcher import OcrMatcher
    from ..query import Query

Scored = dict[str, float | None]  # image id -> score, None where the image lacks the signal


@dataclass(frozen=True)
class Weighing:
    """What a signal's weight depends on: the configured weights and what this query and index have."""

    text: bool  # a text query (image-only queries rank by pixels alone)
    caption_weight: float = 0.5
    keyword_weight: float = 0.0
    feedback_weight: float = 0.0
    ocr_weight: float = 0.0  # 0 when the index has no text read in photos
    sparse_weight: float = 0.0  # 0 when the caption model gives no lexical weights


class Reads:
    """Store reads a query's signals share, kept by id: one query in ranking, every query of a run in eval."""

    def __init__(self, store: Store):
        self.store = store
        self._captions: dict[str, list[tuple[int, np.ndarray]]] = {}
        self._ocr: dict[str, OcrRecord | None] = {}

    def captions_of(self, ids: Sequence[str]) -> dict[str, list[tuple[int, np.ndarray]]]:
        """(caption number, vector) of every caption of these images (images without captions are absent)."""
        from ...ids import split_caption_id

        missing = [i for i in dict.fromkeys(ids) if i not in self._captions]
        for i in missing:
            self._captions[i] = []
        for cid, vector in self.store.caption_vectors_of(missing).items():
            image, index = split_caption_id(cid)
            self._captions.setdefault(image, []).append((index, vector))
        return {i: self._captions[i] for i in ids if self._captions.get(i)}

    def ocr_of(self, ids: Sequence[str]) -> dict[str, OcrRecord]:
        """Text read in those photos that have text, and its vector."""
        missing = [i for i in dict.fromkeys(ids) if i not in self._ocr]
        got = self.store.ocr_records(missing)
        self._ocr.update({i: got.get(i) for i in missing})
        return {i: record for i in ids if (record := self._ocr.get(i)) is not None}


@dataclass
class Context:
    """What the signals of one query read: the store, the planned query, the sources the engine keeps, and
    what each signal found. ``exhaustive`` (eval) means no ``find`` ran: ``score`` scores every id exactly."""

    store: Store
    query: Query
    pool: int
    use_image: bool
    keywords: KeywordIndex | None = None
    ocr: OcrMatcher | None = None
    reads: Reads | None = None
    background: Background = field(default_factory=Background.empty)  # the library sample relevance is measured on
    exhaustive: bool = False
    found: dict[str, Any] = field(default_factory=dict)  # signal name -> what its ``find`` returned
    # image vectors read for the candidates the image signal did not find, and each candidate video's best frame
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)  # the ids scored: they exist and pass the query's filter
    best_caption: dict[str, int] = field(default_factory=dict)  # image id -> number of its best caption
    moments: dict[str, float] = field(default_factory=dict)  # video id -> time (s) of its best frame; its vector is that frame's
    memo: dict[str, Any] = field(default_factory=dict)  # per-query work a signal reuses between find and score

    def __post_init__(self) -> None:
        if self.reads is None:
            self.reads = Reads(self.store)


class Signal:
    """One signal of a search. Subclasses set ``name`` and override what they use.

    ``additive`` signals are on a calibrated 0..1 scale and are added to the fused score of the others
    instead of being averaged in (``mmsearch.search.fusion``).
    """

    name: ClassVar[str] = ""
    additive: ClassVar[bool] = False

    def weight(self, weighing: Weighing) -> float | None:
        """This signal's weight in a query's fused score; None leaves it out of the weights."""
        return None

    def takes_part(self, context: Context) -> bool:
        """Whether this signal is scored for this query (default: when it has a weight above 0)."""
        return context.query.weights.get(self.name, 0.0) > 0

    def find(self, context: Context) -> Iterable[str]:
        """Candidate image ids (a mapping may carry their scores for ``score``). Runs on a query thread."""
        return ()

    def score(self, context: Context, ids: Sequence[str]) -> Scored | None:
        """Exact scores of ``ids`` (each with its image vector in ``context.vectors``, unless the image signal found
        it with its score); None when the signal has nothing to say for this query (then it is left out of the
        hits' scores)."""
        raise NotImplementedError

    def relevance(self, context: Context, scores: Scored) -> dict[str, float] | None:
        """Each scored image's calibrated relevance from this signal alone (0..1, the same meaning for every
        query: ``mmsearch.search.relevance``); None when this signal says nothing about relevance."""
        return None


def rounded(value: Any) -> float | None:
    """A score as stored in ``Hit.scores``: six decimals, or None."""
    return None if value is None else round(float(value), 6)
