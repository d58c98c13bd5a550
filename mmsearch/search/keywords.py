"""Keyword search over captions, file names and folder names: BM25 in memory, built from the store.

Tokens are lowercased words; runs of Chinese, Japanese or Korean characters (written without spaces)
become overlapping character bigrams plus single characters, so "一只猫" matches "一只虎斑猫"; English
plurals are folded ("bicycles" -> "bicycle"). File names split on punctuation ("IMG_0042.jpg" -> img,
0042, jpg). A quoted query ("red door") must appear as a phrase. Queries match without their stop words
(``mmsearch.search.stopwords``): "a graph of performance" is "graph performance".
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from ..text import CJK
from .lexical import LexicalIndex
from .places import PlaceBook
from .stopwords import is_stop_word

_TOKEN = re.compile(rf"[{CJK}]+|[^\W_{CJK}]+")
_ISCJK = re.compile(rf"[{CJK}]")
K1, B = 1.2, 0.75


def tokenize(text: str, stop: bool = False) -> list[str]:
    """Search tokens of a text (see the module docstring); ``stop`` leaves out stop words
    (``mmsearch.search.stopwords``)."""
    out: list[str] = []
    for run in _TOKEN.findall(text.lower()):
        if _ISCJK.match(run):
            out.extend(c for c in run if not (stop and is_stop_word(c)))
            out.extend(run[i:i + 2] for i in range(len(run) - 1))
        elif not (stop and is_stop_word(run)):
            out.append(_fold(run))
    return out


def query_tokens(query: str) -> list[str]:
    """The tokens a query matches with: stop words left out, except inside a quoted phrase (``"the who"``
    asks for exactly that). A query of stop words only has none: it matches nothing lexically."""
    phrase = quoted_phrase(query)
    outside = re.sub(r'"[^"]*"', " ", query) if phrase else query
    return tokenize(outside, stop=True) + tokenize(phrase)


def _fold(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def image_text(meta: dict) -> str:
    """What keyword search reads of an image: its captions, file name, the names of its folders, and its
    place in English ("Nairobi, Nairobi County, Kenya"; the place's names in other languages are matched by
    the query parser, ``mmsearch.search.places``, not added here, where 40 spellings would drown a caption)."""
    path = PurePath(meta.get("path", ""))
    folders = " ".join(path.parent.parts[-3:])
    return " \n ".join([*(meta.get("captions") or []), path.name, folders, str(meta.get("place") or "")])


class KeywordIndex:
    """BM25 over one text per image id. Postings are numpy arrays, so a query touching every document
    (a word like "of" in 100k captions) costs milliseconds."""

    def __init__(self, ids: list[str], texts: list[str], postings: dict[str, tuple[np.ndarray, np.ndarray]],
                 lengths: np.ndarray, names: list[str] | None = None, ocr: dict[str, str] | None = None):
        self.ids, self.texts, self.postings, self.lengths = ids, texts, postings, lengths
        self.ocr = ocr or {}  # image id -> text read in the photo (``mmsearch.search.ocr_matcher.OcrMatcher`` searches it)
        self.names = names or [""] * len(ids)  # lowercased file names, for exact file-name queries
        self.avg_length = float(lengths.mean()) if len(lengths) else 1.0
        self._by_name: dict[str, list[str]] | None = None
        self._positions: dict[str, int] | None = None
        self.lexical: LexicalIndex | None = None  # BGE-M3 lexical weights of the texts (``mmsearch.search.lexical``)
        self.captioned: list[str] = []  # ids of the images with captions (the caption signal's background)
        self.places = PlaceBook()  # the places the index holds, by name (the query parser's vocabulary)
        # The folder and camera facets, counted in the same pass over the metadata (``SearchEngine.facets``):
        # images under each folder (at any depth), and the cameras seen.
        self.folder_counts: dict[str, int] = {}
        self.cameras: list[str] = []

    @classmethod
    def from_metadata(cls, records: Iterable[tuple[str, dict]]) -> KeywordIndex:
        """Index (id, stored image metadata) pairs: texts from ``image_text``, and the file names."""
        records = list(records)
        pairs = [(i, image_text(meta), PurePath(str(meta.get("path", ""))).name.lower()) for i, meta in records]
        index = cls.build((i, text) for i, text, _ in pairs)
        index.names = [name for _, _, name in pairs]
        index.ocr = {i: str(meta["ocr"]) for i, meta in records if meta.get("ocr")}
        index.lexical = LexicalIndex.from_metadata(index.ids, (meta for _, meta in records))
        index.captioned = [i for i, meta in records if meta.get("captions")]
        index.places = PlaceBook.from_metadata(meta for _, meta in records)
        index.folder_counts, index.cameras = _facets(meta for _, meta in records)
        return index

    def positions(self) -> dict[str, int]:
        """Image id -> its position in ``ids`` (and in every score array)."""
        if self._positions is None:
            self._positions = {id_: n for n, id_ in enumerate(self.ids)}
        return self._positions

    def exact(self, query: str) -> list[str]:
        """Ids whose file name is the query, with or without its extension, in any case (``IMG_0042.jpg``,
        ``img_0042``); every one of them, however BM25 ranks them."""
        if self._by_name is None:
            self._by_name = {}
            for id_, name in zip(self.ids, self.names):
                for key in {name, PurePath(name).stem} - {""}:
                    self._by_name.setdefault(key, []).append(id_)
        return list(self._by_name.get(query.strip().strip('"').lower(), []))

    @classmethod
    def build(cls, records: Iterable[tuple[str, str]]) -> KeywordIndex:
        """Index (id, text) pairs."""
        ids, texts, lengths = [], [], []
        lists: dict[str, tuple[list[int], list[int]]] = {}
        for doc, (id_, text) in enumerate(records):
            counts = Counter(tokenize(text))
            ids.append(id_)
            texts.append(text.lower())
            lengths.append(sum(counts.values()))
            for token, tf in counts.items():
                docs, tfs = lists.setdefault(token, ([], []))
                docs.append(doc)
                tfs.append(tf)
        postings = {t: (np.asarray(d, dtype=np.int32), np.asarray(f, dtype=np.float32)) for t, (d, f) in lists.items()}
        return cls(ids, texts, postings, np.asarray(lengths, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, path: str | Path, key: Sequence[int]) -> None:
        """Write to ``path`` (numpy ``.npz``, no pickle), tagged with ``key`` (what the index looked like)."""
        tokens = list(self.postings)
        sizes = [len(self.postings[t][0]) for t in tokens]
        empty_i, empty_f = np.zeros(0, np.int32), np.zeros(0, np.float32)
        path = Path(path)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part.npz")
        np.savez(partial, key=np.asarray(key, dtype=np.int64), **_pack("ids", self.ids), **_pack("texts", self.texts),
                 **_pack("tokens", tokens), **_pack("names", self.names), **_pack("ocr_ids", list(self.ocr)),
                 **_pack("ocr_texts", list(self.ocr.values())), **_pack("captioned", self.captioned),
                 **_pack("places", [self.places.to_json()]), **_pack("facet_folders", list(self.folder_counts)),
                 facet_counts=np.asarray(list(self.folder_counts.values()), dtype=np.int64), **_pack("cameras", self.cameras),
                 offsets=np.cumsum([0, *sizes]).astype(np.int64), lengths=self.lengths,
                 docs=np.concatenate([self.postings[t][0] for t in tokens]) if tokens else empty_i,
                 tfs=np.concatenate([self.postings[t][1] for t in tokens]) if tokens else empty_f,
                 **(self.lexical.arrays("lexical_") if self.lexical is not None else {}))
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | Path, key: Sequence[int]) -> KeywordIndex | None:
        """The index saved at ``path`` if it was saved with this ``key``, else None (then it is rebuilt).

        Any damage (a truncated or empty file, a format from another version, counts that disagree)
        also gives None: the file is only a cache of what the store holds.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                if data["key"].tolist() != list(key):
                    return None
                tokens, offsets, docs, tfs = _unpack(data, "tokens"), data["offsets"], data["docs"], data["tfs"]
                ids, texts, lengths = _unpack(data, "ids"), _unpack(data, "texts"), data["lengths"]
                names = _unpack(data, "names")
                if not len(ids) == len(texts) == len(lengths) == len(names) or len(offsets) != len(tokens) + 1 \
                        or offsets[-1] != len(docs):
                    return None
                postings = {t: (docs[offsets[n]:offsets[n + 1]], tfs[offsets[n]:offsets[n + 1]])
                            for n, t in enumerate(tokens)}
                index = cls(ids, texts, postings, lengths, names,
                            dict(zip(_unpack(data, "ocr_ids"), _unpack(data, "ocr_texts"))))
                index.lexical = LexicalIndex.from_arrays(ids, data, "lexical_")
                index.captioned = _unpack(data, "captioned")
                index.places = PlaceBook.from_json(_unpack(data, "places")[0])
                folders, counts = _unpack(data, "facet_folders"), data["facet_counts"].tolist()
                if len(folders) != len(counts):
                    return None
                index.folder_counts, index.cameras = dict(zip(folders, counts)), _unpack(data, "cameras")
                return index
        except Exception:  # BadZipFile, EOFError, ValueError, KeyError, OSError, ...: rebuild
            return None

    def idf(self, term: str) -> float:
        """BM25's IDF of a term; a term no text holds gets the largest (that of a term in no document)."""
        docs = self.postings.get(term)
        found = 0 if docs is None else len(docs[0])
        return math.log(1 + (len(self.ids) - found + 0.5) / (found + 0.5))

    def coverage(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        """The IDF-weighted share of the query's terms (``query_tokens``) each image's text holds (0..1;
        images holding none, or missing the quoted phrase, are left out): the keyword signal's relevance
        (``mmsearch.search.relevance``)."""
        terms = set(query_tokens(query))
        positions = self.positions()
        rows = np.asarray([positions.get(i, -1) for i in ids], dtype=np.int64)
        if not terms or not len(rows):
            return {}
        held, total = np.zeros(len(rows), dtype=np.float64), 0.0
        for term in terms:
            weight = self.idf(term)
            total += weight
            docs = self.postings.get(term)
            if docs is not None:
                held += weight * np.isin(rows, docs[0])
        phrase = quoted_phrase(query)
        share = held / total if total > 0 else held
        return {i: float(share[n]) for n, i in enumerate(ids)
                if share[n] > 0 and (not phrase or phrase in self.texts[rows[n]])}

    def score_array(self, query: str) -> np.ndarray:
        """BM25 score of every document (0 where nothing matches)."""
        scores = np.zeros(len(self.ids), dtype=np.float32)
        n = len(self.ids)
        for term in set(query_tokens(query)):
            docs, tfs = self.postings.get(term, (None, None))
            if docs is None:
                continue
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            norm = tfs * (K1 + 1) / (tfs + K1 * (1 - B + B * self.lengths[docs] / self.avg_length))
            scores[docs] += idf * norm
        phrase = quoted_phrase(query)
        if phrase:
            for doc in np.flatnonzero(scores):
                if phrase not in self.texts[doc]:
                    scores[doc] = 0.0
        return scores

    def search(self, query: str, n: int, allowed: Sequence[str] | None = None) -> dict[str, float]:
        """The ``n`` best image ids for ``query`` with their scores (optionally only ids in ``allowed``)."""
        scores = self.score_array(query)
        if allowed is not None:
            mask = np.zeros(len(self.ids), dtype=bool)
            positions = {id_: d for d, id_ in enumerate(self.ids)}
            mask[[positions[i] for i in allowed if i in positions]] = True
            scores = np.where(mask, scores, 0.0)
        matched = np.flatnonzero(scores)
        if len(matched) > n:
            matched = matched[np.argpartition(-scores[matched], n - 1)[:n]]
        best = sorted(matched, key=lambda d: (-scores[d], d))
        return {self.ids[d]: float(scores[d]) for d in best}


def _pack(name: str, strings: Sequence[str]) -> dict[str, np.ndarray]:
    """Strings as their UTF-8 bytes back to back plus the end offset of each: any character, NUL included,
    survives the round trip."""
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    return {f"{name}_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
            f"{name}_ends": np.cumsum([len(e) for e in encoded], dtype=np.int64)}


def _unpack(data: Any, name: str) -> list[str]:
    raw, ends = data[f"{name}_bytes"].tobytes(), data[f"{name}_ends"].tolist()
    starts = [0, *ends[:-1]]
    return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, ends)]


def quoted_phrase(query: str) -> str:
    """The first double-quoted phrase of a query, lowercased ("" when there is none)."""
    match = re.search(r'"([^"]+)"', query)
    return match.group(1).strip().lower() if match else ""


def _facets(metas: Iterable[dict]) -> tuple[dict[str, int], list[str]]:
    """Images under each folder (a photo counts in every folder above it: its ``folders``) and the cameras."""
    counts: dict[str, int] = {}
    cameras: set[str] = set()
    for meta in metas:
        for folder in meta.get("folders") or []:
            counts[folder] = counts.get(folder, 0) + 1
        if meta.get("camera"):
            cameras.add(str(meta["camera"]))
    return counts, sorted(cameras)
