"""Optional second stage: a sentence-transformers ``CrossEncoder`` reads (query, image text) pairs of the
top candidates and reorders them. Off by default: it runs the model once per candidate and query
(e.g. ~30 passes of a BGE reranker per search)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..encoders.hub import OFFLINE_REASON, hub_online, prepare_hub, quiet_logging
from ..errors import ModelLoadError, first_line


class Reranker:
    """Scores (query, text) pairs with a cross-encoder; higher is more relevant.

    Args:
        model: hub id (e.g. ``BAAI/bge-reranker-base``) or a local CrossEncoder folder.
        device: torch device.
    """

    def __init__(self, model: str, device: str = "cpu"):
        self.model_id = f"cross-encoder:{Path(model).name if Path(model).is_dir() else model}"
        if not Path(model).is_dir():
            prepare_hub()
        from sentence_transformers import CrossEncoder

        try:
            with quiet_logging():
                self.model = CrossEncoder(model, device=device)
        except Exception as exc:
            reason = OFFLINE_REASON if not Path(model).is_dir() and not hub_online() else first_line(exc)
            raise ModelLoadError(f"cannot load reranker {model!r}: {reason}; set --rerank / MMSEARCH_RERANK_MODEL "
                                 "to a local CrossEncoder folder") from exc

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One relevance score per text."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = self.model.predict([(query, t) for t in texts], show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float32).reshape(len(texts), -1)[:, -1]


def image_text_for_rerank(meta: dict) -> str:
    """What the reranker reads about an image: its captions and the text read in it, else its file name."""
    text = " ".join(str(meta.get("ocr") or "").split())  # its lines on one line
    parts = [*(meta.get("captions") or []), *([text] if text else [])]
    return " / ".join(parts) if parts else Path(meta.get("path", "")).stem.replace("_", " ")
