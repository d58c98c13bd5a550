"""Query planning: from what a user asked (text, image, examples, filters) to a ``Query`` ready to rank.

``SearchEngine.plan`` and so ``search``, ``similar`` and ``mmsearch eval`` all plan here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..encoders import l2_normalize
from ..errors import QueryError
from .feedback import Examples, examples, rocchio
from .filters import build_where, check_near, check_text
from .fusion import query_weights
from .query import Query
from .selection import Kept, kept_rows

if TYPE_CHECKING:
    from PIL import Image

    from ..session import IndexSession

MAX_K = 10_000  # more hits than any page shows; larger k is refused with a message, not an OverflowError


def check_k(k: Any) -> int:
    """``k`` as a number of hits between 0 and ``MAX_K``.

    Raises:
        QueryError: k is not a whole number in that range.
    """
    try:
        value = int(k)
    except (TypeError, ValueError, OverflowError):
        raise QueryError(f"k must be a whole number, got {k!r}") from None
    if not 0 <= value <= MAX_K:
        raise QueryError(f"k must be between 0 and {MAX_K}, got {value}")
    return value


def plan(session: IndexSession, query: str | None = None, *, image: str | Path | Image.Image | None = None,
         k: int = 10, text_weight: float = 0.5, min_score: float = 0.0, exclude: str | None = None,
         vector: np.ndarray | None = None, positive: Sequence[str | Path] = (), negative: Sequence[str | Path] = (),
         min_relevance: float | None = None, collapse: bool = False, near: Any = None, excluded: Sequence[str] = (),
         sort: str = "best", **filters: Any) -> Query | None:
    """The ranked query a search runs (its vector encoded now); None when nothing can match. ``excluded``
    words are subtracted from a text query's vector and drop the hits whose texts hold them; ``near`` keeps
    the hits inside a circle; ``sort`` orders them (``SORTS``)."""
    k = check_k(k)
    check_types(query, text_weight, min_score, positive, negative)
    store = session.store  # first: an index built by other models is refused before any model loads
    session.check_caption_space()
    text = check_text((query or "").strip())
    if vector is None and not text and image is None and not positive:
        raise QueryError("give a text query, a query image, or both")
    if not store.ready or k == 0:
        if vector is None and (text or image is not None):
            query_vector(session, query, image, text_weight)  # a bad query is still an error on an empty index
        return None
    liked, unliked = (examples(store, positive, session.has_image_vectors),
                      examples(store, negative, session.has_image_vectors))
    if vector is None:
        vector = query_vector(session, query, image, text_weight) if text or image is not None else liked.mean()
        if text and excluded:  # rclip's arithmetic: "a dog -grass" is "a dog" minus "grass"
            unwanted = np.mean([session.query_vector(word)[0] for word in excluded], axis=0)
            vector = l2_normalize(vector - unwanted)[0]
    refined = rocchio(vector, liked.image, unliked.image)
    captions, lexical = caption_query(session, vector, text, liked, unliked)
    config = session.config
    weights = query_weights(config.caption_weight, config.keyword_weight, bool(text), config.feedback_weight,
                            config.ocr_weight if session.has_ocr_texts() else 0.0, config.sparse_weight if lexical else 0.0)
    marks = session.marks.signal(vector) if text and config.feedback_weight > 0 else {}
    near = check_near(near)
    where, kept = selected(session, build_where(roots=store.roots(), near=near, **filters))
    return Query(refined, text, k, weights, where, min_score, exclude,
                 captions, frozenset(unliked.ids), marks, shared_captions=not session.has_caption_space, lexical=lexical,
                 min_relevance=check_relevance(min_relevance), collapse=collapse, near=near,
                 excluded=tuple(check_text(w, "excluded word") for w in excluded), sort=check_sort(sort),
                 kept=kept)


def selected(session: IndexSession, where: dict | None) -> tuple[dict | None, Kept | None]:
    """The filter, and what it keeps where the keyword index can say (``mmsearch.search.selection``); no
    filter at all when it keeps every image (a library's root folder: Chroma's graph search unfiltered took
    19 ms at a million, among a million listed ids 1.1 s)."""
    if not where:
        return where, None
    index = session.keyword_index()
    rows = kept_rows(index, where)
    if rows is None:
        return where, None
    if len(rows) == len(index) > 0:
        return None, None
    return where, Kept(index, rows)


SORTS = ("best", "date", "date-asc")  # relevance; newest first; oldest first


def check_sort(sort: Any) -> str:
    """``sort`` as one of ``SORTS``.

    Raises:
        QueryError: it is not one of them.
    """
    if sort not in SORTS:
        raise QueryError(f"sort is one of {', '.join(SORTS)}, got {sort!r}")
    return str(sort)


def check_types(query: Any, text_weight: Any, min_score: Any, positive: Any, negative: Any) -> None:
    """What ``plan`` takes, by type, so a wrong one is a ``QueryError`` sentence, not a TypeError deep inside.

    Raises:
        QueryError: the query is not text, a weight or threshold is not a number in 0..1, or an example is
            not a path.
    """
    if query is not None and not isinstance(query, str):
        raise QueryError(f"the query is text, got {query!r}")
    for name, value in (("text_weight", text_weight), ("min_score", min_score)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise QueryError(f"{name} must be a number between 0 and 1, got {value!r}")
    for name, paths in (("positive", positive), ("negative", negative)):
        if not isinstance(paths, (list, tuple)) or not all(isinstance(p, (str, os.PathLike)) for p in paths):
            raise QueryError(f"{name} is a list of indexed image paths, got {paths!r}")


def check_relevance(value: Any) -> float | None:
    """A relevance floor between 0 and 1, or None.

    Raises:
        QueryError: it is not a number in that range.
    """
    if value is None:
        return None
    try:
        floor = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"min_relevance must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= floor <= 1.0:
        raise QueryError(f"min_relevance must be between 0 and 1, got {floor}")
    return floor


def query_vector(session: IndexSession, query: str | None, image: str | Path | Image.Image | None = None,
                 text_weight: float = 0.5) -> np.ndarray:
    """The unit query vector for a text, an image, or their weighted combination."""
    text = check_text((query or "").strip())
    if not text and image is None:
        raise QueryError("give a text query, a query image, or both")
    parts: list[tuple[float, np.ndarray]] = []
    if text:
        parts.append((text_weight if image is not None else 1.0, session.query_vector(text)[0]))
    if image is not None:
        encoder = session.encoders.image
        if encoder is None:
            raise QueryError("image queries need an image encoder; this index uses the caption-only offline "
                             "profile (set --clip-pretrained to a local checkpoint to enable image search)")
        from ..media.files import open_rgb

        rgb = open_rgb(image, getattr(encoder, "input_size", None))
        parts.append((1.0 - text_weight if text else 1.0, encoder.encode_images([rgb])[0]))
    return l2_normalize(sum(w * v for w, v in parts))[0]


def caption_query(session: IndexSession, vector: np.ndarray, text: str, liked: Examples, unliked: Examples
                  ) -> tuple[np.ndarray | None, dict[int, float]]:
    """The query in the caption space, refined by the examples' caption vectors: the query vector itself
    when captions share its space; else the text embedded by the caption model (None without text or
    captioned examples: then no caption signal). And the text's lexical weights when the caption model
    gives them (BGE-M3: the sparse signal), from the same forward pass."""
    if not session.has_caption_space:
        return rocchio(vector, liked.caption, unliked.caption), {}
    lexical: dict[int, float] = {}
    if text:
        base, lexical = session.query_vector(text, captions=True)
    elif liked.caption:
        base = l2_normalize(np.mean(liked.caption, axis=0))[0]
    else:
        return None, {}
    return rocchio(base, liked.caption, unliked.caption), lexical
