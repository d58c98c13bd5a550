"""The best few of a score array: what the keyword and sparse signals nominate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top(ids: Sequence[str], scores: np.ndarray, n: int) -> dict[str, float]:
    """The ``n`` best ids of a score array (``scores[d]`` is ``ids[d]``'s), best first, ties in id order
    (however the index was built), with their scores (matches only)."""
    matched = np.flatnonzero(scores)
    if n <= 0 or not len(matched):
        return {}
    if len(matched) > n:
        cut = np.partition(-scores[matched], n - 1)[n - 1]
        matched = matched[-scores[matched] <= cut]  # the n best and whatever ties with the last of them
    best = sorted(matched, key=lambda d: (-scores[d], ids[d]))[:n]
    return {ids[d]: float(scores[d]) for d in best}
