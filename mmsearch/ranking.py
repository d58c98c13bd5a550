"""From a query vector (and text) to ranked hits: ``candidates`` gathers them from each signal with exact
scores, ``order`` fuses them (rules in ``mmsearch.fusion``), pins exact file-name matches and reranks.
``SearchEngine.serve_rules`` runs both; ``engine.search`` and ``mmsearch eval`` go through it.

Signals: ``image`` (query vector vs image vector), ``caption`` (vs the image's best caption),
``keyword`` (BM25 over captions, file and folder names; text queries only), ``sparse`` (BGE-M3's lexical
weights: the best caption's or photo text's match; caption models with a lexical head only), ``ocr`` (the text read in
photos: the share of the query found in it, or half its cosine to the query, if higher; added to the fused
score rather than averaged in, see ``mmsearch.fusion``; indexes with OCR only),
``feedback`` and, when a reranker is configured, ``rerank`` (a cross-encoder reading the query with the
image's captions).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

from .fusion import DEFAULT_RULE, EPSILON, fuse, pool_size
from .ids import split_caption_id
from .keywords import KeywordIndex
from .ocr import meaning
from .records import Hit

if TYPE_CHECKING:
    from .ocr import OcrMatcher
    from .rerank import Reranker
    from .store import Store

# internal fields not shown in Hit.metadata
HIDDEN_METADATA = ("folders", "caption_sig", "manifest_captions", "ocr_sig", "lexical", "ocr_lexical")
PINNED = 1.0  # fused score of an exact file-name match: the top of the scale
MAX_PINNED = 1000  # file-name matches looked at (an icon theme has one name in ~10 folders)
Scores = dict[str, float | None]


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
    feedback: dict[str, float] = field(default_factory=dict)  # lasting marks' signal per image id (mmsearch.feedback)
    shared_captions: bool = True  # captions share ``vector``'s space; if not, no ``caption_vector`` = no caption signal
    lexical: dict[int, float] = field(default_factory=dict)  # the text's BGE-M3 lexical weights (the sparse signal)


@dataclass
class Candidates:
    """Candidate images with every signal scored exactly and their best caption; ``metadata`` is read
    afterwards, for the hits only (metadata is the costly part of a fetch)."""

    scores: dict[str, Scores]
    best_caption: dict[str, int]
    exact: list[str]  # images whose file name is the query (pinned first)
    metadata: dict[str, dict] = field(default_factory=dict)

    def read_metadata(self, store: Store, ids: list[str]) -> dict[str, dict]:
        """Metadata of ``ids`` (read once, kept for later orderings); ids deleted meanwhile are absent."""
        missing = [i for i in ids if i not in self.metadata]
        self.metadata.update(store.image_metadata(missing))
        return self.metadata


def order(store: Store, query: Query, found: Candidates, rule: str = DEFAULT_RULE,
          reranker: Reranker | None = None) -> list[Hit]:
    """Fuse the candidates' signals by ``rule``, pin exact file-name matches, rerank, cut to ``query.k``.

    ``found`` is not changed, so one set of candidates can be ordered by several rules (eval does).
    A pinned hit scores 1.0, the top of the fused scale, so its score agrees with its place and no
    threshold drops it.
    """
    pool = pool_size(query.k)
    fused = fuse(found.scores, query.weights, rule)
    fused.update(dict.fromkeys(query.demoted & fused.keys(), 0.0))
    ranked = [i for i in sorted(fused, key=lambda i: (i in query.demoted, -fused[i], i)) if i != query.exclude]
    shown = ranked[:pool] if reranker is not None and query.text else ranked[:query.k]
    # A file-name query pins every file of that name (found by name, whatever their keyword rank), in path order.
    named = [i for i in found.exact if i != query.exclude]
    metadata = found.read_metadata(store, list(dict.fromkeys(named + shown)))
    exact = sorted((i for i in named if i in metadata), key=lambda i: str(metadata[i].get("path")))[:query.k] \
        or exact_matches(query.text, {i: metadata[i] for i in shown if i in metadata})
    rest = [i for i in shown if i in metadata and i not in exact]
    scores = {i: dict(found.scores[i]) for i in exact + rest}
    if reranker is not None and query.text:
        rest, fused = rerank(reranker, query.text, rest, metadata, scores, fused)
    fused = {**fused, **dict.fromkeys(exact, PINNED)}
    kept = [i for i in exact + rest if fused[i] >= query.min_score][:query.k]
    return [hit(i, fused[i], scores[i], found.best_caption.get(i), metadata[i]) for i in kept]


def candidates(store: Store, query: Query, pool: int, use_image: bool, keywords: KeywordIndex | None,
               ocr: OcrMatcher | None = None) -> Candidates:
    """Nearest images, nearest captions (ids only), keyword and text-in-photo matches, then each scored on
    every signal."""
    vector = query.vector
    caption_vector = query.caption_vector
    if caption_vector is None and query.shared_captions:
        caption_vector = query.vector
    use_ocr = bool(query.text) and query.weights.get("ocr", 0.0) > 0 and caption_vector is not None
    # The vector queries run at once (Chroma releases the GIL), the keyword search meanwhile.
    images = _executor().submit(store.query_images, vector, pool, query.where) if use_image else None
    ocr_near = _executor().submit(store.query_ocr, caption_vector, pool, query.where) if use_ocr else None
    best: dict[str, tuple[float, int]] = {}
    for match in store.query_captions(caption_vector, 2 * pool, query.where) if caption_vector is not None else []:
        if match.image_id not in best or match.score > best[match.image_id][0]:
            best[match.image_id] = (match.score, match.index)
    keyword = keywords.search(query.text, pool) if keywords is not None and query.text else {}
    use_sparse = keywords is not None and keywords.lexical is not None and bool(query.lexical) \
        and query.weights.get("sparse", 0.0) > 0
    every = keywords.lexical.score_array(query.lexical) if use_sparse else None  # type: ignore[union-attr]
    sparse = keywords.lexical.top(every, pool) if every is not None else {}  # type: ignore[union-attr]
    named = keywords.exact(query.text)[:MAX_PINNED] if keywords is not None and query.text else []
    lexical = ocr.scores(query.text) if use_ocr and ocr is not None else {}
    ocr_found = set(sorted(lexical, key=lambda i: -lexical[i])[:pool]) | set(ocr_near.result() if ocr_near else {})
    image_scores = images.result() if images is not None else {}
    # Vectors only (no metadata): the filter also applies to keyword and name matches; deleted ids drop out.
    lifted = {i for i, value in query.feedback.items() if value > 0}  # marked relevant by similar past queries
    vectors = store.image_vectors(list(set(image_scores) | set(best) | set(keyword) | set(named) | lifted | ocr_found
                                       | set(sparse)), query.where)
    if use_image:  # exact image scores for candidates found through captions or keywords
        for i, vec in vectors.items():
            image_scores.setdefault(i, float(vec @ vector))
    if caption_vector is not None:
        _fill_caption_scores(store, caption_vector, [i for i in vectors if i not in best], best)
    scores = {i: {"image": _round(image_scores.get(i)), "caption": _round(best[i][0]) if i in best else None}
              for i in vectors}
    if keyword:  # an image without a keyword match scores 0 on that signal (when anything matched)
        for i in scores:
            scores[i]["keyword"] = _round(keyword.get(i, 0.0))
    if sparse:  # exact for every candidate: an image without a shared token scores 0
        positions = keywords.positions()  # type: ignore[union-attr]
        for i in scores:
            scores[i]["sparse"] = _round(every[positions[i]]) if i in positions else 0.0
    if use_ocr:  # photos without text get no ocr score (fusion adds nothing for them: mmsearch.fusion.ADDITIVE)
        texts = store.ocr_records(list(scores))
        for i in scores:
            if i in texts:
                text, vector = texts[i]
                scores[i]["ocr"] = _round(max(lexical.get(i, 0.0), meaning(text, float(vector @ caption_vector))))
            else:
                scores[i]["ocr"] = None
    if query.feedback.keys() & scores.keys():  # likewise an unmarked image scores 0 on the feedback signal
        for i in scores:
            scores[i]["feedback"] = _round(query.feedback.get(i, 0.0))
    return Candidates(scores, {i: n for i, (_, n) in best.items()}, sorted(i for i in named if i in vectors))


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


def exact_matches(text: str, metadata: dict[str, dict]) -> list[str]:
    """Ids whose file name (with or without extension) is the query, in ``metadata``'s order."""
    wanted = text.strip().strip('"').lower()
    if not wanted:
        return []
    names = {i: str(meta.get("name", "")).lower() for i, meta in metadata.items()}
    return [i for i, name in names.items() if wanted in (name, PurePath(name).stem)]


def rerank(reranker: Reranker, text: str, top: list[str], metadata: dict[str, dict], scores: dict[str, Scores],
           fused: dict[str, float]) -> tuple[list[str], dict[str, float]]:
    """Reorder ``top`` by the cross-encoder; its raw score becomes the ``rerank`` signal (in ``scores``) and
    the hit score its min-max normalised value over ``top``."""
    from .rerank import image_text_for_rerank

    raw = reranker.score(text, [image_text_for_rerank(metadata[i]) for i in top])
    low, high = (float(raw.min()), float(raw.max())) if len(raw) else (0.0, 0.0)
    scored = dict(fused)
    for i, value in zip(top, raw):
        scores[i]["rerank"] = _round(float(value))
        scored[i] = 1.0 if high - low < EPSILON else (float(value) - low) / (high - low)
    return sorted(top, key=lambda i: (-scored[i], i)), scored


def hit(image: str, score: float, scores: Scores, best_caption: int | None, meta: dict) -> Hit:
    """The public record of one ranked image."""
    captions = meta.get("captions") or []
    index = len(captions) if best_caption is None else best_caption
    return Hit(path=meta["path"], score=round(score, 6), caption=captions[index] if index < len(captions) else "",
               scores=scores, metadata={k: v for k, v in meta.items() if k not in HIDDEN_METADATA})


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)
