"""Run a sentence-transformers model folder without importing sentence-transformers or torch.

Reads ``modules.json`` (Transformer → Pooling → Dense* → Normalize), tokenizes with the Rust ``tokenizers``
library and runs the encoder with :mod:`.numpy_bert` (its layers in onnxruntime where it takes them). A
query then starts in about a second instead of the five or more that importing sentence-transformers
(scikit-learn, scipy, pandas, torch, transformers) takes. Folders using anything else raise
:class:`Unsupported`; the caller then loads SentenceTransformer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .numpy_bert import NumpyBert, Unsupported, read_weights

__all__ = ["LeanSentenceModel", "Unsupported"]

POOLING_MODES = ("mean", "cls", "max")
DENSE_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "torch.nn.modules.linear.Identity": lambda x: x,
    "torch.nn.modules.activation.Tanh": np.tanh,
}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def pooling_mode(config: dict[str, Any]) -> str:
    """The one pooling mode of a Pooling config, in the new (``pooling_mode``) or old (flags) format."""
    mode = config.get("pooling_mode")
    if mode is None:
        flags = [name for name in POOLING_MODES + ("mean_sqrt_len", "weightedmean", "lasttoken")
                 if config.get(f"pooling_mode_{name}_tokens", config.get(f"pooling_mode_{name}"))]
        mode = flags[0] if len(flags) == 1 else flags
    if mode not in POOLING_MODES:
        raise Unsupported(f"pooling {mode!r}")
    return str(mode)


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Sentence vectors from token vectors, as sentence-transformers' Pooling does."""
    if mode == "cls":
        return hidden[:, 0]
    weights = mask[:, :, None].astype(np.float32)
    if mode == "max":
        return np.where(weights > 0, hidden, -1e9).max(axis=1)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


class Dense:
    """sentence-transformers' Dense module: ``activation(x @ W.T + b)``."""

    def __init__(self, folder: Path):
        config = _json(folder / "config.json")
        activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")
        if activation not in DENSE_ACTIVATIONS:
            raise Unsupported(f"dense activation {activation}")
        self.activation = DENSE_ACTIVATIONS[activation]
        weights = read_weights(folder)
        self.weight = weights["linear.weight"]
        self.bias = weights.get("linear.bias") if config.get("bias", True) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight.T
        return self.activation(y + self.bias if self.bias is not None else y)


class Tokenizer:
    """``tokenizer.json`` with sentence-transformers' settings: truncation to the model's length, padding."""

    def __init__(self, folder: Path, max_length: int):
        if not (folder / "tokenizer.json").exists():
            raise Unsupported("no tokenizer.json")
        from tokenizers import Tokenizer as RustTokenizer

        self.tokenizer = RustTokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.no_padding()
        pad = _json(folder / "tokenizer_config.json").get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_id = self.tokenizer.token_to_id(pad) if isinstance(pad, str) else None

    def __call__(self, texts: Sequence[str], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, padded to the longest text (with ``pad_id`` when the tokenizer has
        no pad token of its own)."""
        pad_id = self.pad_id if self.pad_id is not None else pad_id
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask


def max_length(folder: Path, config: dict[str, Any]) -> int:
    """sentence-transformers' rule: ``max_seq_length`` if saved, else the tokenizer's and the model's limit."""
    saved = _json(folder / "sentence_bert_config.json").get("max_seq_length")
    if saved:
        return int(saved)
    limits = [_json(folder / "tokenizer_config.json").get("model_max_length"), config.get("max_position_embeddings")]
    usable = [int(limit) for limit in limits if isinstance(limit, (int, float)) and 0 < limit < 1e6]
    if not usable:
        raise Unsupported("no maximum sequence length")
    return min(usable)


class LeanSentenceModel:
    """A sentence-transformers folder run without torch; ``encode`` returns unnormalised sentence vectors.
    ``accelerate``: the encoder's layers in onnxruntime where it takes them (``NumpyBert``)."""

    def __init__(self, folder: Path, accelerate: bool = True):
        steps = [(entry["type"].rsplit(".", 1)[-1], folder / entry.get("path", ""))
                 for entry in json.loads((folder / "modules.json").read_text(encoding="utf-8"))]
        kinds = [kind for kind, _ in steps]
        if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Dense", "Normalize") for k in kinds[2:]):
            raise Unsupported(f"modules {kinds}")
        if _json(folder / "config_sentence_transformers.json").get("default_prompt_name"):
            raise Unsupported("a default prompt")
        transformer = steps[0][1]
        config = _json(transformer / "config.json")
        self.encoder = NumpyBert(transformer, accelerate)
        if _json(transformer / "sentence_bert_config.json").get("do_lower_case"):
            # sentence-transformers versions differ here (str.lower() vs the tokenizer's own lowercasing,
            # which may also strip accents): leave such models to it.
            raise Unsupported("do_lower_case")
        self.tokenizer = Tokenizer(transformer, max_length(transformer, config))
        self.pooling = pooling_mode(_json(steps[1][1] / "config.json"))
        self.dense = [Dense(path) for kind, path in steps[2:] if kind == "Dense"]
        self.dim = self.dense[-1].weight.shape[0] if self.dense else self.encoder.weights[
            "embeddings.word_embeddings.weight"].shape[1]

    def encode(self, texts: Sequence[str], batch_size: int = 32,
               tokens: list[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
        """Sentence vectors of ``texts``, shape ``(len(texts), dim)``; batches are sorted by length. With
        ``tokens`` (a list as long as ``texts``), each text's token ids and last hidden states go there too."""
        order = np.argsort([-len(text) for text in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            ids, mask = self.tokenizer([texts[i] for i in rows], self.encoder.pad_id)
            hidden = self.encoder(ids, mask)
            if tokens is not None:
                for n, row in enumerate(rows):
                    length = int(mask[n].sum())
                    tokens[row] = (ids[n, :length], hidden[n, :length])
            x = pool(hidden, mask, self.pooling)
            for dense in self.dense:
                x = dense(x)
            out[rows] = x
        return out
