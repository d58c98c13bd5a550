"""``ocr``: the text read in photos. The share of the query found in it, or ``meaning`` of
its cosine to the query (half of it), if higher. Additive (``mmsearch.search.fusion``); photos without text
get no score; indexes with OCR only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...media.ocr import word_chars
from ..relevance import lexical
from .base import Context, Scored, Signal, Weighing

# The text's meaning (its embedding) counts only from this many letters/digits/CJK characters on: a
# cosine between a query and "3G" says little; the lexical match still counts.
MIN_SEMANTIC_CHARS = 3
# The embedding's cosine counts at half weight next to the lexical share (1.0 = every query term is in the
# photo): cosines of short fragments run high for unrelated text (all-MiniLM-L6-v2: "help" vs "Ctrl" 0.40,
# vs "@" 0.39; "way out" vs "EXIT" 0.40), and at full weight a stray "Ctrl" outranked the help icons that
# the file-name keyword signal found.
MEANING_SHARE = 0.5


def meaning(text: str, cosine: Any) -> Any:
    """The semantic half of the ``ocr`` signal from the cosine(s) between the query and the photo's text:
    ``MEANING_SHARE`` of it, or 0 for texts under ``MIN_SEMANTIC_CHARS`` letters."""
    return MEANING_SHARE * cosine if word_chars(text) >= MIN_SEMANTIC_CHARS else 0.0 * cosine


class OcrSignal(Signal):
    name = "ocr"
    additive = True

    def weight(self, weighing: Weighing) -> float | None:
        return weighing.ocr_weight if weighing.text and weighing.ocr_weight > 0 else None

    def takes_part(self, context: Context) -> bool:
        return bool(context.query.text) and context.query.captions_vector is not None and super().takes_part(context)

    def _shares(self, context: Context) -> dict[str, float]:
        """The share of the query found in each photo's text (lexical matching), once per query."""
        if self.name not in context.memo:
            context.memo[self.name] = context.ocr.scores(context.query.text) if context.ocr is not None else {}
        return context.memo[self.name]

    def find(self, context: Context) -> set[str]:
        shares, kept = self._shares(context), context.query.kept
        if kept is not None:  # among the photos the filter keeps (``KeywordSignal.find``)
            shares = {i: shares[i] for i in kept.among(shares)}
        near = context.store.query_ocr(context.query.captions_vector, context.pool, context.query.where,
                                       context.query.listed("texts"))
        return set(sorted(shares, key=lambda i: -shares[i])[:context.pool]) | set(near)

    def score(self, context: Context, ids: Sequence[str]) -> Scored:
        shares, vector = self._shares(context), context.query.captions_vector
        texts = context.reads.ocr_of(ids)  # type: ignore[union-attr]
        return {i: max(shares.get(i, 0.0), float(meaning(texts[i][0], float(texts[i][1] @ vector))))
                if i in texts else None for i in ids}

    def relevance(self, context: Context, scores: Scored) -> dict[str, float] | None:
        """The share of the query's terms found in the photo's text (its meaning adds none: cosines of
        short fragments run high for unrelated text)."""
        shares = self._shares(context)
        return {i: lexical(shares.get(i, 0.0)) for i in scores}
