"""``keyword``: BM25 over captions, file and folder names (``mmsearch.search.keywords``); text queries only.
An image without a keyword match scores 0 when anything matched."""

from __future__ import annotations

from collections.abc import Sequence

from ..relevance import lexical
from .base import Context, Scored, Signal, Weighing


class KeywordSignal(Signal):
    name = "keyword"

    def weight(self, weighing: Weighing) -> float | None:
        return weighing.keyword_weight if weighing.text else None

    def takes_part(self, context: Context) -> bool:
        return bool(context.query.text) and context.keywords is not None and super().takes_part(context)

    def find(self, context: Context) -> dict[str, float]:
        """The best BM25 matches among the images the filter keeps, where it was evaluated in memory (else
        among all: the filter then drops those outside it, and a folder's matches may be crowded out)."""
        keywords = context.keywords
        return keywords.search(context.query.text, context.pool,  # type: ignore[union-attr]
                               mask=context.query.kept_mask(keywords))  # type: ignore[arg-type]

    def score(self, context: Context, ids: Sequence[str]) -> Scored | None:
        if context.exhaustive:
            found = context.keywords.scores_of(context.query.text, ids)  # type: ignore[union-attr]
        else:
            found = context.found.get(self.name) or {}
        if not found:
            return None
        return {i: found.get(i, 0.0) for i in ids}

    def relevance(self, context: Context, scores: Scored) -> dict[str, float] | None:
        """The IDF-weighted share of the query each image's text holds (``KeywordIndex.coverage``)."""
        shares = context.keywords.coverage(context.query.text, list(scores))  # type: ignore[union-attr]
        return {i: lexical(shares.get(i, 0.0)) for i in scores}
