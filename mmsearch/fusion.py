"""Fusing the image signal and the caption signal into one ranking score.

The two signals live on different scales: a text query is compared with an image vector (CLIP
cosines of ~0.2-0.35) and with caption vectors (text-text cosines, often 0.5-0.9 even for unrelated
sentences). A plain weighted sum of raw cosines would lift every captioned image above every
uncaptioned one. So each signal is min-max normalised over the candidate pool of the query, then
averaged with the configured weights over the signals a hit has; a hit without captions is ranked by
its image signal alone. Raw cosines stay in ``Hit.scores`` for thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping

Scores = Mapping[str, float | None]


def fuse(candidates: Mapping[str, Scores], weights: Mapping[str, float]) -> dict[str, float]:
    """Fused score in [0, 1] for each candidate id.

    Args:
        candidates: id -> {signal: cosine or None (signal unavailable for this id)}.
        weights: signal -> weight (signals with weight 0 are ignored).
    """
    ranges = _ranges(candidates, weights)
    fused: dict[str, float] = {}
    for cid, scores in candidates.items():
        total = weight_sum = 0.0
        for signal, (low, high) in ranges.items():
            value = scores.get(signal)
            if value is None:
                continue
            norm = 1.0 if high - low < 1e-9 else (value - low) / (high - low)
            total += weights[signal] * norm
            weight_sum += weights[signal]
        fused[cid] = total / weight_sum if weight_sum else 0.0
    return fused


def _ranges(candidates: Mapping[str, Scores], weights: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    ranges = {}
    for signal, weight in weights.items():
        values = [s[signal] for s in candidates.values() if s.get(signal) is not None]
        if weight > 0 and values:
            ranges[signal] = (min(values), max(values))  # type: ignore[type-var]
    return ranges
