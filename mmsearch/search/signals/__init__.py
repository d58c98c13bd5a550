"""The signals of a search, one module each, behind one protocol (``base.Signal``), in one registry.

Ranking (``mmsearch.search.ranking``), the fusion weights (``weights``) and ``mmsearch eval`` all run the
registered signals, in registration order (the order of ``Hit.scores``). A new signal is one module with a
``Signal`` subclass, plus a ``register`` call: here for a built-in one, anywhere for a plug-in.
"""

from __future__ import annotations

from .base import Context, Reads, Scored, Signal, Weighing, rounded
from .caption import CaptionSignal
from .feedback import FeedbackSignal
from .image import ImageSignal
from .keyword import KeywordSignal
from .ocr import OcrSignal
from .sparse import SparseSignal

_REGISTRY: dict[str, Signal] = {}


def register(signal: Signal) -> Signal:
    """Add ``signal`` (or replace the one of its name); returns it."""
    if not signal.name:
        raise ValueError(f"{type(signal).__name__} has no name")
    _REGISTRY[signal.name] = signal
    return signal


def unregister(name: str) -> None:
    """Remove the signal called ``name`` (nothing if there is none)."""
    _REGISTRY.pop(name, None)


def registered() -> list[Signal]:
    """Every signal, in registration order."""
    return list(_REGISTRY.values())


def additive() -> frozenset[str]:
    """Names of the signals added to the fused score instead of averaged in."""
    return frozenset(s.name for s in _REGISTRY.values() if s.additive)


def weights(weighing: Weighing) -> dict[str, float]:
    """Signal -> weight of a query (signals whose ``weight`` is None are left out)."""
    return {s.name: w for s in _REGISTRY.values() if (w := s.weight(weighing)) is not None}


for _signal in (ImageSignal(), CaptionSignal(), KeywordSignal(), SparseSignal(), OcrSignal(), FeedbackSignal()):
    register(_signal)

__all__ = ["Context", "Reads", "Scored", "Signal", "Weighing", "additive", "register", "registered", "rounded",
           "unregister", "weights"]
