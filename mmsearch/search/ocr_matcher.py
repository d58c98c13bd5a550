"""The lexical half of the ``ocr`` signal: how much of a query appears in the text read in each photo."""

from __future__ import annotations

import re
from bisect import bisect_right

import numpy as np

from ..text import CJK, fold_accents
from .keywords import quoted_phrase, tokenize
from .stopwords import is_stop_word


class OcrMatcher:
    """The lexical half of the ``ocr`` signal: how much of a query appears in each photo's text.

    A query term counts as found in a photo when it is one of the text's tokens (the caption tokenizer:
    folded case, CJK characters and bigrams), or when it appears inside the text with spaces removed:
    OCR glues words ("GATEB42BOARDING"), and codes and numbers sit inside longer strings ("RE16" in
    "RE16 TGK", "1208" in "ROOM 1208"). Substring matching needs three characters, a digit, or CJK, so
    "of" does not match inside "office". A quoted phrase must appear as such. The score is the share of
    the query's terms found, 0..1.
    """

    def __init__(self, texts: dict[str, str]):
        self.ids = list(texts)
        self.postings: dict[str, set[int]] = {}
        for doc, text in enumerate(texts.values()):
            for token in set(tokenize(fold_accents(text))):
                self.postings.setdefault(token, set()).add(doc)
        compact = [_compact(t) for t in texts.values()]
        self.starts = np.cumsum([0] + [len(c) + 1 for c in compact]).tolist()
        self.blob = "\x00".join(compact)

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, query: str) -> dict[str, float]:
        """Image id -> share of the query's terms found in its text (ids with none found are left out)."""
        terms = query_terms(query)
        if not terms or not self.ids:
            return {}
        found: dict[int, int] = {}
        for term in terms:
            docs = set(self.postings.get(term, ()))
            if _substring_ok(term):
                docs |= self._containing(_compact(term))
            for d in docs:
                found[d] = found.get(d, 0) + 1
        phrase = _compact(quoted_phrase(query))
        if phrase:
            found = {d: n for d, n in found.items() if d in self._containing(phrase)}
        return {self.ids[d]: n / len(terms) for d, n in found.items()}

    def _containing(self, needle: str) -> set[int]:
        docs, at = set(), self.blob.find(needle)
        while at >= 0:
            docs.add(bisect_right(self.starts, at) - 1)
            at = self.blob.find(needle, at + 1)
        return docs


def query_terms(query: str) -> list[str]:
    """Distinct terms of a query: its tokens without stop words (``mmsearch.search.stopwords``; kept inside
    a quoted phrase), with runs of CJK characters kept whole (not as bigrams); a lone function character
    (的) is no term."""
    phrase = quoted_phrase(query)
    outside = re.sub(r'"[^"]*"', " ", query) if phrase else query
    terms: list[str] = []
    for text, stop in ((outside, True), (phrase, False)):
        for token in tokenize(fold_accents(re.sub(rf"[{CJK}]+", " ", text)), stop=stop):
            if token not in terms:
                terms.append(token)
        for run in re.findall(rf"[{CJK}]+", text):
            if run not in terms and not (stop and is_stop_word(run)):
                terms.append(run)
    return terms


def _substring_ok(term: str) -> bool:
    return len(term) >= 3 or any(c.isdigit() for c in term) or bool(re.match(rf"[{CJK}]", term))


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", fold_accents(text.lower()))
