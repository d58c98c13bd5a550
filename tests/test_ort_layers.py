"""The text model's layers in onnxruntime: a graph written without the ``onnx`` package that ``onnx`` reads
and checks, and hidden states equal to the numpy loop's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_sentence_model

from mmsearch.encoders import onnx_proto as proto
from mmsearch.encoders import ort_layers
from mmsearch.encoders.lean import LeanSentenceModel
from mmsearch.encoders.numpy_bert import NumpyBert, read_safetensors, release
from mmsearch.encoders.ort_layers import Graph, groups
from mmsearch.encoders.sentence import SentenceEncoder

onnx = pytest.importorskip("onnx")
TEXTS = ["a red bicycle", "一只黑猫睡在沙发上", "word " * 60, "a"]


def test_tensors_and_attributes_read_back_as_written():
    from onnx import AttributeProto, NodeProto, TensorProto, helper, numpy_helper

    for array in (np.array(3, np.int64), np.array([-1, 768], np.int64), np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
                  np.array(0.125, np.float32)):
        parsed = TensorProto()
        parsed.ParseFromString(proto.tensor("t", array))
        got = numpy_helper.to_array(parsed)
        assert parsed.name == "t" and got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)
    node = NodeProto()
    node.ParseFromString(proto.node("Op", ["a", "b"], ["c"], f=0.5, i=-3, s="tanh", ints=[2, 0, -1]))
    assert (list(node.input), list(node.output), node.op_type) == (["a", "b"], ["c"], "Op")
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert values == {"f": 0.5, "i": -3, "s": b"tanh", "ints": [2, 0, -1]}
    assert [a.type for a in node.attribute] == [AttributeProto.FLOAT, AttributeProto.INT, AttributeProto.STRING,
                                                AttributeProto.INTS]


@pytest.mark.parametrize(("arch", "activation"), [("bert", "gelu"), ("distilbert", "gelu"), ("xlm-roberta", "gelu_new")])
def test_the_graph_passes_onnx_checks_and_gives_the_numpy_hidden_states(minilm, tmp_path, arch, activation):
    folder = tiny_sentence_model(tmp_path, minilm, arch, "mean", activation=activation)
    reference, fast = NumpyBert(folder, accelerate=False), NumpyBert(folder)
    assert not reference.accelerated and fast.accelerated and fast.layers == []

    graph = Graph(64, reference.heads, reference.eps, "none")
    model = onnx.load_from_string(graph.model(reference.layers))
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert [t.name for t in external] == list(graph.weights)
    assert sum(len(t.raw_data) for t in model.graph.initializer) < 100  # the weights are not in the graph
    for t in external:  # as onnxruntime gets them (the checker looks for the files)
        assert tuple(t.dims) == graph.weights[t.name].shape
        t.raw_data, t.data_location = graph.weights[t.name].tobytes(), onnx.TensorProto.DEFAULT
        del t.external_data[:]
    onnx.checker.check_model(model, full_check=True)  # and its shapes inferred

    lean = LeanSentenceModel(folder, accelerate=False)
    ids, mask = lean.tokenizer(TEXTS, reference.pad_id)  # a batch: padding masked out, lengths 1 to 48
    assert mask.min() == 0
    np.testing.assert_allclose(fast(ids, mask), reference(ids, mask), atol=2e-5)


def test_auto_runs_the_packaged_minilm_in_onnxruntime_with_the_numpy_vectors(minilm):
    auto, numpy = SentenceEncoder(minilm), SentenceEncoder(minilm, runtime="numpy")
    assert (auto.runtime, numpy.runtime) == ("onnxruntime", "numpy")
    got, want = auto.encode_texts(TEXTS), numpy.encode_texts(TEXTS)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.vstack([auto.encode_texts([t]) for t in TEXTS]), want, atol=1e-5)


def test_without_onnxruntime_the_layers_run_in_numpy(minilm, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    encoder = SentenceEncoder(minilm)
    assert encoder.runtime == "numpy"
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), SentenceEncoder(minilm, runtime="numpy").encode_texts(TEXTS),
                               atol=1e-6)


def test_an_activation_onnx_lacks_keeps_the_numpy_layers(minilm, tmp_path, monkeypatch):
    from mmsearch.encoders import numpy_bert

    folder = tiny_sentence_model(tmp_path, minilm, "bert", "mean")
    config = json.loads((folder / "config.json").read_text())
    assert NumpyBert(folder).accelerated
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu_pytorch_tanh"}))
    assert NumpyBert(folder).accelerated

    monkeypatch.setitem(numpy_bert.ACTIVATIONS, "gelu_fast", numpy_bert.gelu_tanh)  # numpy knows it, the graph not
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu_fast"}))
    assert not NumpyBert(folder).accelerated


def _resident_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (``/proc/self/smaps``)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc")
def test_released_weights_leave_memory_and_read_back_the_same(tmp_path):
    from safetensors.numpy import save_file

    want = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)  # 2 MiB
    path = tmp_path / "model.safetensors"
    save_file({"w": want, "small": want[:1, :3].copy()}, str(path))
    tensors = read_safetensors(path)
    assert float(tensors["w"].sum()) == pytest.approx(float(want.sum()), rel=1e-5)  # every page read in
    before = _resident_kb(path)
    assert before >= 2000

    assert release([tensors["w"], tensors["small"], want]) >= 2 * 1024 * 1024 - 2 * 4096  # whole pages only
    assert _resident_kb(path) < before - 1900
    np.testing.assert_array_equal(tensors["w"], want)  # read from the file again


def test_layers_are_grouped_by_their_weights_bytes():
    assert groups([3, 3, 3, 3], 6) == [[0, 1], [2, 3]]
    assert groups([5, 2, 9, 1, 1], 6) == [[0], [1], [2], [3, 4]]  # a layer larger than the budget: alone
    assert groups([], 6) == []


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc")
def test_a_session_per_layer_gives_the_same_states_and_the_layers_file_pages_are_handed_back(minilm, tmp_path,
                                                                                             monkeypatch):
    folder = tiny_sentence_model(tmp_path, minilm, "distilbert", "mean", hidden=256)
    reference = NumpyBert(folder, accelerate=False)
    ids, mask = LeanSentenceModel(folder, accelerate=False).tokenizer(TEXTS, reference.pad_id)
    want = reference(ids, mask)  # reads every layer's weights: their pages are resident
    layer_kb = sum(a.nbytes for n, a in reference.weights.items() if n.startswith("transformer.layer.")) // 1024
    assert layer_kb > 2000 and _resident_kb(folder / "model.safetensors") > layer_kb

    monkeypatch.setattr(ort_layers, "GROUP_BYTES", 1)
    fast = NumpyBert(folder)

    assert fast.accelerated and len(fast.ort.sessions) == 2
    np.testing.assert_allclose(fast(ids, mask), want, atol=2e-5)
    # this process maps the file twice now; the layers of both are handed back (the numpy loop's too: the
    # pages are the file's, and ``fast`` released their range in its own mapping only)
    del reference
    import gc

    gc.collect()
    assert _resident_kb(folder / "model.safetensors") < layer_kb // 2
