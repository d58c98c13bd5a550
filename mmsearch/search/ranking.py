"""From a query vector (and text) to ranked hits: ``candidates`` gathers them from each signal with exact
scores, ``order`` fuses them (rules in ``mmsearch.search.fusion``), pins exact file-name matches and reranks.
``SearchEngine.serve_rules`` runs both; ``engine.search`` and ``mmsearch eval`` go through it.

The signals (``image``, ``caption``, ``keyword``, ``sparse``, ``ocr``, ``feedback``, and any plug-in) are
modules of ``mmsearch.search.signals``, run from its registry. When a reranker is configured, ``rerank`` (a
cross-encoder reading the query with the image's captions) reorders the fused top of the pool.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING

import numpy as np

from ..records import HIDDEN_METADATA, Hit
from ..text import CJK
from . import signals
from .collapse import collapse
from .filters import within
from .fusion import DEFAULT_RULE, EPSILON, fuse, pool_size
from .keywords import image_text, tokenize
from .query import Query
from .relevance import Background, combine
from .selection import date_order, kept_rows
from .signals import Context, Signal, rounded
from .signals.image import ImageSignal, best_frames

if TYPE_CHECKING:
    from ..store.client import Store
    from .keywords import KeywordIndex
    from .ocr_matcher import OcrMatcher
    from .rerank import Reranker

_CJK = re.compile(f"[{CJK}]")
PINNED = 1.0  # fused score of an exact file-name match: the top of the scale
MAX_PINNED = 1000  # file-name matches looked at (an icon theme has one name in ~10 folders)
BROWSE_CHUNK = 100  # records read at a time by ``browse``, in date order, until k pass its cuts
Scores = dict[str, float | None]


@dataclass
class Candidates:
    """Candidate images with every signal scored exactly and their best caption; ``metadata`` is read
    afterwards, for the hits only (metadata is the costly part of a fetch)."""

    scores: dict[str, Scores]
    best_caption: dict[str, int]
    exact: list[str]  # images whose file name is the query (pinned first)
    relevance: dict[str, float] = field(default_factory=dict)  # calibrated, 0..1 (``mmsearch.search.relevance``)
    vectors: dict = field(default_factory=dict)  # image vectors read so far (``vectors_of``: the duplicate rule's cosine)
    use_image: bool = False  # whether those are image-model vectors
    metadata: dict[str, dict] = field(default_factory=dict)
    moments: dict[str, float] = field(default_factory=dict)  # video id -> time (s) of its best frame
    keywords: KeywordIndex | None = None  # the keyword index they were found with

    def read_metadata(self, store: Store, ids: list[str]) -> dict[str, dict]:
        """Metadata of ``ids`` (read once, kept for later orderings, ``records``); ids deleted meanwhile are
        absent."""
        self.metadata.update(records(store, self.keywords, [i for i in ids if i not in self.metadata]))
        return self.metadata

    def vectors_of(self, store: Store, ids: list[str]) -> Mapping[str, np.ndarray]:
        """Image vectors of ``ids``. Those not read with the candidates (the image signal's own finds) are read
        in one go when one of them is first asked for, and kept: the duplicate rule needs a cosine only for
        pairs that already look alike, so most searches read none. Read from the keyword index where it holds
        them (``held_or_read``): a new process's first search reads nothing of the store."""
        return _OnDemand(self.vectors, lambda unread: held_or_read(store, self.keywords, unread), ids)


def records(store: Store, keywords: KeywordIndex | None, ids: list[str]) -> dict[str, dict]:
    """The stored metadata of those of ``ids`` that exist.

    While Chroma loads the images' vector index (``Store.warming``: a new process's first search), any read of
    that collection waits for the load, so the records are read from the keyword index's copy
    (``KeywordIndex.records_of``), and only those it lacks from the store. A record another process changed in
    the last ``KEYWORD_CHECK`` seconds may then be shown as it was (as a filtered search lists it)."""
    found: dict[str, dict] = {}
    if ids and keywords is not None and store.warming("images"):
        found = keywords.records_of(ids)
        ids = [i for i in ids if i not in found]
    return {**found, **store.image_metadata(ids)} if ids else found


def order(store: Store, query: Query, found: Candidates, rule: str = DEFAULT_RULE,
          reranker: Reranker | None = None) -> list[Hit]:
    """Fuse the candidates' signals by ``rule``, pin exact file-name matches, rerank, leave out what is below
    ``query.min_relevance``, fold copies (``query.collapse``), cut to ``query.k``.

    ``found`` is not changed, so one set of candidates can be ordered by several rules (eval does).
    A pinned hit scores 1.0, the top of the fused scale, so its score agrees with its place and no
    threshold drops it; its relevance is 1.0 too.
    """
    pool = pool_size(query.k)
    fused = fuse(found.scores, query.weights, rule)
    fused.update(dict.fromkeys(query.demoted & fused.keys(), 0.0))
    relevance = {**found.relevance, **dict.fromkeys(query.demoted, 0.0), **dict.fromkeys(found.exact, 1.0)}
    floor = query.min_relevance
    ranked = [i for i in sorted(fused, key=lambda i: (i in query.demoted, -fused[i], i))
              if i != query.exclude and (floor is None or relevance.get(i, 0.0) >= floor)]
    if query.near is not None or query.excluded:  # cuts the store cannot make: read the candidates' metadata
        found.read_metadata(store, ranked)
        ranked = [i for i in ranked if i in found.metadata and passes(query, found.metadata[i])]
    wide = (reranker is not None and query.text) or query.collapse or query.sort != "best"
    # A file-name query pins every file of that name (found by name, whatever their keyword rank), in path order.
    named = [i for i in found.exact if i != query.exclude]
    shown = existing(store, found, ranked, pool if wide else query.k, named)
    metadata = found.metadata
    exact = sorted((i for i in named if i in metadata), key=lambda i: str(metadata[i].get("path")))[:query.k] \
        or exact_matches(query.text, {i: metadata[i] for i in shown if i in metadata})
    rest = [i for i in shown if i in metadata and i not in exact]
    scores = {i: dict(found.scores[i]) for i in exact + rest}
    if reranker is not None and query.text:
        rest, fused = rerank(reranker, query.text, rest, metadata, scores, fused)
    fused = {**fused, **dict.fromkeys(exact, PINNED)}
    relevance.update(dict.fromkeys(exact, 1.0))
    kept = [i for i in exact + rest if fused[i] >= query.min_score]
    # Files named as typed are each listed (the user asked for them by name); the rest fold their copies.
    pinned = [(i, []) for i in kept if i in exact]
    others = [i for i in kept if i not in exact]
    groups = pinned + (collapse(others, metadata, found.vectors_of(store, others), found.use_image) if query.collapse
                       else [(i, []) for i in others])
    if query.sort != "best":
        groups = by_date(groups[:query.k] if floor is None else groups, metadata, query.sort)
    return [hit(i, fused[i], scores[i], found.best_caption.get(i), metadata[i], relevance.get(i, 0.0),
                [str(metadata[c]["path"]) for c in copies], found.moments.get(i)) for i, copies in groups[:query.k]]


def existing(store: Store, found: Candidates, ranked: list[str], count: int, named: list[str]) -> list[str]:
    """The first ``count`` of ``ranked`` whose records still exist, their metadata read (with that of ``named``,
    in the same read). A record removed since its candidate was found (by another process, which the keyword
    index sees within ``KEYWORD_CHECK`` seconds, and its vectors with it) gives its place to the next one."""
    part, start, shown = ranked[:count], count, []
    metadata = found.read_metadata(store, list(dict.fromkeys(named + part)))
    while True:
        shown += [i for i in part if i in metadata]
        if len(shown) >= count or start >= len(ranked):
            return shown
        part, start = ranked[start:start + count - len(shown)], start + count - len(shown)
        metadata = found.read_metadata(store, part)


def browse(store: Store, where: dict | None, near: tuple[float, float, float] | None, excluded: tuple[str, ...],
           k: int, sort: str, keywords: KeywordIndex | None = None) -> list[Hit]:
    """A query with nothing to rank by but its filters ("Osaka 2019"): the images they keep, in date order
    (``by_date``), each a full match of what was asked (relevance 1.0, no signal scores).

    With the keyword index, the filter is evaluated there (``mmsearch.search.selection``) and the images it
    keeps are put in date order in memory; only the first ones' records are read, until ``k`` pass the cuts
    the index cannot make. Else every record the filter keeps is read (a year among a million: 70 s)."""
    cut = Query(np.zeros(1, np.float32), "", k, {}, where, near=near, excluded=excluded)
    rows = None
    if keywords is not None:
        rows = kept_rows(keywords, where) if where else np.flatnonzero(keywords.alive)
    if rows is None or keywords is None:
        metadata = {i: m for i, m in store.find(where) if passes(cut, m)}
    else:
        metadata = _first_passing(store, keywords, rows, cut, sort)
    groups = by_date([(i, []) for i in metadata], metadata, sort)[:k]
    return [hit(i, 1.0, {"image": None, "caption": None}, None, metadata[i], 1.0) for i, _ in groups]


def _first_passing(store: Store, keywords: KeywordIndex, rows: np.ndarray, cut: Query, sort: str) -> dict[str, dict]:
    """The metadata of the first ``cut.k`` of these documents (and the rest of their chunk) in ``sort``'s date
    order that pass ``cut``, read ``BROWSE_CHUNK`` (or k) records at a time."""
    metadata: dict[str, dict] = {}
    for part in date_order(keywords, rows, sort == "date", max(cut.k, BROWSE_CHUNK)):
        read = records(store, keywords, keywords.ids.at(part))
        metadata.update((i, m) for i, m in read.items() if passes(cut, m))
        if len(metadata) >= cut.k:
            break
    return metadata


def by_date(groups: list[tuple[str, list[str]]], metadata: dict[str, dict], sort: str) -> list[tuple[str, list[str]]]:
    """Hits in the order they were taken: newest first (``date``) or oldest first (``date-asc``); ties by path."""
    newest = sort == "date"
    return sorted(groups, key=lambda g: ((-1 if newest else 1) * int(metadata[g[0]].get("date") or 0),
                                         str(metadata[g[0]].get("path"))))


class _OnDemand(Mapping[str, np.ndarray]):
    """The vectors of ``ids`` that exist: those in ``known``, and the others read (``read``) into ``known``, all in
    one read, when one of them is first asked for (or the mapping is listed)."""

    def __init__(self, known: dict[str, np.ndarray], read: Callable[[list[str]], dict[str, np.ndarray]],
                 ids: list[str]):
        self._known, self._read_ids, self._ids = known, read, list(dict.fromkeys(ids))
        self._wanted, self._unread = set(self._ids), [i for i in self._ids if i not in known]

    def __getitem__(self, image: str) -> np.ndarray:
        if image not in self._wanted:
            raise KeyError(image)
        if image not in self._known:
            self._read()
        return self._known[image]

    def __iter__(self) -> Iterator[str]:  # an unread id may have been deleted meanwhile: read first
        self._read()
        return iter([i for i in self._ids if i in self._known])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _read(self) -> None:
        if self._unread:
            self._known.update(self._read_ids(self._unread))
            self._unread = []


def passes(query: Query, meta: dict) -> bool:
    """Whether an image survives the query's cuts the store cannot make: inside ``near``'s circle by
    great-circle distance, and none of the ``excluded`` words or phrases in its captions, file and folder
    names, place or text in the photo."""
    if query.near is not None and not within(query.near, meta.get("lat"), meta.get("lon")):
        return False
    if not query.excluded:
        return True
    text = f"{image_text(meta)} \n {meta.get('ocr') or ''}"
    words = tokenize(text)
    return not any(_holds(text, words, term) for term in query.excluded)


def _holds(text: str, words: list[str], term: str) -> bool:
    """Whether ``term`` appears in ``text``: as a run of its words (so "cat" is not in "category"), or, for
    Chinese, Japanese or Korean written without spaces, as it is."""
    if _CJK.search(term):
        return term.lower() in text.lower()
    phrase = tokenize(term)
    size = len(phrase)
    return bool(phrase) and any(words[n:n + size] == phrase for n in range(len(words) - size + 1))


def candidates(store: Store, query: Query, pool: int, use_image: bool, keywords: KeywordIndex | None,
               ocr: OcrMatcher | None = None, background: Background | None = None) -> Candidates:
    """The candidates of every registered signal (``mmsearch.search.signals``), each then scored exactly
    on every signal that takes part, with its calibrated relevance against ``background``; and the images
    whose file name is the query (pinned first)."""
    context = Context(store, query, pool, use_image, keywords, ocr, background=background or Background.empty())
    taking_part = [s for s in signals.registered() if s.takes_part(context)]
    # The finds run at once: vector queries release the GIL (Chroma), the keyword search runs meanwhile.
    finding = {s.name: _executor().submit(_find, s, context) for s in taking_part}
    named = keywords.exact(query.text)[:MAX_PINNED] if keywords is not None and query.text else []
    results = {name: future.result() for name, future in finding.items()}
    context.found = {name: result.found for name, result in results.items()}
    near = context.found.get(ImageSignal.name) or {}
    asked = {i for result in results.values() for i in result.asked}
    read = {i: v for result in results.values() for i, v in result.vectors.items() if i not in near}
    rest = [i for i in set(named).union(*context.found.values()) if i not in near and i not in asked]
    context.vectors = {**read, **image_vectors(store, query, rest, keywords)}
    context.candidates = [*near, *context.vectors]
    best_frames(context)
    scores = score_all(context, taking_part, context.candidates)
    return Candidates(scores, context.best_caption, sorted(i for i in named if i in scores),
                      relevance_of(context, taking_part, scores), context.vectors, use_image, moments=context.moments,
                      keywords=keywords)


@dataclass(frozen=True)
class _Found:
    """One signal's finds, and the vectors of those ``asked`` for (the ids that exist and pass the filter)."""

    found: Iterable[str]
    asked: list[str]
    vectors: dict[str, np.ndarray]


def _find(signal: Signal, context: Context) -> _Found:
    """A signal's finds, on a query thread. The image signal's come from vector queries under the filter, with
    their exact image scores: they exist and pass it. Any other signal's finds get their vectors here (no
    metadata), while the images' vector query, the slowest find, still runs: the filter also applies to keyword
    and name matches, and their image scores need the vectors."""
    found = signal.find(context)
    if signal.name == ImageSignal.name:
        return _Found(found, [], {})
    asked = list(found)
    return _Found(found, asked, image_vectors(context.store, context.query, asked, context.keywords))


def image_vectors(store: Store, query: Query, ids: list[str], keywords: KeywordIndex | None = None
                  ) -> dict[str, np.ndarray]:
    """The vectors of those of ``ids`` that exist and that the query's filter keeps, from the keyword index's
    vectors where it holds them (``KeywordIndex.vectors``), else read: under a filter evaluated in memory, where
    it holds them all (``Kept.vectors_of``); with no filter, those it holds (``held_vectors``) and the rest read.
    A record another process removed in the last ``KEYWORD_CHECK`` seconds may still be given: the hits' read of
    the records skips it (``existing``)."""
    kept = query.kept
    if kept is not None:
        vectors = kept.vectors_of(ids)
        return store.image_vectors(*query.allowed(ids)) if vectors is None else vectors
    if query.where is None and keywords is not None:
        return held_or_read(store, keywords, ids)
    return store.image_vectors(*query.allowed(ids))


def held_or_read(store: Store, keywords: KeywordIndex | None, ids: list[str]) -> dict[str, np.ndarray]:
    """The vectors of those of ``ids`` that exist: from the keyword index where it holds them
    (``KeywordIndex.held_vectors``), the rest read from the store."""
    held = keywords.held_vectors(ids) if keywords is not None else {}
    rest = [i for i in ids if i not in held]
    return {**held, **store.image_vectors(rest)} if rest else held


def relevance_of(context: Context, taking_part: list[Signal], scores: dict[str, Scores]) -> dict[str, float]:
    """Each id's calibrated relevance: its weighted signals' relevance, combined (``relevance.combine``)."""
    parts: dict[str, list[float]] = {i: [] for i in scores}
    for signal in taking_part:
        if context.query.weights.get(signal.name, 0.0) <= 0:
            continue
        found = signal.relevance(context, {i: scores[i].get(signal.name) for i in scores})
        for i, value in (found or {}).items():
            if i in parts:
                parts[i].append(value)
    return {i: round(combine(values), 6) for i, values in parts.items()}


def score_all(context: Context, taking_part: list[Signal], ids: list[str]) -> dict[str, Scores]:
    """Every id's score on each signal that takes part and has something to say (``Hit.scores``)."""
    scores: dict[str, Scores] = {i: {} for i in ids}
    for signal in taking_part:
        scored = signal.score(context, ids)
        if scored is not None:
            for i in ids:
                scores[i][signal.name] = rounded(scored.get(i))
    return scores


_EXECUTOR: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(4, thread_name_prefix="mmsearch-query")
    return _EXECUTOR


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
        scores[i]["rerank"] = rounded(value)
        scored[i] = 1.0 if high - low < EPSILON else (float(value) - low) / (high - low)
    return sorted(top, key=lambda i: (-scored[i], i)), scored


def hit(image: str, score: float, scores: Scores, best_caption: int | None, meta: dict, relevance: float = 0.0,
        similar: list[str] | None = None, time: float | None = None) -> Hit:
    """The public record of one ranked image."""
    captions = meta.get("captions") or []
    index = len(captions) if best_caption is None else best_caption
    return Hit(path=meta["path"], score=round(score, 6), caption=captions[index] if index < len(captions) else "",
               scores=scores, metadata={k: v for k, v in meta.items() if k not in HIDDEN_METADATA},
               relevance=relevance, similar=similar or [], time=time)
