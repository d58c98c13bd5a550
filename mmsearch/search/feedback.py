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
  ``feedback`` signal, fused with the others by ``mmsearch.search.fusion`` (weight ``feedback_weight``, 0 = off).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import QueryError, first_line
from ..ids import image_id_of, mark_id, split_caption_id
from .filters import check_text

if TYPE_CHECKING:
    from ..session import IndexSession
    from ..store.client import Store


logger = logging.getLogger(__name__)
ALPHA, BETA, GAMMA = 1.0, 0.75, 0.15
SIMILAR = 0.8  # cosine between a new query and a marked one for the mark to count
HALF_LIFE_DAYS = 180.0
OPENED = 0.3  # strength of the weak positive mark "opened full size" on the page (a full mark is 1.0)
MARKS_LOOKED_AT = 50  # nearest past queries read per search
MAX_QUERY_CHARS = 1000  # a mark's query (a 1 MB "query" was accepted before)
MAX_MARKS_PER_QUERY = 200  # more than two pages of 100 hits: a client marking everything is refused


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


@dataclass
class Examples:
    """Liked or unliked images by their stored vectors: image vectors (when the index has them) and, per
    image with captions, the mean of its caption vectors."""

    ids: list[str] = field(default_factory=list)
    image: list[np.ndarray] = field(default_factory=list)
    caption: list[np.ndarray] = field(default_factory=list)

    def mean(self) -> np.ndarray:
        """A query made of the examples alone (no text, no image)."""
        from ..encoders import l2_normalize

        vectors = self.image or self.caption
        if not vectors:
            raise QueryError("give a text query, a query image, or positive examples")
        return l2_normalize(np.mean(vectors, axis=0))[0]


def examples(store: Store, paths: Sequence[str | Path], use_image: bool) -> Examples:
    """The stored vectors of example images; nothing is encoded.

    Raises:
        QueryError: an example is not an indexed image.
    """
    paths = list(dict.fromkeys(str(p) for p in paths))  # one example counts once
    ids = [image_id_of(p) for p in paths]
    if not ids:
        return Examples()
    images = store.image_vectors(ids)
    missing = [str(p) for p, i in zip(paths, ids) if i not in images]
    if missing:
        raise QueryError(f"{missing[0]} is not in the index; examples must be indexed images")
    by_image: dict[str, list[np.ndarray]] = {}
    for cid, vec in store.caption_vectors_of(ids).items():
        by_image.setdefault(split_caption_id(cid)[0], []).append(vec)
    return Examples(ids, [images[i] for i in ids] if use_image else [], [np.mean(v, axis=0) for v in by_image.values()])


class Marks:
    """The lasting marks of one index: record, list, forget, and the ``feedback`` signal of a query.

    Args:
        store: the opened index.
        encode: a query text to its vector (the text model's).
        lock: called before writing (the embedded database's writer lock).
    """

    def __init__(self, store: Store, encode: Callable[[str], np.ndarray], lock: Callable[[], None]):
        from ..store.client import FeedbackStore

        self.records = FeedbackStore(store)
        self.encode, self.lock = encode, lock
        self.warned = False

    def record(self, query: str, image: str, path: str, relevant: bool, strength: float = 1.0) -> Mark:
        """Store a mark (replacing the one of the same query and photo).

        Raises:
            QueryError: the query already has ``MAX_MARKS_PER_QUERY`` marks.
        """
        self.lock()
        if not self.records.has(mark_id(query, image)) and self.records.count({"query": query}) >= MAX_MARKS_PER_QUERY:
            raise QueryError(f"the query {query[:40]!r} has {MAX_MARKS_PER_QUERY} marks, the most one query keeps; "
                             "forget some first (mmsearch feedback clear --query ...)")
        mark = Mark(query, image, relevant, int(time.time()), path)
        self.records.add(mark_id(query, image), self.encode(query),
                         {"query": query, "image_id": image, "path": path, "sign": float(strength if relevant else -strength),
                          "time": mark.time})
        return mark

    def signal(self, vector: np.ndarray) -> dict[str, float]:
        """The ``feedback`` signal for a query vector. Marks that cannot be read are left out with one
        warning line, and search goes on without them."""
        try:
            return feedback_scores(self.records.near(vector, MARKS_LOOKED_AT))
        except Exception as exc:  # never fail a search because of the marks
            if not self.warned:
                self.warned = True
                logger.warning("the feedback marks cannot be read (%s); searching without them", first_line(exc))
            return {}

    def has(self, query: str, image: str) -> bool:
        """Whether this query has a mark on this photo."""
        return self.records.has(mark_id(query.strip(), image))

    def all(self) -> list[Mark]:
        """Every mark, oldest first."""
        marks = [Mark(str(m["query"]), str(m["image_id"]), float(m["sign"]) > 0, int(m["time"]), str(m.get("path", "")))
                 for m in self.records.all()]
        return sorted(marks, key=lambda m: (m.time, m.query))

    def forget(self, image: str | None = None, query: str | None = None) -> int:
        """Remove the marks of a photo, of a query, of both, or (neither given) all; returns how many."""
        clauses = [c for c in ({"image_id": image} if image else None, {"query": query.strip()} if query else None) if c]
        where = None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}
        self.lock()
        return self.records.delete(where)


def mark(session: IndexSession, query: str, path: str | Path, relevant: bool, strength: float = 1.0) -> Mark:
    """Record a lasting mark (``SearchEngine.feedback`` documents it).

    Raises:
        QueryError: ``path`` is not indexed, or the query is empty.
    """
    if not isinstance(query, str) or not isinstance(relevant, bool):
        raise QueryError("a mark takes a query (text) and whether the photo is relevant (True or False)")
    text = check_text(query.strip())
    if not text:
        raise QueryError("a mark needs the query it answers")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"a mark's query is at most {MAX_QUERY_CHARS} characters, this one has {len(text):,}")
    if not isinstance(strength, (int, float)) or not 0.0 < float(strength) <= 1.0:  # NaN fails both comparisons
        raise QueryError(f"a mark's strength is a number above 0 and at most 1, got {strength!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise QueryError(f"a mark names an indexed photo by its path, got {path!r}")
    path = os.path.abspath(os.path.expanduser(str(path)))
    own = image_id_of(path)
    store = session.store
    if not store.ready or own not in store.image_vectors([own]):
        raise QueryError(f"{path} is not in the index")
    return session.marks.record(text, own, path, relevant, strength)
