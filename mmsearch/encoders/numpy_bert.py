"""BERT-family encoder forward pass (BERT, DistilBERT, RoBERTa/XLM-R) in numpy.

Text queries are a few tokens; for them importing torch and transformers costs seconds while the forward
pass costs milliseconds. This module runs the same arithmetic as the Hugging Face models (post-norm
layers, exact GELU, additive attention mask) on weights memory-mapped from ``model.safetensors``.
Anything it does not recognise raises :class:`Unsupported`, and the caller uses sentence-transformers.
"""

from __future__ import annotations

import json
import math
import mmap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class Unsupported(Exception):
    """The model uses something this forward pass does not implement."""


@dataclass(frozen=True)
class Layout:
    """Where one architecture keeps its weights and hyper-parameters."""

    layers: str
    names: tuple[str, ...]  # query, key, value, attention out, norm 1, ffn in, ffn out, norm 2
    config_keys: tuple[str, str, str]  # number of layers, heads, activation
    position_offset: bool = False  # RoBERTa: positions start after the padding index


_BERT_NAMES = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
               "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")
_BERT_KEYS = ("num_hidden_layers", "num_attention_heads", "hidden_act")
LAYOUTS = {
    "bert": Layout("encoder.layer.{}.", _BERT_NAMES, _BERT_KEYS),
    "roberta": Layout("encoder.layer.{}.", _BERT_NAMES, _BERT_KEYS, position_offset=True),
    "xlm-roberta": Layout("encoder.layer.{}.", _BERT_NAMES, _BERT_KEYS, position_offset=True),
    "distilbert": Layout("transformer.layer.{}.", (
        "attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm", "ffn.lin1",
        "ffn.lin2", "output_layer_norm"), ("n_layers", "n_heads", "activation")),
}
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file as float32 arrays; float32 ones are zero-copy memory maps (``release``
    hands their pages back)."""
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    header.pop("__metadata__", None)
    data = np.frombuffer(mapping, dtype=np.uint8, offset=8 + size)
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in _DTYPES:
            raise Unsupported(f"tensor {name} has dtype {info['dtype']}")
        start, end = info["data_offsets"]
        array = data[start:end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array if array.dtype == np.float32 else array.astype(np.float32)
    return tensors


def release(arrays: Iterable[np.ndarray]) -> int:
    """Drop the resident pages of memory-mapped weights (``read_safetensors``) that a copy now stands in for,
    as they count in the process's memory; they are read from the file again if used. Returns the bytes."""
    released = 0
    if not hasattr(mmap, "MADV_DONTNEED"):  # Windows: the pages stay until the map is closed
        return released
    for array in arrays:
        mapping = _mapping(array)
        if mapping is None:
            continue
        start = array.ctypes.data - np.frombuffer(mapping, dtype=np.uint8).ctypes.data
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the array only
        end = (start + array.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > first:
            mapping.madvise(mmap.MADV_DONTNEED, first, end - first)
            released += end - first
    return released


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    """The memory map an array views, if it views one."""
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return base


def read_weights(folder: Path) -> dict[str, np.ndarray]:
    """The weights of a model folder: ``model.safetensors``, else ``pytorch_model.bin`` (needs torch)."""
    if (folder / "model.safetensors").exists():
        return read_safetensors(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").exists():
        import torch

        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True, mmap=True)
        return {name: tensor.float().numpy() for name, tensor in state.items()}
    raise Unsupported(f"no model.safetensors or pytorch_model.bin in {folder}")


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, fractional error below 1.2e-7 (Numerical Recipes' Chebyshev fit of erfc), in the
    input's precision."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    return np.sign(x) * (1.0 - t * np.exp(poly))


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as ``torch.nn.functional.gelu``."""
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """The tanh approximation of GELU (``gelu_new``, ``gelu_pytorch_tanh``)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


ACTIVATIONS = {"gelu": gelu, "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh}


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis."""
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * weight + bias


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    exp = np.exp(x - x.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


class NumpyBert:
    """A BERT-family encoder; ``__call__`` returns the last hidden states ``(batch, tokens, width)``.

    The layers run in onnxruntime (:mod:`.ort_layers`, under half the time for a query) unless
    ``accelerate`` is false or onnxruntime refuses them; ``accelerated`` says which. The embeddings, a
    lookup, stay in numpy either way.
    """

    def __init__(self, folder: Path, accelerate: bool = True):
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.layout = LAYOUTS.get(config.get("model_type", ""))
        if self.layout is None:
            raise Unsupported(f"model type {config.get('model_type')!r}")
        n_layers, n_heads, act = (config.get(key) for key in self.layout.config_keys)
        if act not in ACTIVATIONS or config.get("position_embedding_type", "absolute") != "absolute":
            raise Unsupported(f"activation {act!r} / position embeddings {config.get('position_embedding_type')!r}")
        if config.get("is_decoder") or config.get("add_cross_attention"):
            raise Unsupported("decoder models")
        self.activation = ACTIVATIONS[act]
        self.heads = int(n_heads)
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.pad_id = int(config.get("pad_token_id") or 0)
        self.weights = _strip_prefix(read_weights(folder))
        self.layers = [self._layer(i) for i in range(int(n_layers))]
        self.ort = None
        if accelerate:
            from .ort_layers import ort_layers

            self.ort = ort_layers(self.layers, self.heads, self.eps, act, self._release_layers)
        if self.ort is not None:  # the sessions hold their own copy: the numpy one is dropped
            self.layers = []

    def _release_layers(self, indices: list[int]) -> None:
        """Hand back the file pages of these layers' weights (a session holds its copy now): 0.17 GB for the
        default text model. Their fused query/key/value copy goes with ``layers``."""
        prefixes = tuple(self.layout.layers.format(i) for i in indices)
        release(array for name, array in self.weights.items() if name.startswith(prefixes))

    @property
    def accelerated(self) -> bool:
        """Whether the layers run in onnxruntime."""
        return self.ort is not None

    def _get(self, name: str) -> np.ndarray:
        try:
            return self.weights[name]
        except KeyError:
            raise Unsupported(f"weight {name} missing") from None

    def _layer(self, index: int) -> Block:
        prefix = self.layout.layers.format(index)
        (wq, bq), (wk, bk), (wv, bv), (wo, bo), norm1, (w1, b1), (w2, b2), norm2 = (
            (self._get(f"{prefix}{name}.weight"), self._get(f"{prefix}{name}.bias")) for name in self.layout.names)
        return Block(qkv=np.concatenate([wq, wk, wv]), qkv_bias=np.concatenate([bq, bk, bv]), out=wo, out_bias=bo,
                     norm1=norm1, ffn_in=w1, ffn_in_bias=b1, ffn_out=w2, ffn_out_bias=b2, norm2=norm2)

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """Token + position (+ token type 0) embeddings, layer-normed."""
        if self.layout.position_offset:
            positions = np.cumsum(ids != self.pad_id, axis=1) * (ids != self.pad_id) + self.pad_id
        else:
            positions = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
        x = self._get("embeddings.word_embeddings.weight")[ids] + self._get("embeddings.position_embeddings.weight")[positions]
        if "embeddings.token_type_embeddings.weight" in self.weights:
            x = x + self.weights["embeddings.token_type_embeddings.weight"][0]
        return layer_norm(x, self._get("embeddings.LayerNorm.weight"), self._get("embeddings.LayerNorm.bias"), self.eps)

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, tokens = ids.shape
        x = self.embed(ids).reshape(batch * tokens, -1)  # 2-D through the linear layers: one GEMM each
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
        if self.ort is not None:
            return self.ort(x, bias, batch).reshape(batch, tokens, -1)
        for block in self.layers:
            x = self._block(x, bias, block, batch)
        return x.reshape(batch, tokens, -1)

    def _block(self, x: np.ndarray, bias: np.ndarray, block: Block, batch: int) -> np.ndarray:
        rows, width = x.shape
        head = width // self.heads
        q, k, v = (linear(x, block.qkv) + block.qkv_bias).reshape(batch, rows // batch, 3, self.heads, head).transpose(
            2, 0, 3, 1, 4)
        attention = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + bias)
        context = (attention @ v).transpose(0, 2, 1, 3).reshape(rows, width)
        x = layer_norm(x + linear(context, block.out) + block.out_bias, *block.norm1, self.eps)
        hidden = self.activation(linear(x, block.ffn_in) + block.ffn_in_bias)
        return layer_norm(x + linear(hidden, block.ffn_out) + block.ffn_out_bias, *block.norm2, self.eps)


@dataclass(frozen=True)
class Block:
    """One encoder layer; matrices are torch ``Linear`` weights ``(out, in)`` (the checkpoint's own, memory-mapped
    where they are float32), query/key/value fused into one."""

    qkv: np.ndarray
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    ffn_in: np.ndarray
    ffn_in_bias: np.ndarray
    ffn_out: np.ndarray
    ffn_out_bias: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


FEW_ROWS = 128  # up to this many token rows (a query), ``W @ x.T`` is the faster product


def linear(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``x @ weight.T`` for a torch ``Linear`` weight ``(out, in)``. For a few rows OpenBLAS is faster with the
    weight as the left operand; for many, with it transposed on the right."""
    return (weight @ x.T).T if len(x) <= FEW_ROWS else x @ weight.T


def _strip_prefix(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Checkpoints saved from a task head name the encoder ``bert.``, ``distilbert.``, ``roberta.``, ..."""
    anchor = next((name for name in weights if name.endswith("embeddings.word_embeddings.weight")), None)
    if anchor is None:
        raise Unsupported("no embeddings.word_embeddings.weight")
    prefix = anchor[: -len("embeddings.word_embeddings.weight")]
    return {name[len(prefix):]: array for name, array in weights.items() if name.startswith(prefix)}
