"""BGE-M3's lexical weights: learned, multilingual term matching beside BM25 (the ``sparse`` signal).

BGE-M3 ships ``sparse_linear.pt`` beside its XLM-R weights: one linear layer from a token's last hidden
state to a weight, ``relu(W h + b)``. A text's lexical weights are, for each token id, the largest weight
of its occurrences, without the special tokens (cls, eos, pad, unk) and without zeros; two texts match by
the sum, over shared token ids, of the products of their weights. That is FlagEmbedding's ``M3Embedder``
(``_process_token_weights``, ``compute_lexical_matching_score``), reproduced here on the hidden states
either runtime computes anyway (tests compare with FlagEmbedding itself). The ``.pt`` file is read
without torch, so the numpy runtime stays torch-free.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

HEAD_FILE = "sparse_linear.pt"
SPECIAL = ("cls_token", "eos_token", "pad_token", "unk_token")  # the tokens FlagEmbedding leaves out
Weights = dict[int, float]  # token id -> weight
_DTYPES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64}


def read_torch_state(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save``d state dict (zip format, float tensors), read without torch."""
    with zipfile.ZipFile(path) as archive:
        pickled = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        prefix = pickled[: -len("data.pkl")]

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return _rebuild
                if (module, name) == ("collections", "OrderedDict"):
                    return OrderedDict
                if module == "torch" and name in _DTYPES:
                    return name
                raise pickle.UnpicklingError(f"{module}.{name} is not part of a plain state dict")

            def persistent_load(self, pid: Any) -> np.ndarray:
                _, storage, key, _, _ = pid
                return np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=_DTYPES[storage])

        return dict(Unpickler(archive.open(pickled)).load())


def _rebuild(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> np.ndarray:
    strides = tuple(s * storage.itemsize for s in stride)
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=strides).astype(np.float32)


class LexicalHead:
    """``sparse_linear`` and the special token ids of one model."""

    def __init__(self, weight: np.ndarray, bias: float, special: set[int]):
        self.weight, self.bias, self.special = weight.reshape(-1).astype(np.float32), float(bias), special

    def weights(self, ids: np.ndarray, states: np.ndarray) -> Weights:
        """Lexical weights of one text from its token ids and last hidden states (padding excluded)."""
        values = np.maximum(states @ self.weight + self.bias, 0.0)
        out: Weights = {}
        for token, value in zip(ids.tolist(), values.tolist()):
            if token not in self.special and value > 0 and value > out.get(token, 0.0):
                out[token] = value
        return out


def load_head(folder: Path) -> LexicalHead | None:
    """The lexical head of a model folder (None without ``sparse_linear.pt``: not a BGE-M3 model)."""
    path = folder / HEAD_FILE
    if not path.is_file():
        return None
    state = read_torch_state(path)
    return LexicalHead(state["weight"], float(state["bias"].reshape(-1)[0]), special_ids(folder))


def special_ids(folder: Path) -> set[int]:
    """Ids of the model's cls, eos, pad and unk tokens (from ``tokenizer_config.json`` and
    ``special_tokens_map.json``, looked up in ``tokenizer.json``)."""
    from tokenizers import Tokenizer

    names: dict[str, Any] = {}
    for file in ("tokenizer_config.json", "special_tokens_map.json"):
        if (folder / file).is_file():
            names.update(json.loads((folder / file).read_text(encoding="utf-8")))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    found = set()
    for key in SPECIAL:
        token = names.get(key)
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str) and tokenizer.token_to_id(token) is not None:
            found.add(int(tokenizer.token_to_id(token)))
    return found


def match(query: Weights, text: Weights) -> float:
    """BGE-M3's lexical matching score of two texts: shared tokens' weights multiplied and summed."""
    return float(sum(weight * text[token] for token, weight in query.items() if token in text))


def pack(weights: Weights) -> str:
    """Weights as stored in an image's metadata: ``"id:weight id:weight"`` (4 decimals, zeros dropped)."""
    return " ".join(f"{token}:{weight:.4f}" for token, weight in sorted(weights.items()) if round(weight, 4) > 0)


def unpack(text: str) -> Weights:
    """The inverse of ``pack``."""
    return {int(token): float(weight) for token, weight in (item.split(":") for item in text.split())}
