"""Calibrated relevance: how sure a search is that a hit is what was asked for, on one scale for every query.

The fused ``score`` orders the hits of one query, but it is relative (the best candidate scores about 1),
so it never says "weak". ``Hit.relevance`` (0..1) says it, from how far a hit's signals stand above that
query's **background**, never from the spread of the candidates:

- **Vector signals** (``image``, ``caption``). The background is the query's score against a fixed sample
  of the library: ``SAMPLE`` image vectors and the captions of ``SAMPLE`` captioned images, taken as the
  smallest record ids (hashes of the paths, so a uniform sample, the same for every query). Its median and
  its spread (``centre_and_spread``: the largest of a robust, a plain and a tail estimate) give a
  predictive distribution of noise (``noise_share``: Student's t, the Gaussian from a few hundred
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

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..store.client import Store

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
    def sample(cls, store: Store, ids: Sequence[str], captioned: Sequence[str], use_image: bool) -> Background:
        """From the store: the ``SAMPLE`` smallest ids of ``ids`` (image vectors, when ``use_image``) and of
        ``captioned`` (their captions)."""
        import heapq

        from ..ids import split_caption_id

        # nsmallest, not sorted()[:SAMPLE]: 0.06 s against 0.81 s over a million ids, on every library change
        picked = heapq.nsmallest(SAMPLE, ids) if use_image else []
        images = store.image_vectors(picked) if picked else {}
        captions = store.caption_vectors_of(heapq.nsmallest(SAMPLE, captioned)) if captioned else {}
        return cls(_matrix(list(images.values())), _matrix(list(captions.values())), len(ids),
                   store.caption_count() if captioned else 0, tuple(images),
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
    share, out = noise_share(background), {}
    rows: dict[str, list[int]] = {}
    for row, owner in enumerate(owners):
        rows.setdefault(owner, []).append(row)
    for image, value in scores.items():
        if value is None:
            continue
        own = rows.get(image)
        if own and len(background) - len(own) >= MIN_BACKGROUND:
            measure = noise_share(np.delete(background, own))
        elif own:
            continue  # nothing left to measure against
        else:
            measure = share
        out[image] = 1.0 / (1.0 + population * measure(float(value)) / ALPHA)
    return out


def noise_share(background: np.ndarray) -> Callable[[float], float]:
    """``share(x)``: the share of the library that noise alone puts at or above ``x``: the tail of the
    background's predictive distribution, Student's t with n - 1 degrees of freedom around its median and
    spread (``centre_and_spread``), widened by sqrt(1 + 1/n). From a few hundred samples on it is the
    Gaussian tail; from a handful (a small library) it is as wide as so few scores can promise.

    An exponential tail fitted to the sample's top was measured too (``benchmarks/relevance_bench.py``): a
    sample holding a few right images (100 of 5,000 puts about 10 in it) fattened it until no right image
    was kept."""
    from scipy.special import stdtr

    count = len(background)
    centre, spread = centre_and_spread(background)
    scale = spread * math.sqrt(1.0 + 1.0 / count)

    def share(x: float) -> float:
        return float(stdtr(count - 1, -(x - centre) / scale))

    return share


def centre_and_spread(background: np.ndarray) -> tuple[float, float]:
    """The background's median, and the largest of three spreads: 1.4826 MAD (robust, but blind to a long
    tail), the standard deviation, and, from ``TAIL_FROM`` samples on, the 95th percentile's distance from
    the median over 1.645. (A hit's own records are left out of the background before, by ``tail``.)"""
    values = np.asarray(background, dtype=np.float64)
    centre = float(np.median(values))
    spreads = [MAD_SIGMA * float(np.median(np.abs(values - centre))), float(values.std()), MIN_SPREAD]
    if len(values) >= TAIL_FROM:
        spreads.append((float(np.percentile(values, TAIL_QUANTILE)) - centre) / TAIL_Z)
    return centre, max(spreads)


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
