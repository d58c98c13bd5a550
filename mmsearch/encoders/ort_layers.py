"""A BERT-family encoder's layers in onnxruntime (one graph per few layers, ``GROUP_BYTES``): the same
arithmetic as :mod:`.numpy_bert`'s numpy loop, at under half its time for a query (11.2 against 23.3 ms
for the default text model's shape, 2 cores; ``benchmarks/text_runtime_bench.py``).

A query's few token rows make every product a matrix-vector one, bound by reading the weights: OpenBLAS reads
them at 11.5 GB/s here, onnxruntime's MLAS, on the weights it packs once, at 25 GB/s. onnxruntime is
installed with Chroma. The graph is written with :mod:`.onnx_proto` and the weights are handed to the session
(``add_external_initializers``), so nothing is written to disk; ``NumpyBert`` then drops its own copy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import available_cores
from . import onnx_proto as proto

if TYPE_CHECKING:  # numpy_bert imports this module when it makes its layers
    from .numpy_bert import Block

logger = logging.getLogger(__name__)

OPSET = 20  # Gelu is an operator from opset 20 on
GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}  # Hugging Face name -> ``approximate``


class Graph:
    """The layers' graph: nodes, and the weights it takes by name (``weights``)."""

    def __init__(self, width: int, heads: int, eps: float, approximate: str):
        self.width, self.heads, self.eps, self.approximate = width, heads, eps, approximate
        self.nodes: list[bytes] = []
        self.weights: dict[str, np.ndarray] = {}

    def weight(self, name: str, array: np.ndarray) -> str:
        self.weights[name] = np.ascontiguousarray(array, dtype=np.float32)
        return name

    def add(self, op: str, inputs: Sequence[str], output: str, **attributes: proto.Attribute) -> str:
        self.nodes.append(proto.node(op, inputs, [output], **attributes))
        return output

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        """``x @ weight.T + bias`` for a torch ``Linear`` weight ``(out, in)``, as it is stored."""
        return self.add("Gemm", [x, self.weight(f"{name}.w", weight), self.weight(f"{name}.b", bias)], name, transB=1)

    def norm(self, x: str, norm: tuple[np.ndarray, np.ndarray], name: str) -> str:
        return self.add("LayerNormalization", [x, self.weight(f"{name}.g", norm[0]), self.weight(f"{name}.b", norm[1])],
                        name, axis=-1, epsilon=self.eps)

    def layer(self, x: str, block: Block, n: int) -> str:
        """One post-norm encoder layer (``numpy_bert.NumpyBert._block``) on the 2-D rows ``x``."""
        p = f"l{n}."
        qkv = self.add("Reshape", [self.linear(x, block.qkv, block.qkv_bias, p + "qkv"), "qkv_shape"], p + "qkv5")
        heads = self.add("Transpose", [qkv], p + "heads", perm=[2, 0, 3, 1, 4])  # (3, batch, heads, tokens, head)
        q, k, v = (self.add("Gather", [heads, f"index{i}"], f"{p}{part}", axis=0) for i, part in enumerate("qkv"))
        scores = self.add("MatMul", [q, self.add("Transpose", [k], p + "kt", perm=[0, 1, 3, 2])], p + "scores")
        scores = self.add("Add", [self.add("Mul", [scores, "scale"], p + "scaled"), "bias"], p + "masked")
        context = self.add("MatMul", [self.add("Softmax", [scores], p + "attention", axis=-1), v], p + "context")
        context = self.add("Reshape", [self.add("Transpose", [context], p + "context_t", perm=[0, 2, 1, 3]), "rows"],
                           p + "context_rows")
        out = self.linear(context, block.out, block.out_bias, p + "out")
        x = self.norm(self.add("Add", [x, out], p + "residual1"), block.norm1, p + "norm1")
        hidden = self.add("Gelu", [self.linear(x, block.ffn_in, block.ffn_in_bias, p + "ffn_in")], p + "gelu",
                          approximate=self.approximate)
        out = self.linear(hidden, block.ffn_out, block.ffn_out_bias, p + "ffn_out")
        return self.norm(self.add("Add", [x, out], p + "residual2"), block.norm2, p + "norm2")

    def model(self, blocks: Sequence[Block]) -> bytes:
        """The serialized model: rows ``x`` (tokens × width), the additive attention mask ``bias``
        (batch, 1, 1, tokens) and ``qkv_shape`` (batch, tokens, 3, heads, head width) in, the last layer's
        rows out."""
        x = "x"
        for n, block in enumerate(blocks):
            x = self.layer(x, block, n)
        constants = [proto.tensor("rows", np.array([-1, self.width], np.int64)),
                     proto.tensor("scale", np.array(1.0 / math.sqrt(self.width // self.heads), np.float32)),
                     *(proto.tensor(f"index{i}", np.array(i, np.int64)) for i in range(3))]
        weights = [proto.external_tensor(name, proto.FLOAT, array.shape) for name, array in self.weights.items()]
        inputs = [proto.value_info("x", proto.FLOAT, ["rows", self.width]),
                  proto.value_info("bias", proto.FLOAT, ["batch", 1, 1, "tokens"]),
                  proto.value_info("qkv_shape", proto.INT64, [5])]
        return proto.model(self.nodes, inputs, [proto.value_info(x, proto.FLOAT, ["rows", self.width])],
                           constants + weights, OPSET)


# Layers per session: as many as fit in this many bytes of weights. A session's weights are copied and packed
# when it is made, while their file pages are still resident (``NumpyBert`` hands those back after each
# session). The default text model's 0.17 GB fit in one session: 447 MB at the peak, 289 MB after. One
# session per layer peaked at 363 MB but kept 392 MB (each session its own buffers and threads). BGE-M3's
# 1.2 GB of layers in one session would hold 1.2 GB more for a moment; here, in five.
GROUP_BYTES = 256 << 20


class OrtLayers:
    """The layers of a ``NumpyBert`` in onnxruntime sessions of a few layers each (``GROUP_BYTES``), one after
    another; ``__call__`` takes and returns the 2-D rows. ``built(indices)`` is told each group's layer
    indices once its session holds their weights."""

    def __init__(self, blocks: Sequence[Block], heads: int, eps: float, activation: str,
                 built: Callable[[list[int]], None] = lambda indices: None):
        self.heads, self.width = heads, blocks[0].out.shape[0]
        self.sessions = []
        for indices in groups([_bytes(block) for block in blocks], GROUP_BYTES):
            self.sessions.append(self._session([blocks[i] for i in indices], eps, GELU[activation]))
            built(indices)

    def _session(self, blocks: Sequence[Block], eps: float, approximate: str) -> Any:
        import onnxruntime as ort

        graph = Graph(self.width, self.heads, eps, approximate)
        data = graph.model(blocks)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = available_cores()  # onnxruntime's own guess may see a container's host
        # Its threads wait asleep, not spinning: the search's own threads run right after the encoder. At 200k
        # photos, spinning gave p50 35.2-38.1 ms and 31-32 searches/s from two threads, against 30.7-33.2 ms
        # and 37.6-38.3 searches/s asleep (numpy: 41.9-45.2 ms, 19-22 searches/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        names = list(graph.weights)
        options.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(graph.weights[n]) for n in names])
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray, bias: np.ndarray, batch: int) -> np.ndarray:
        shape = np.array([batch, len(x) // batch, 3, self.heads, self.width // self.heads], np.int64)
        x = np.ascontiguousarray(x, np.float32)
        for session in self.sessions:
            x = session.run(None, {"x": x, "bias": bias, "qkv_shape": shape})[0]
        return x


def groups(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive indices, as many per group as fit in ``budget`` (at least one)."""
    out: list[list[int]] = []
    total = budget
    for index, size in enumerate(sizes):
        if total + size > budget:
            out.append([])
            total = 0
        out[-1].append(index)
        total += size
    return out


def _bytes(block: Block) -> int:
    return sum(value.nbytes for value in vars(block).values() if isinstance(value, np.ndarray))


def ort_layers(blocks: Sequence[Block], heads: int, eps: float, activation: str,
               built: Callable[[list[int]], None] = lambda indices: None) -> OrtLayers | None:
    """The layers in onnxruntime, or None (the numpy loop runs them) where it is missing or refuses them."""
    if activation not in GELU:
        return None
    try:
        return OrtLayers(blocks, heads, eps, activation, built)
    except Exception as exc:  # ImportError, or onnxruntime's own errors: the numpy loop gives the same vectors
        logger.info("the text model's layers run in numpy (onnxruntime: %s)", exc)
        return None
