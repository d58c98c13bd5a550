"""``sparse``: BGE-M3's lexical weights, the best caption's or photo text's match with the query's
(``mmsearch.search.lexical``); caption models with a lexical head only. Exact for every candidate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Context, Scored, Signal, Weighing


class SparseSignal(Signal):
    name = "sparse"

    def weight(self, weighing: Weighing) -> float | None:
        return weighing.sparse_weight if weighing.text and weighing.sparse_weight > 0 else None

    def takes_part(self, context: Context) -> bool:
        keywords = context.keywords
        return keywords is not None and keywords.lexical is not None and bool(context.query.lexical) \
            and super().takes_part(context)

    def _every(self, context: Context) -> np.ndarray:
        """Every image's score, in keyword-index order (once per query)."""
        if self.name not in context.memo:
            context.memo[self.name] = context.keywords.lexical.score_array(context.query.lexical)  # type: ignore[union-attr]
        return context.memo[self.name]

    def find(self, context: Context) -> dict[str, float]:
        every, kept = self._every(context), context.query.kept_mask(context.keywords)  # type: ignore[arg-type]
        if kept is not None:  # among the images the filter keeps (``KeywordSignal.find``)
            every = np.where(kept, every, 0.0)
        return context.keywords.lexical.top(every, context.pool)  # type: ignore[union-attr]

    def score(self, context: Context, ids: Sequence[str]) -> Scored | None:
        every = self._every(context)
        if not (every.any() if context.exhaustive else context.found.get(self.name)):
            return None  # no image shares a token with the query
        positions = context.keywords.positions()  # type: ignore[union-attr]
        return {i: float(every[positions[i]]) if i in positions else 0.0 for i in ids}
