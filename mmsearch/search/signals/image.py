"""``image``: the cosine between the query vector and the image vector (CLIP). None in the offline profile."""

from __future__ import annotations

from collections.abc import Sequence

from ..relevance import against, tail
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
        return context.store.query_images(context.query.vector, context.pool, context.query.where)

    def score(self, context: Context, ids: Sequence[str]) -> Scored:
        if not context.use_image:
            return dict.fromkeys(ids)
        near, vector = context.found.get(self.name) or {}, context.query.vector
        return {i: near[i] if i in near else float(context.vectors[i] @ vector) for i in ids}

    def relevance(self, context: Context, scores: Scored) -> dict[str, float] | None:
        if not context.use_image:
            return None
        background = context.background
        return tail(scores, against(background.images, context.query.vector), background.image_count,
                    background.image_owners)
