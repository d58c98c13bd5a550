"""``caption``: the cosine between the query (in the caption space) and the image's best caption."""

from __future__ import annotations

from collections.abc import Sequence

from ..relevance import against, tail
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
        matches = kept.caption_nearest(vector, 2 * context.pool) if kept is not None else None
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
        missing, kept = [i for i in ids if i not in best], context.query.kept
        read = kept.captions_of(missing) if kept is not None else None  # under a filter: the keyword index's
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
