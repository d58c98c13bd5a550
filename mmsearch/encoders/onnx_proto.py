"""The few ONNX protobuf messages a graph of standard operators needs, written without the ``onnx`` package.

Importing ``onnx`` costs 0.64 s (its ``ml_dtypes`` import alone 0.57 s), a seventh of a query's cold start;
onnxruntime, already installed with Chroma, only needs the bytes. Field numbers are those of ``onnx.proto``
(proto2: repeated numbers are written unpacked, which every parser reads). The tests parse these bytes with
the ``onnx`` package and check the model with its checker.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

FLOAT, INT64 = 1, 7  # TensorProto.DataType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_INTS = 1, 2, 3, 7  # AttributeProto.AttributeType
_EXTERNAL = 1  # TensorProto.DataLocation
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}
IR_VERSION = 9
Attribute = float | int | str | Sequence[int]


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as ten bytes, as protobuf writes them
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _float(field: int, value: float) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<f", value)


def _each(field: int, messages: Iterable[bytes]) -> bytes:
    return b"".join(_bytes(field, message) for message in messages)


def attribute(name: str, value: Attribute) -> bytes:
    """An ``AttributeProto``: a float, an int, a string or a list of ints."""
    if isinstance(value, float):
        return _bytes(1, name) + _float(2, value) + _int(20, _ATTR_FLOAT)
    if isinstance(value, int):
        return _bytes(1, name) + _int(3, value) + _int(20, _ATTR_INT)
    if isinstance(value, str):
        return _bytes(1, name) + _bytes(4, value) + _int(20, _ATTR_STRING)
    return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, _ATTR_INTS)


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attributes: Attribute) -> bytes:
    """A ``NodeProto`` of the default domain."""
    return (b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
            + _bytes(4, op_type) + _each(5, (attribute(k, v) for k, v in attributes.items())))


def value_info(name: str, elem_type: int, shape: Sequence[int | str]) -> bytes:
    """A ``ValueInfoProto`` of a tensor; a ``str`` dimension is a named, free one."""
    dims = (_int(1, d) if isinstance(d, int) else _bytes(2, d) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, _each(1, dims))
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def tensor(name: str, array: np.ndarray) -> bytes:
    """A ``TensorProto`` holding ``array`` (float32 or int64) in its raw data."""
    array = np.asarray(array)  # not ascontiguousarray: it makes a scalar one-dimensional
    return (b"".join(_int(1, d) for d in array.shape) + _int(2, _DTYPES[array.dtype]) + _bytes(8, name)
            + _bytes(9, array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C")))


def external_tensor(name: str, elem_type: int, shape: Sequence[int]) -> bytes:
    """A ``TensorProto`` whose data is given when the session is made (onnxruntime's
    ``SessionOptions.add_external_initializers``), so the graph holds no copy of the weights."""
    location = _bytes(1, "location") + _bytes(2, name)
    return (b"".join(_int(1, d) for d in shape) + _int(2, elem_type) + _bytes(8, name)
            + _bytes(13, location) + _int(14, _EXTERNAL))


def model(nodes: Sequence[bytes], inputs: Sequence[bytes], outputs: Sequence[bytes], initializers: Sequence[bytes],
          opset: int, name: str = "mmsearch") -> bytes:
    """A serialized ``ModelProto``: one graph of default-domain operators at ``opset``."""
    graph = (_each(1, nodes) + _bytes(2, name) + _each(5, initializers) + _each(11, inputs) + _each(12, outputs))
    opset_id = _bytes(1, "") + _int(2, opset)
    return _int(1, IR_VERSION) + _bytes(2, "mmsearch") + _bytes(7, graph) + _bytes(8, opset_id)
