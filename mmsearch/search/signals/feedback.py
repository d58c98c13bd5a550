"""``feedback``: lasting marks of similar past queries (``mmsearch.search.feedback.Marks.signal``). Images
marked relevant join the candidates; an unmarked image scores 0 when any candidate is marked."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Context, Scored, Signal, Weighing


class FeedbackSignal(Signal):
    name = "feedback"

    def weight(self, weighing: Weighing) -> float | None:
        return weighing.feedback_weight if weighing.text else None

    def takes_part(self, context: Context) -> bool:
        return bool(context.query.feedback)

    def find(self, context: Context) -> set[str]:
        return {i for i, value in context.query.feedback.items() if value > 0}

    def score(self, context: Context, ids: Sequence[str]) -> Scored | None:
        marks = context.query.feedback
        if not marks.keys() & set(ids):
            return None
        return {i: marks.get(i, 0.0) for i in ids}

    def relevance(self, context: Context, scores: Scored) -> dict[str, float] | None:
        """The user's own marks of similar queries, as they are."""
        return {i: min(1.0, max(0.0, value or 0.0)) for i, value in scores.items()}
