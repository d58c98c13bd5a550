"""The ``sparse`` signal's index: BGE-M3 lexical weights of every stored text (captions and the text read in
photos), as postings by token id. An image scores its best text's match (``encoders.sparse.match``), as the
caption signal scores its best caption.

The weights live in the image records' metadata (``lexical``: one packed string per caption, ``ocr_lexical``),
so they travel with the index to a Chroma server, through export/import and reindex. Chroma's own sparse
vector index is not enabled in local mode (1.5: "Sparse vector indexing is not enabled in local"), so this
index is built from that metadata beside the keyword index, and cached with it in ``keywords.npz``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..encoders.sparse import Weights, unpack
from .topk import top

ARRAYS = ("text_image", "tokens", "offsets", "texts", "weights")


class LexicalIndex:
    """Postings of token ids over texts; ``text_image[t]`` is the position in ``ids`` of text ``t``'s image.
    ``alive``: the keyword index's live documents (None: all); an image switched off scores nothing."""

    def __init__(self, ids: Sequence[str], text_image: np.ndarray, tokens: np.ndarray, offsets: np.ndarray,
                 texts: np.ndarray, weights: np.ndarray, alive: np.ndarray | None = None):
        self.ids, self.text_image, self.tokens, self.offsets = ids, text_image, tokens, offsets
        self.texts, self.weights, self.alive = texts, weights, alive

    @classmethod
    def from_metadata(cls, ids: Sequence[str], metas: Iterable[dict[str, Any]]) -> LexicalIndex | None:
        """From the images' stored metadata, in ``ids`` order; None when no image has lexical weights."""
        return cls.extended(None, ids, 0, list(metas), None)

    @classmethod
    def extended(cls, old: LexicalIndex | None, ids: Sequence[str], start: int, metas: Sequence[dict[str, Any]],
                 alive: np.ndarray | None) -> LexicalIndex | None:
        """``old`` (None: no index yet) with the texts of the images at ``start``, ``start + 1``, ... (their
        stored metadata) added, over ``ids``; None when no image has lexical weights."""
        base = len(old.text_image) if old is not None else 0
        text_image, rows, columns, values = [], [], [], []
        for position, meta in enumerate(metas, start):
            packed = list(meta.get("lexical") or []) + ([meta["ocr_lexical"]] if meta.get("ocr_lexical") else [])
            for text in packed:
                weights = unpack(str(text))
                number = base + len(text_image)
                text_image.append(position)
                rows.extend([number] * len(weights))
                columns.extend(weights)
                values.extend(weights.values())
        if not text_image:
            return old.over(ids, alive) if old is not None else None
        images, tokens = np.asarray(text_image, dtype=np.int32), np.asarray(columns, dtype=np.int64)
        texts, weights = np.asarray(rows, dtype=np.int32), np.asarray(values, dtype=np.float32)
        if old is not None:
            images, texts = np.concatenate([old.text_image, images]), np.concatenate([old.texts, texts])
            tokens = np.concatenate([np.repeat(old.tokens, np.diff(old.offsets)), tokens])
            weights = np.concatenate([old.weights, weights])
        order = np.argsort(tokens, kind="stable")
        return cls._sorted(ids, images, tokens[order], texts[order], weights[order], alive)

    @classmethod
    def _sorted(cls, ids: Sequence[str], images: np.ndarray, tokens: np.ndarray, texts: np.ndarray, weights: np.ndarray,
                alive: np.ndarray | None) -> LexicalIndex:
        """From postings already in token order (one token per entry)."""
        unique, starts = np.unique(tokens, return_index=True)
        return cls(ids, images, unique, np.append(starts, len(tokens)).astype(np.int64), texts, weights, alive)

    def over(self, ids: Sequence[str], alive: np.ndarray | None) -> LexicalIndex:
        """The same texts over the keyword index's new ``ids`` and live documents."""
        return LexicalIndex(ids, self.text_image, self.tokens, self.offsets, self.texts, self.weights, alive)

    def packed(self, ids: Sequence[str], renumber: np.ndarray) -> LexicalIndex | None:
        """Without the texts of images ``renumber`` drops (-1), the others at their new positions."""
        images = renumber[self.text_image]
        kept = np.flatnonzero(images >= 0)
        if not len(kept):
            return None
        text_number = np.full(len(images), -1, dtype=np.int64)
        text_number[kept] = np.arange(len(kept))
        entries = text_number[self.texts] >= 0
        tokens = np.repeat(self.tokens, np.diff(self.offsets))[entries]
        return self._sorted(ids, images[kept].astype(np.int32), tokens, text_number[self.texts[entries]].astype(np.int32),
                            self.weights[entries], None)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The index as named arrays (saved with the keyword index; ``ids`` are the keyword index's)."""
        return {prefix + name: getattr(self, name) for name in ARRAYS}

    @classmethod
    def from_arrays(cls, ids: Sequence[str], data: Any, prefix: str, alive: np.ndarray | None = None) -> LexicalIndex | None:
        """The inverse of ``arrays``; None when they are absent or do not fit together."""
        if prefix + "tokens" not in data:
            return None
        index = cls(ids, *(np.asarray(data[prefix + name]) for name in ARRAYS), alive=alive)
        if len(index.offsets) != len(index.tokens) + 1 or index.offsets[-1] != len(index.texts) \
                or (len(index.text_image) and int(index.text_image.max()) >= len(ids)):
            return None
        return index

    def score_array(self, query: Weights) -> np.ndarray:
        """Each image's best text score for the query's lexical weights (0 where nothing matches)."""
        text_scores = np.zeros(len(self.text_image), dtype=np.float32)
        for token, weight in query.items():
            at = int(np.searchsorted(self.tokens, token))
            if at < len(self.tokens) and self.tokens[at] == token:
                start, end = self.offsets[at], self.offsets[at + 1]
                # a text holds each token once: no repeated index in one posting list
                text_scores[self.texts[start:end]] += weight * self.weights[start:end]
        images = np.zeros(len(self.ids), dtype=np.float32)
        matched = np.flatnonzero(text_scores)
        np.maximum.at(images, self.text_image[matched], text_scores[matched])
        if self.alive is not None:
            images[~self.alive] = 0.0
        return images

    def search(self, query: Weights, n: int) -> dict[str, float]:
        """The ``n`` best image ids for the query with their scores."""
        return self.top(self.score_array(query), n)

    def top(self, scores: np.ndarray, n: int) -> dict[str, float]:
        """The ``n`` best image ids of a ``score_array``, best first, with their scores (matches only)."""
        return top(self.ids, scores, n)
