"""Search that learns from its user: examples that refine one query (Rocchio), and marks that last.

- **One round (Rocchio):** ``q' = normalise(α·q + β·mean(positive) − γ·mean(negative))`` with the
  literature's α=1, β=0.75, γ=0.15, applied in each vector space a signal uses: the image query moves
  toward the positives' image vectors, the caption query toward their caption vectors. Negatives are
  also demoted: they rank after every other candidate, so a photo marked irrelevant never comes first.
- **Lasting marks:** each holds the query text, the query vector, the image id, the sign and the time.
  They live in the index (a Chroma collection, so a ``chroma run`` server shares them between workers)
  and nowhere else. A new query looks up past marks whose query vector has cosine ≥ ``SIMILAR`` with its
  own; each lifts (or sinks) its photo by ``sign × cosine × 0.5 ** (age / HALF_LIFE)``, where the sign is
  +1 or −1 for a like or an unlike and +0.3 for opening a hit full size on the page. That sum is the
  ``feedback`` signal, fused with the others by ``mmsearch.fusion`` (weight ``feedback_weight``, 0 = off).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA, BETA, GAMMA = 1.0, 0.75, 0.15
SIMILAR = 0.8  # cosine between a new query and a marked one for the mark to count
HALF_LIFE_DAYS = 180.0
OPENED = 0.3  # strength of the weak positive mark "opened full size" on the page (a full mark is 1.0)
MARKS_LOOKED_AT = 50  # nearest past queries read per search


@dataclass(frozen=True)
class Mark:
    """One lasting mark: this photo was (not) what this query wanted."""

    query: str
    image_id: str
    relevant: bool
    time: int
    path: str = ""

    def to_dict(self) -> dict:
        return {"query": self.query, "image_id": self.image_id, "path": self.path, "relevant": self.relevant,
                "time": self.time}


def rocchio(query: np.ndarray, positive: Sequence[np.ndarray], negative: Sequence[np.ndarray]) -> np.ndarray:
    """The refined unit query vector (the query alone when there are no examples)."""
    moved = ALPHA * np.asarray(query, dtype=np.float32)
    if len(positive):
        moved = moved + BETA * np.mean(positive, axis=0)
    if len(negative):
        moved = moved - GAMMA * np.mean(negative, axis=0)
    norm = float(np.linalg.norm(moved))
    return (moved / norm if norm else moved).astype(np.float32)


def mark_id(query: str, image_id: str) -> str:
    """Record id of a mark: one per (query text, photo), so marking again replaces it."""
    return hashlib.sha1(f"{query.strip().lower()}\0{image_id}".encode("utf-8", "surrogatepass")).hexdigest()[:24]


def feedback_scores(found: list[tuple[dict, float]], now: float | None = None) -> dict[str, float]:
    """The ``feedback`` signal per image from past marks ``(metadata, cosine to this query)``."""
    now = time.time() if now is None else now
    scores: dict[str, float] = {}
    for meta, cosine in found:
        if cosine < SIMILAR:
            continue
        age_days = max(0.0, now - float(meta.get("time", now))) / 86400
        weight = cosine * 0.5 ** (age_days / HALF_LIFE_DAYS) * float(meta.get("sign", 1.0))
        image = str(meta["image_id"])
        scores[image] = scores.get(image, 0.0) + weight
    return scores
