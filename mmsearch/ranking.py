"""From a query vector (and text) to ranked hits: candidates from each signal, exact scores, fusion,
exact-match pinning, optional reranking.

Signals: ``image`` (query vector vs image vector), ``caption`` (vs the image's best caption),
``keyword`` (BM25 over captions, file and folder names; text queries only) and, when a reranker is
configured, ``rerank`` (a cross-encoder reading the query with the image's captions).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

from .fusion import fuse
from .keywords import KeywordIndex
from .records import Hit
from .store import split_caption_id

if TYPE_CHECKING:
    from .rerank import Reranker
    from .store import Store

HIDDEN_METADATA = ("folders", "caption_sig")  # internal fields not shown in Hit.metadata
Scores = dict[str, float | None]


@dataclass(frozen=True)
class Query:
    """One search, ready to rank."""

    vector: np.ndarray
    text: str  # "" for image-only queries
    k: int
    weights: dict[str, float]  # signal -> weight in the fused score
    where: dict | None = None
    min_score: float = 0.0
    exclude: str | None = None  # an image id never returned ("more like this" leaves the image out)


@dataclass
class Candidates:
    """Candidate images with every signal scored exactly and their best caption; ``metadata`` is read
    afterwards, for the hits only (metadata is the costly part of a fetch)."""

    scores: dict[str, Scores]
    best_caption: dict[str, int]
    keyword_top: list[str]
    metadata: dict[str, dict] = field(default_factory=dict)


def rank(store: Store, query: Query, use_image: bool, keywords: KeywordIndex | None = None,
         reranker: Reranker | None = None) -> list[Hit]:
    """The ``query.k`` best hits."""
    pool = max(3 * query.k, 30)
    found = candidates(store, query, pool, use_image, keywords)
    fused = fuse(found.scores, query.weights)
    ranked = [i for i in sorted(fused, key=lambda i: (-fused[i], i)) if i != query.exclude]
    shown = ranked[:pool] if reranker is not None and query.text else ranked[:query.k]
    # A file-name query pins that file; it is among the best keyword matches when it is a candidate.
    looked = list(dict.fromkeys(shown + [i for i in found.keyword_top[:query.k] if i != query.exclude]))
    stored = store.image_metadata(looked)
    found.metadata = {i: stored[i] for i in looked if i in stored}  # in rank order; deleted meanwhile: gone
    ranked = pin_exact(query.text, [i for i in shown if i in found.metadata], found.metadata)
    if reranker is not None and query.text:
        ranked, fused = rerank(reranker, query.text, ranked, found, fused)
    return [hit(i, fused[i], found) for i in ranked if fused[i] >= query.min_score][:query.k]


def candidates(store: Store, query: Query, pool: int, use_image: bool, keywords: KeywordIndex | None) -> Candidates:
    """Nearest images, nearest captions (ids only) and keyword matches, then each scored on every signal."""
    vector = query.vector
    # The two vector queries run at once (Chroma releases the GIL), the keyword search meanwhile.
    images = _executor().submit(store.query_images, vector, pool, query.where) if use_image else None
    best: dict[str, tuple[float, int]] = {}
    for match in store.query_captions(vector, 2 * pool, query.where):
        if match.image_id not in best or match.score > best[match.image_id][0]:
            best[match.image_id] = (match.score, match.index)
    keyword = keywords.search(query.text, pool) if keywords is not None and query.text else {}
    image_scores = images.result() if images is not None else {}
    # Vectors only (no metadata): the filter also applies to keyword matches, and deleted ids drop out.
    vectors = store.image_vectors(list(set(image_scores) | set(best) | set(keyword)), query.where)
    if use_image:  # exact image scores for candidates found through captions or keywords
        for i, vec in vectors.items():
            image_scores.setdefault(i, float(vec @ vector))
    _fill_caption_scores(store, vector, [i for i in vectors if i not in best], best)
    scores = {i: {"image": _round(image_scores.get(i)), "caption": _round(best[i][0]) if i in best else None}
              for i in vectors}
    if keyword:  # an image without a keyword match scores 0 on that signal (when anything matched)
        for i in scores:
            scores[i]["keyword"] = _round(keyword.get(i, 0.0))
    top_keywords = [i for i in sorted(keyword, key=lambda i: -keyword[i]) if i in vectors]
    return Candidates(scores, {i: n for i, (_, n) in best.items()}, top_keywords)


_EXECUTOR: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(4, thread_name_prefix="mmsearch-query")
    return _EXECUTOR


def _fill_caption_scores(store: Store, vector: np.ndarray, images: list[str], best: dict[str, tuple[float, int]]) -> None:
    """Exact caption scores of candidates whose captions the caption search did not return."""
    for cid, vec in store.caption_vectors_of(images).items():
        image, index = split_caption_id(cid)
        score = float(vec @ vector)
        if image not in best or score > best[image][0]:
            best[image] = (score, index)


def pin_exact(text: str, ranked: list[str], metadata: dict[str, dict]) -> list[str]:
    """A query that is a file name (with or without extension) puts that file first; the files looked at
    are those in ``metadata``, in its order."""
    wanted = text.strip().strip('"').lower()
    if not wanted:
        return ranked
    names = {i: meta.get("name", "").lower() for i, meta in metadata.items()}
    exact = [i for i, name in names.items() if wanted in (name, PurePath(name).stem)]
    return exact + [i for i in ranked if i not in exact]


def rerank(reranker: Reranker, text: str, top: list[str], found: Candidates, fused: dict[str, float]
           ) -> tuple[list[str], dict[str, float]]:
    """Reorder ``top`` by the cross-encoder; its raw score becomes the ``rerank`` signal and the hit score
    its min-max normalised value over ``top``."""
    from .rerank import image_text_for_rerank

    raw = reranker.score(text, [image_text_for_rerank(found.metadata[i]) for i in top])
    low, high = (float(raw.min()), float(raw.max())) if len(raw) else (0.0, 0.0)
    scored = dict(fused)
    for i, value in zip(top, raw):
        found.scores[i]["rerank"] = _round(float(value))
        scored[i] = 1.0 if high - low < 1e-9 else (float(value) - low) / (high - low)
    return sorted(top, key=lambda i: (-scored[i], i)), scored


def hit(image: str, score: float, found: Candidates) -> Hit:
    meta = found.metadata[image]
    captions = meta.get("captions") or []
    index = found.best_caption.get(image, len(captions))
    return Hit(path=meta["path"], score=round(score, 6), caption=captions[index] if index < len(captions) else "",
               scores=found.scores[image], metadata={k: v for k, v in meta.items() if k not in HIDDEN_METADATA})


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)
