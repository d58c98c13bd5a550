"""``caption``: the cosine between the query (in the caption space) and the image's best caption."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...store import CaptionMatch
from ..relevance import against, tail
from ..selection import Kept
from .base import Context, Scored, Signal, Weighing


class CaptionSignal(Signal):
    name = "caption"

    def weight(self, weighing: Weighing) -> float | None:
        return weighing.caption_weight if weighing.text else None

    def takes_part(self, context: Context) -> bool:
        return True  # always in Hit.scores: None for an image without captions

    def find(self, context: Context) -> dict[str, tuple[float, int]]:
        """Nearest captions (twice the pool: an image may have several): image id -> (score, caption number)."""
        vector, best, kept = context.query.captions_vector, {}, context.query.kept
        if vector is None:
            return {}
        matches = kept.caption_nearest(vector, 2 * context.pool) if kept is not None else _while_loading(context, vector)
        if matches is None:
            matches = context.store.query_captions(vector, 2 * context.pool, context.query.where,
                                                   context.query.listed("captions"))
        for match in matches:
            if match.image_id not in best or match.score > best[match.image_id][0]:
                best[match.image_id] = (match.score, match.index)
        return best

    def score(self, context: Context, ids: Sequence[str]) -> Scored:
        vector = context.query.captions_vector
        if vector is None:
            return dict.fromkeys(ids)
        best = dict(context.found.get(self.name) or {})
        missing, kept, keywords = [i for i in ids if i not in best], context.query.kept, context.keywords
        # the keyword index's (under a filter, the kept ones'); Chroma's where it lacks one
        read = kept.captions_of(missing) if kept is not None else keywords.captions_of(missing) if keywords is not None \
            else None
        for image, captions in (context.reads.captions_of(missing) if read is None else read).items():  # type: ignore[union-attr]
            for index, caption in captions:
                value = float(caption @ vector)
                if image not in best or value > best[image][0]:
                    best[image] = (value, index)
        context.best_caption.update({i: n for i, (_, n) in best.items()})
        return {i: best[i][0] if i in best else None for i in ids}

    def relevance(self, context: Context, scores: Scored) -> dict[str, float] | None:
        """Against every caption of the sample: an image scores its best caption, so the chance that noise
        reaches a score somewhere is counted over all the library's captions."""
        background = context.background
        return tail(scores, against(background.captions, context.query.captions_vector), background.caption_count,
                    background.caption_owners)


def _while_loading(context: Context, vector: np.ndarray) -> list[CaptionMatch] | None:
    """With no filter, while Chroma loads the captions' vector index (``Store.warming``: a new process's first
    search), every caption scored exactly from the keyword index's own vectors, so that the search does not wait
    for the load: 300,000 captions read and scored in about 0.1 s, where the load takes about 1 s. None when
    the index is loaded, or the keyword index lacks a caption's vector (then Chroma is asked), also once the load
    ends midway (as the images', ``image._while_loading``)."""
    index = context.keywords
    if index is None or context.query.where or not context.store.warming("captions"):
        return None
    store = context.store
    return Kept(index, np.flatnonzero(index.alive)).caption_nearest(vector, 2 * context.pool, most=float("inf"),
                                                                    going_on=lambda: store.warming("captions"))
