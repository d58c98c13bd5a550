"""``image``: the cosine between the query vector and the image vector (CLIP). None in the offline profile.

A video scores by its best frame: its frames are searched beside the images (``Store.query_frames``), and
ranking gives each candidate video the vector of its frame nearest to the query (``best_frames``), whose
moment becomes ``Hit.time``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..relevance import against, tail
from ..selection import Kept
from .base import Context, Scored, Signal, Weighing


class ImageSignal(Signal):
    name = "image"

    def weight(self, weighing: Weighing) -> float | None:
        return 1.0 - weighing.caption_weight if weighing.text else 1.0

    def takes_part(self, context: Context) -> bool:
        return True  # always in Hit.scores: None says the index has no image vectors

    def find(self, context: Context) -> dict[str, float]:
        if not context.use_image:
            return {}
        query, store = context.query, context.store
        near = query.kept.nearest(query.vector, context.pool) if query.kept is not None else _while_loading(context)
        if near is None:
            near = store.query_images(query.vector, context.pool, query.where, query.listed("images"))
        elif not _has_videos(context):  # found in the keyword index, which holds no video: no frame to search
            return near
        for video, score in store.query_frames(query.vector, context.pool, query.where, query.listed("frames")).items():
            near[video] = max(score, near.get(video, -1.0))
        return near

    def score(self, context: Context, ids: Sequence[str]) -> Scored:
        if not context.use_image:
            return dict.fromkeys(ids)
        near, vector = context.found.get(self.name) or {}, context.query.vector
        return {i: near[i] if i in near and i not in context.moments else float(context.vectors[i] @ vector)
                for i in ids}


def _while_loading(context: Context) -> dict[str, float] | None:
    """With no filter, while Chroma loads the images' vector index (``Store.warming``: a new process's first
    search), every image scored exactly from the keyword index's own vectors (``KeywordIndex.vectors``), so that
    the search does not wait for the load. None when the index is loaded, or the keyword index lacks a vector
    (then Chroma is asked), also once the load ends midway: where the keyword index's vectors are read from the
    disk (no page cache), the scan is slower than the load, and a search waits no longer than it did for it."""
    index = context.keywords
    if index is None or context.query.where or not context.store.warming("images"):
        return None
    store = context.store
    return Kept(index, np.flatnonzero(index.alive)).nearest(context.query.vector, context.pool, most=float("inf"),
                                                            going_on=lambda: store.warming("images"))


def _has_videos(context: Context) -> bool:
    """Whether the keyword index holds a video (a document with frame records, live or not); True without one."""
    return context.keywords is None or context.keywords.has_videos


def best_frames(context: Context) -> None:
    """Give each candidate video (``context.candidates``) the vector of its frame nearest to the query, in
    ``context.vectors``, and record that frame's time in ``context.moments``."""
    if not context.use_image or not context.candidates or not _has_videos(context):
        return
    vector = np.asarray(context.query.vector, dtype=np.float32)
    for video, (times, vectors) in context.store.frame_sets(context.candidates).items():
        best = int(np.argmax(vectors @ vector))
        context.vectors[video] = vectors[best]
        context.moments[video] = float(times[best])

    def relevance(self, context: Context, scores: Scored) -> dict[str, float] | None:
        if not context.use_image:
            return None
        background = context.background
        return tail(scores, against(background.images, context.query.vector), background.image_count,
                    background.image_owners)
