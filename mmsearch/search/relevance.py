"""Calibrated relevance: how sure a search is that a hit is what was asked for, on one scale for every query.

The fused ``score`` orders the hits of one query, but it is relative (the best candidate scores about 1),
so it never says "weak". ``Hit.relevance`` (0..1) says it, from how far a hit's signals stand above that
query's **background**, never from the spread of the candidates:

- **Vector signals** (``image``, ``caption``). The background is the query's score against a fixed sample
  of the library: ``SAMPLE`` image vectors and the captions of ``SAMPLE`` captioned images, taken as the
  smallest record ids (hashes of the paths, so a uniform sample, the same for every query). Its median and
  its spread (``centres_and_spreads``: the largest of a robust, a plain and a tail estimate) give a
  predictive distribution of noise (``noise_shares``: Student's t, the Gaussian from a few hundred
  samples on). Its tail at a score, times the records that have the signal, is how many records of the
  library noise alone would score that high: ``expected``. A hit's own records are left out of the
  background it is measured against. Relevance is ``1 / (1 + expected / ALPHA)``: 0.5 where noise would put ``ALPHA`` records
  there, near 1 far above it. So "xyzzyqwerty", whose best hit is only the largest of the library's
  noise, gets a low relevance however the scores spread, and a bigger library asks a hit to stand higher.
- **Lexical signals** (``keyword``: BM25 over captions and names; ``ocr``: the text read in photos). The
  share of the query the hit contains, weighted by each term's IDF (a query term that the library does
  not hold counts at the largest IDF), squared: a hit holding half of "red car" is not "red car". Stop
  words are no terms (``mmsearch.search.stopwords``), so "a of" matches nothing.
- **feedback**: the user's own marks, as they are (0..1).
- A file-name match ("IMG_0042.jpg") is 1.0; an image marked irrelevant is 0.

A hit's relevance combines its signals' (those with a weight in the query) as independent evidence:
``1 - prod(1 - r)``. The sparse and rerank signals order hits but add no relevance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..store.client import Store
    from .keywords import KeywordIndex

SAMPLE = 512  # records of the background per vector signal
ALPHA = 0.05  # noise records expected at or above a score whose relevance is 0.5
MAD_SIGMA = 1.4826  # MAD to standard deviation, for normal data
TAIL_QUANTILE, TAIL_Z, TAIL_FROM = 95, 1.645, 100  # the upper tail's spread, from this many samples on
MIN_SPREAD = 0.01  # cosine units: a background spread below this is taken as this
MIN_BACKGROUND = 3  # fewer background scores say nothing: the signal adds no relevance


@dataclass(frozen=True)
class Background:
    """The fixed sample of one library that vector signals are calibrated against."""

    images: np.ndarray  # (n, dim) image vectors of the sampled images (empty without an image model)
    captions: np.ndarray  # (m, dim) every caption vector of the sampled captioned images
    image_count: int  # records with the image signal (the library's images)
    caption_count: int  # records with the caption signal (the library's captions)
    image_owners: tuple[str, ...] = ()  # the image id of each row of ``images``
    caption_owners: tuple[str, ...] = ()  # the image id of each row of ``captions``

    @classmethod
    def sample(cls, store: Store, ids: Sequence[str], captioned: Sequence[str], use_image: bool,
               index: KeywordIndex | None = None) -> Background:
        """From the store: the ``SAMPLE`` smallest ids of ``ids`` (image vectors, when ``use_image``) and of
        ``captioned`` (their captions). The vectors come from ``index`` where it holds them all
        (``KeywordIndex.vectors``, ``caption_vectors``), else from the store."""
        import heapq

        from ..ids import caption_id, split_caption_id

        # nsmallest, not sorted()[:SAMPLE]: 0.06 s against 0.81 s over a million ids, on every library change
        picked = heapq.nsmallest(SAMPLE, ids) if use_image else []
        images = (index.vectors_of(picked) if index is not None else None) or {}
        if picked and not images:
            images = store.image_vectors(picked)
        with_captions = heapq.nsmallest(SAMPLE, captioned) if captioned else []
        held = index.captions_of(with_captions) if index is not None and with_captions else None
        captions = {caption_id(i, n): v for i, rows in held.items() for n, v in rows} if held is not None else \
            store.caption_vectors_of(with_captions) if with_captions else {}
        count = (index.caption_count() if index is not None else store.caption_count()) if captioned else 0
        return cls(_matrix(list(images.values())), _matrix(list(captions.values())), len(ids), count, tuple(images),
                   tuple(split_caption_id(c)[0] for c in captions))

    @classmethod
    def empty(cls) -> Background:
        """No background: vector signals add no relevance."""
        return cls(_matrix([]), _matrix([]), 0, 0)


def _matrix(vectors: list[np.ndarray]) -> np.ndarray:
    return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)


def against(background: np.ndarray, query: np.ndarray | None) -> np.ndarray:
    """The query's scores over a background matrix (empty when either is missing or they do not fit)."""
    if query is None or not background.size or background.shape[1] != query.shape[0]:
        return np.zeros(0, np.float32)
    return background @ query


def tail(scores: Mapping[str, float | None], background: np.ndarray, population: int,
         owners: Sequence[str] = ()) -> dict[str, float] | None:
    """Relevance of each score above a background of the same signal (module docstring); None when the
    background is too small to say anything. ``owners`` (the image id of each background score) leaves a
    hit's own records out of the background it is measured against: in a small library the sample is the
    library, and a match must not raise the noise it stands above."""
    if len(background) < MIN_BACKGROUND or population <= 0:
        return None
    rows: dict[str, list[int]] = {}
    for row, owner in enumerate(owners):
        rows.setdefault(owner, []).append(row)
    valued = {i: float(v) for i, v in scores.items() if v is not None}
    ids = [i for i in valued if len(background) - len(rows.get(i, ())) >= MIN_BACKGROUND]  # else nothing to measure against
    shares = noise_shares(background, [rows.get(i, []) for i in ids], np.array([valued[i] for i in ids]))
    return {i: 1.0 / (1.0 + population * float(share) / ALPHA) for i, share in zip(ids, shares)}


def noise_shares(background: np.ndarray, left_out: Sequence[Sequence[int]], values: np.ndarray) -> np.ndarray:
    """For each value, the share of the library that noise alone puts at or above it: the tail of the
    predictive distribution of ``background`` without that value's ``left_out`` rows. That is Student's t
    with n - 1 degrees of freedom around the sample's median and spread (``centres_and_spreads``), widened
    by sqrt(1 + 1/n). From a few hundred samples on it is the Gaussian tail; from a handful (a small library)
    it is as wide as so few scores can promise. Every sample is measured at once (a query's candidates in a
    small library each leave their own records out: one at a time took 8 ms a query at 5,000 photos).

    An exponential tail fitted to the sample's top was measured too (``benchmarks/relevance_bench.py``): a
    sample holding a few right images (100 of 5,000 puts about 10 in it) fattened it until no right image
    was kept."""
    from scipy.special import stdtr

    kinds: dict[tuple[int, ...], int] = {}  # the rows a value leaves out -> its sample
    which = np.array([kinds.setdefault(tuple(rows), len(kinds)) for rows in left_out], dtype=np.int64)
    samples = np.tile(np.asarray(background, dtype=np.float64), (len(kinds), 1))
    for number, rows in enumerate(kinds):
        samples[number, list(rows)] = np.inf  # left out: sorted after every score
    counts = len(background) - np.array([len(rows) for rows in kinds], dtype=np.int64)
    centres, spreads = centres_and_spreads(samples, counts)
    scales = spreads * np.sqrt(1.0 + 1.0 / counts)
    return stdtr(counts[which] - 1, -(values - centres[which]) / scales[which])


def centres_and_spreads(samples: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's median (a row's first ``counts`` scores once sorted; the rest are ``inf``), and the
    largest of three spreads: 1.4826 MAD (robust, but blind to a long tail), the standard deviation, and,
    from ``TAIL_FROM`` samples on, the 95th percentile's distance from the median over 1.645. (A hit's own
    records are left out of the background before, by ``tail``.)"""
    ordered = np.sort(samples, axis=1)
    centres = _quantiles(ordered, counts, 0.5)
    deviations = np.sort(np.abs(ordered - centres[:, None]), axis=1)
    kept = np.isfinite(ordered)
    means = np.where(kept, ordered, 0.0).sum(axis=1) / counts
    stds = np.sqrt(np.where(kept, (ordered - means[:, None]) ** 2, 0.0).sum(axis=1) / counts)
    spreads = np.maximum.reduce([MAD_SIGMA * _quantiles(deviations, counts, 0.5), stds,
                                 np.full(len(counts), MIN_SPREAD)])
    tails = np.where(counts >= TAIL_FROM, (_quantiles(ordered, counts, TAIL_QUANTILE / 100) - centres) / TAIL_Z, 0.0)
    return centres, np.maximum(spreads, tails)


def _quantiles(ordered: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of each row's first ``counts`` values (sorted), interpolated as numpy's default."""
    position = q * (counts - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, counts - 1)
    rows = np.arange(len(ordered))
    return ordered[rows, low] + (ordered[rows, high] - ordered[rows, low]) * (position - low)


def lexical(coverage: float) -> float:
    """Relevance from the IDF-weighted share of the query a hit holds (0..1)."""
    return min(1.0, max(0.0, coverage)) ** 2


def combine(parts: Iterable[float | None]) -> float:
    """One hit's relevance from its signals', as independent evidence: ``1 - prod(1 - r)``."""
    doubt = 1.0
    for part in parts:
        if part is not None:
            doubt *= 1.0 - min(1.0, max(0.0, part))
    return 1.0 - doubt
