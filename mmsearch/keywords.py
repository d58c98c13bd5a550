"""Keyword search over captions, file names and folder names: BM25 in memory, built from the store.

Tokens are lowercased words; runs of Chinese, Japanese or Korean characters (written without spaces)
become overlapping character bigrams plus single characters, so "一只猫" matches "一只虎斑猫"; English
plurals are folded ("bicycles" -> "bicycle"). File names split on punctuation ("IMG_0042.jpg" -> img,
0042, jpg). A quoted query ("red door") must appear as a phrase.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")
K1, B = 1.2, 0.75


def tokenize(text: str) -> list[str]:
    """Search tokens of a text (see the module docstring)."""
    out: list[str] = []
    for run in _TOKEN.findall(text.lower()):
        if _IS_CJK.match(run):
            out.extend(run)
            out.extend(run[i:i + 2] for i in range(len(run) - 1))
        else:
            out.append(_fold(run))
    return out


def _fold(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def image_text(meta: dict) -> str:
    """What keyword search reads of an image: its captions, file name and the names of its folders."""
    path = PurePath(meta.get("path", ""))
    folders = " ".join(path.parent.parts[-3:])
    return " \n ".join([*(meta.get("captions") or []), path.name, folders])


@dataclass
class KeywordIndex:
    """BM25 over one text per image id."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    postings: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, records: Iterable[tuple[str, str]]) -> KeywordIndex:
        """Index (id, text) pairs."""
        index = cls()
        for doc, (id_, text) in enumerate(records):
            counts = Counter(tokenize(text))
            index.ids.append(id_)
            index.texts.append(text.lower())
            index.lengths.append(sum(counts.values()))
            for token, tf in counts.items():
                index.postings.setdefault(token, []).append((doc, tf))
        return index

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, query: str) -> dict[int, float]:
        """BM25 score of every document matching the query (document number -> score)."""
        phrase = _quoted(query)
        terms = set(tokenize(query))
        if not terms or not self.ids:
            return {}
        n, avg = len(self.ids), sum(self.lengths) / len(self.ids) or 1.0
        out: dict[int, float] = {}
        for term in terms:
            docs = self.postings.get(term, [])
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            for doc, tf in docs:
                norm = tf * (K1 + 1) / (tf + K1 * (1 - B + B * self.lengths[doc] / avg))
                out[doc] = out.get(doc, 0.0) + idf * norm
        if phrase:
            out = {d: s for d, s in out.items() if phrase in self.texts[d]}
        return out

    def search(self, query: str, n: int, allowed: Sequence[str] | None = None) -> dict[str, float]:
        """The ``n`` best image ids for ``query`` with their scores (optionally only ids in ``allowed``)."""
        scores = self.scores(query)
        if allowed is not None:
            keep = set(allowed)
            scores = {d: s for d, s in scores.items() if self.ids[d] in keep}
        return {self.ids[d]: s for d, s in heapq.nlargest(n, scores.items(), key=lambda item: item[1])}


def _quoted(query: str) -> str:
    match = re.search(r'"([^"]+)"', query)
    return match.group(1).strip().lower() if match else ""
