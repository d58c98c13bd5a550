"""The ranking rules, in one place: which signals a query uses and with what weight, how each signal
is normalised, and what a hit that lacks a signal gets. ``mmsearch.search.ranking`` (what ``engine.search``
serves) and ``mmsearch eval`` (which measures exactly that) both call this module.

The signals live on different scales: a text query is compared with an image vector (CLIP cosines of
~0.2-0.35) and with caption vectors (text-text cosines, often 0.5-0.9 even for unrelated sentences).
So each signal is min-max normalised over the query's candidate pool, then averaged with the weights.

A hit that lacks a signal (an uncaptioned photo has no caption signal) needs a value for it. The
rules compared by ``benchmarks/fusion_bench.py`` (table in the README):

- ``shrink`` (default): halfway between the hit's own evidence (the weighted mean of the signals it
  has) and the pool's mean of the missing signal. One strong signal counts, but less than two: an
  uncaptioned photo with the best image score ranks high without beating, by that alone, a captioned
  photo strong on both. Best served R@1 overall and balanced over captioned/uncaptioned targets at
  every image-signal quality but the near-random one, where it is second to ``mean``.
- ``mean``: the pool's mean normalised value of that signal: no evidence counts as average evidence.
- ``low``: the pool's lowest value (normalised 0): no evidence counts as the worst evidence.
- ``skip``: the signal is left out of the hit's average (the rule before schema 2): the one best image
  score among uncaptioned photos fuses to 1.0 and beats photos strong on both signals.
- ``rrf``: reciprocal rank fusion, 1 / (60 + rank) per signal, a missing signal ranks last.

Additive signals (``Signal.additive``: ``ocr``) are the exception to both: ``ocr`` (the share of the query
found in the text read in a photo, or half its text's cosine to the query, if higher) is already on a calibrated 0..1 scale. It is
added, times its weight, to the hit's fused score of the other signals, and the scores are then scaled so
that the best is 1. A photo without text gets nothing added, so the order of everything else is exactly
what it would be without OCR; a photo showing every word of the query gains its full weight. (Averaged
in with 0 for photos without text, it diluted every other signal: "help" on /usr/share/icons ranked
"Address Book" icons above the help icons that the file-name keyword signal found.)
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import FUSION_RULES as RULES
from .signals import Weighing
from .signals import additive as registered_additive
from .signals import weights as signal_weights

Scores = Mapping[str, float | None]

EPSILON = 1e-9  # a signal whose pool range is narrower than this is constant: every candidate gets 1.0
DEFAULT_RULE = "shrink"
RRF_K = 60
POOL_MIN, POOL_PER_HIT = 30, 3  # candidates fused per query: max(3k, 30)


def pool_size(k: int) -> int:
    """How many candidates a query for ``k`` hits fuses (and a reranker reads)."""
    return max(POOL_PER_HIT * k, POOL_MIN)


def query_weights(caption_weight: float, keyword_weight: float, text: bool, feedback_weight: float = 0.0,
                  ocr_weight: float = 0.0, sparse_weight: float = 0.0) -> dict[str, float]:
    """Signal weights of a query, each given by its signal (``mmsearch.search.signals``). Image-only queries
    rank by pixels alone: a near-duplicate must not lose to a better caption match. ``feedback`` (lasting
    marks of similar past queries), ``ocr`` (text read in photos, when the index has any) and ``sparse``
    (BGE-M3 lexical weights, when the caption model gives them) join text queries."""
    return signal_weights(Weighing(text, caption_weight, keyword_weight, feedback_weight, ocr_weight, sparse_weight))


def fuse(candidates: Mapping[str, Scores], weights: Mapping[str, float], rule: str = DEFAULT_RULE,
         additive: frozenset[str] | None = None) -> dict[str, float]:
    """Fused score in [0, 1] for each candidate id; the best candidate of a query scores (about) 1.

    Args:
        candidates: id -> {signal: raw score, or None when the signal is unavailable for this id}.
        weights: signal -> weight (signals with weight 0, or that no candidate has, are ignored).
        rule: what a candidate lacking a signal gets (see the module docstring).
        additive: signals added rather than averaged in (default: the registered signals' ``additive``).
    """
    if rule not in RULES:
        raise ValueError(f"unknown fusion rule {rule!r}; known: {', '.join(RULES)}")
    if additive is None:
        additive = registered_additive()
    bonus = {s: w for s, w in weights.items() if s in additive and w > 0}
    fused = _fuse(candidates, {s: w for s, w in weights.items() if s not in additive}, rule)
    return _add(fused, candidates, bonus) if bonus else fused


def _add(fused: dict[str, float], candidates: Mapping[str, Scores], weights: Mapping[str, float]) -> dict[str, float]:
    """Additive signals added to the fused scores, then scaled so the best is 1 (order unchanged by it)."""
    extra = {cid: sum(w * min(1.0, max(0.0, float(candidates[cid].get(s) or 0.0))) for s, w in weights.items())
             for cid in fused}
    if not any(extra.values()):
        return fused
    total = {cid: fused[cid] + extra[cid] for cid in fused}
    top = max(total.values())
    return {cid: value / top for cid, value in total.items()} if top > 0 else total


def _fuse(candidates: Mapping[str, Scores], weights: Mapping[str, float], rule: str) -> dict[str, float]:
    normalised = {s: _normalise(candidates, s) for s, w in weights.items() if w > 0}
    normalised = {s: values for s, values in normalised.items() if values}
    if rule == "rrf":
        return _rrf(candidates, normalised, weights)
    fill = {s: _fill(values, rule) for s, values in normalised.items()}
    fused: dict[str, float] = {}
    for cid in candidates:
        present = {s: values[cid] for s, values in normalised.items() if cid in values}
        own = _weighted_mean(present, weights)
        total = weight_sum = 0.0
        for signal in normalised:
            value = present.get(signal, fill[signal])
            if rule == "shrink" and signal not in present and own is not None:
                value = (own + fill[signal]) / 2  # type: ignore[operator]
            if value is None:
                continue
            total += weights[signal] * value
            weight_sum += weights[signal]
        fused[cid] = total / weight_sum if weight_sum else 0.0
    return fused


def _weighted_mean(values: dict[str, float], weights: Mapping[str, float]) -> float | None:
    weight = sum(weights[s] for s in values)
    return sum(weights[s] * v for s, v in values.items()) / weight if weight else None


def _normalise(candidates: Mapping[str, Scores], signal: str) -> dict[str, float]:
    """Min-max normalised values of one signal over the candidates that have it."""
    raw = {cid: float(s[signal]) for cid, s in candidates.items() if s.get(signal) is not None}  # type: ignore[arg-type]
    if not raw:
        return {}
    low, high = min(raw.values()), max(raw.values())
    if high - low < EPSILON:
        return dict.fromkeys(raw, 1.0)
    return {cid: (value - low) / (high - low) for cid, value in raw.items()}


def _fill(values: dict[str, float], rule: str) -> float | None:
    """What a candidate lacking the signal gets under ``rule`` (None: left out of its average)."""
    if rule in ("mean", "shrink"):
        return sum(values.values()) / len(values)
    if rule == "low":
        return 0.0
    return None


def _rrf(candidates: Mapping[str, Scores], normalised: dict[str, dict[str, float]], weights: Mapping[str, float]
         ) -> dict[str, float]:
    last = len(candidates) + 1
    total = dict.fromkeys(candidates, 0.0)
    for signal, values in normalised.items():
        order = sorted(values, key=lambda c: (-values[c], c))
        ranks = {c: n for n, c in enumerate(order, 1)}
        for cid in candidates:
            total[cid] += weights[signal] / (RRF_K + ranks.get(cid, last))
    best = max(total.values(), default=0.0)
    return {c: v / best if best > 0 else 0.0 for c, v in total.items()}
