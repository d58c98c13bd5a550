"""The best few of a score array: what the keyword and sparse signals nominate."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

FEW_TIES = 2048  # more documents than this tied at the cut are narrowed down by their id keys first
PEELS = 4  # distinct top values tried before partitioning


def top(ids: Sequence[str], scores: np.ndarray, n: int, keys: np.ndarray | None = None) -> dict[str, float]:
    """The ``n`` best ids of a score array (``scores[d]`` is ``ids[d]``'s), best first, ties in id order
    (however the index was built), with their scores (matches only).

    ``keys`` (``mmsearch.packed.prefix_keys`` of the ids) narrow down ties in numpy: a word every file name
    holds ("img", "jpg") ties a million documents, which sorting by id took 3.2 s.
    """
    if n <= 0:
        return {}
    return _ranked(best_documents(scores, np.flatnonzero(scores), n, keys), scores, ids.__getitem__, n)


def top_of(ids: Sequence[str], rows: np.ndarray, scores: np.ndarray, n: int,
           keys: np.ndarray | None = None) -> dict[str, float]:
    """``top`` of the documents ``rows`` (ascending), scoring ``scores``; every other document scores 0."""
    if n <= 0:
        return {}
    picked = best_documents(scores, np.flatnonzero(scores), n, None if keys is None else keys[rows])
    return _ranked(picked, scores, lambda p: ids[rows[p]], n)


def _ranked(picked: np.ndarray, scores: np.ndarray, id_of: Callable[[int], str], n: int) -> dict[str, float]:
    """The ``n`` best of the ``picked`` positions by score, ties by id (``id_of`` a position), with their scores."""
    best = sorted(picked.tolist(), key=lambda p: (-scores[p], id_of(p)))[:n]
    return {id_of(p): float(scores[p]) for p in best}


def best_documents(scores: np.ndarray, matched: np.ndarray, n: int, keys: np.ndarray | None = None) -> np.ndarray:
    """Of the documents ``matched``, the ``n`` best by score and whatever ties with the last of them; with
    ``keys``, many tied ones are first narrowed to the smallest keys (and all sharing the last such key), so
    the ``n`` best by (score, id) are among them."""
    if len(matched) <= n:
        return matched
    values = scores[matched]
    matched = matched[values >= _nth_largest(values, n)]
    if keys is not None and len(matched) > n + FEW_TIES:
        matched = _first_tied(matched, scores, keys, n)
    return matched


def _nth_largest(values: np.ndarray, n: int) -> float:
    """The ``n``-th largest of more than ``n`` values. numpy's partition crawls through many equal values
    (100 ms for a million scores of 4 values, a word in every file name), so the largest values are peeled
    off first while a few of them hold ``n``."""
    ceiling, held = np.inf, 0
    for _ in range(PEELS):
        level = values[values < ceiling].max()
        held += int(np.count_nonzero(values == level))
        if held >= n:
            return float(level)
        ceiling = level
    return float(-np.partition(-values, n - 1)[n - 1])


def _first_tied(matched: np.ndarray, scores: np.ndarray, keys: np.ndarray, n: int) -> np.ndarray:
    """Of ``matched`` (the ``n`` best and all tied with the last), those better than the tie and the tied
    ones whose keys are among the smallest needed (and all sharing the last such key: their ids decide)."""
    values = scores[matched]
    last = values.min()
    better, tied = matched[values > last], matched[values == last]
    tied_keys = keys[tied]
    kth = np.partition(tied_keys, n - len(better) - 1)[n - len(better) - 1]
    return np.concatenate([better, tied[tied_keys <= kth]])
