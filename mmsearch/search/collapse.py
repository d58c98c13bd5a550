"""Copies of one photo in a result list fold into their best-ranked member (``Hit.similar``), by the
duplicate rule of ``mmsearch.likeness``: four copies of a photo are one hit with "+3 similar"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..likeness import Look, same_photo


def collapse(ranked: Sequence[str], metadata: Mapping[str, dict], vectors: Mapping[str, np.ndarray],
             use_image: bool) -> list[tuple[str, list[str]]]:
    """``(id, ids of its copies)`` in ranked order: each id joins the first kept one it is a copy of (never
    a chain: it must match that hit itself). ``use_image``: the vectors are image vectors (the rule's cosine)."""
    kept: list[tuple[str, Look, list[str]]] = []
    for image in ranked:
        look = Look.of(metadata[image])
        for head, head_look, copies in kept:
            if same_photo(head_look, look, _cosine(vectors, head, image) if use_image else None):
                copies.append(image)
                break
        else:
            kept.append((image, look, []))
    return [(head, copies) for head, _, copies in kept]


def _cosine(vectors: Mapping[str, np.ndarray], a: str, b: str) -> float | None:
    va, vb = vectors.get(a), vectors.get(b)
    return None if va is None or vb is None else float(va @ vb)
