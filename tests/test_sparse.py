"""BGE-M3's lexical weights as the ``sparse`` signal: equal to FlagEmbedding's on a tiny random XLM-R
folder with a lexical head, stored with the index, searched, carried through a reindex."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import add_lexical_head, bge_m3_flag_model, index_photos, make_photos, tiny_sentence_model

from mmsearch import SearchEngine
from mmsearch.encoders.sentence import SentenceEncoder
from mmsearch.encoders.sparse import match, pack, read_torch_state, unpack
from mmsearch.search.lexical import LexicalIndex

TEXTS = ["a red bicycle leaning against a brick wall", "一只猫 in the garden", "ein Hund am Strand, a dog on the beach"]


@pytest.fixture(scope="module")
def bge_m3(tmp_path_factory, minilm) -> str:
    """A BGE-M3-shaped folder (XLM-R, CLS pooling, Normalize) with ``sparse_linear.pt``."""
    folder = tiny_sentence_model(tmp_path_factory.mktemp("bge-m3"), minilm, "xlmr", "cls", normalize=True)
    return str(add_lexical_head(folder, hidden=64))


@pytest.fixture(scope="module")
def reference(bge_m3):
    """FlagEmbedding's BGEM3FlagModel on the same folder."""
    return bge_m3_flag_model()(bge_m3, use_fp16=False, devices="cpu")


def test_the_head_is_read_without_torch_as_torch_saved_it(tmp_path):
    import torch

    state = {"weight": torch.randn(1, 16), "bias": torch.tensor([0.25]), "half": torch.randn(3, 4).half(),
             "strided": torch.randn(4, 6).t()}
    torch.save(state, tmp_path / "head.pt")
    read = read_torch_state(tmp_path / "head.pt")
    for name, tensor in state.items():
        assert np.array_equal(read[name], tensor.float().contiguous().numpy()), name


@pytest.mark.parametrize("runtime", ["auto", "numpy", "torch"])
def test_lexical_weights_equal_flagembeddings(bge_m3, reference, runtime):
    encoder = SentenceEncoder(bge_m3, runtime=runtime)
    assert encoder.runtime == {"auto": "onnxruntime"}.get(runtime, runtime) and encoder.has_lexical
    vectors, got = encoder.encode_with_lexical(TEXTS)
    want = reference.encode(TEXTS, return_dense=True, return_sparse=True)
    assert np.abs(vectors - want["dense_vecs"]).max() < 1e-5
    assert sum(len(w) for w in got) > 10  # the head weighs most tokens: a real comparison
    for mine, theirs in zip(got, want["lexical_weights"]):
        theirs = {int(token): float(weight) for token, weight in theirs.items()}
        assert mine.keys() == theirs.keys()
        assert max(abs(mine[t] - theirs[t]) for t in mine) < 1e-5
    for a, b in [(0, 2), (1, 2), (0, 0)]:
        assert match(got[a], got[b]) == pytest.approx(
            float(reference.compute_lexical_matching_score(want["lexical_weights"][a], want["lexical_weights"][b])),
            abs=1e-5)


def test_models_without_a_head_give_no_lexical_weights(minilm):
    encoder = SentenceEncoder(minilm)
    assert not encoder.has_lexical
    vectors, weights = encoder.encode_with_lexical(TEXTS)
    assert vectors.shape == (3, 384) and weights == [{}, {}, {}]


def test_the_index_scores_each_image_by_its_best_text():
    texts = {"a": [{1: 0.5, 2: 0.3}, {7: 1.0}], "b": [{2: 0.9}], "c": []}
    metas = [{"lexical": [pack(w) for w in texts["a"]]}, {"lexical": [pack(texts["b"][0])], "ocr_lexical": pack({7: 0.2})},
             {}]
    index = LexicalIndex.from_metadata(["a", "b", "c"], metas)
    query = {2: 1.0, 7: 0.5}
    want = [max(match(query, w) for w in texts["a"]), max(match(query, texts["b"][0]), match(query, {7: 0.2})), 0.0]
    assert np.allclose(index.score_array(query), want)
    assert list(index.search(query, 1)) == ["b"] and unpack(pack({5: 0.12345})) == {5: 0.1235}
    assert LexicalIndex.from_metadata(["c"], [{}]) is None


def test_the_sparse_signal_ranks_stored_captions_as_flagembedding_scores_them(tmp_path, clip256, bge_m3, reference):
    models = {"clip_model": clip256[0], "clip_pretrained": clip256[1], "text_model": "clip"}
    photos = make_photos(tmp_path / "photos")
    engine = SearchEngine(tmp_path / "db", caption_model=bge_m3, **models)
    index_photos(engine, photos)
    query = "a black cat sleeping"
    hits = {Path(h.path).name: h for h in engine.search(query, k=6)}
    want_query = reference.encode([query], return_sparse=True)["lexical_weights"][0]
    captions = reference.encode(["a black cat sleeping on a sofa"], return_sparse=True)["lexical_weights"][0]
    want = float(reference.compute_lexical_matching_score(want_query, captions))
    assert want > 0 and hits["black_cat.jpg"].scores["sparse"] == pytest.approx(want, abs=1e-3)
    assert all(h.scores["sparse"] is not None for h in hits.values())
    assert hits["uncaptioned.jpg"].scores["sparse"] == 0.0
    assert "lexical" not in hits["black_cat.jpg"].metadata  # kept internal
    # The keyword cache keeps the lexical postings: a new process scores the same.
    again = SearchEngine(tmp_path / "db", **models)
    assert again.keyword_index().lexical is not None
    assert {Path(h.path).name: h.scores["sparse"] for h in again.search(query, k=6)} == \
        {name: h.scores["sparse"] for name, h in hits.items()}

    # Another caption model without a head: the reindex drops the weights, and the signal goes.
    report = SearchEngine(tmp_path / "db", caption_model="minilm", **models).reindex()
    assert report.switched and report.texts_embedded == 5
    later = SearchEngine(tmp_path / "db")
    assert all("sparse" not in h.scores for h in later.search(query, k=6))
    assert later.keyword_index().lexical is None


def test_eval_reports_the_sparse_signal(tmp_path, clip256, bge_m3):
    from mmsearch.evaluation import evaluate, load_dataset

    photos = make_photos(tmp_path / "photos")
    rows = ["path,caption", "red_bicycle.png,red bicycle by the wall", "black_cat.jpg,black cat on the sofa",
            "holidays/beach.jpg,waves on a sandy beach", "holidays/mountain.png,snowy mountain peaks"]
    (tmp_path / "eval.csv").write_text("\n".join(rows) + "\n")
    engine = SearchEngine(tmp_path / "db", caption_model=bge_m3, clip_model=clip256[0], clip_pretrained=clip256[1],
                          text_model="clip")
    result = evaluate(engine, load_dataset(tmp_path / "eval.csv", photos), image_captions=photos / "captions.csv")
    assert result["rows"]["sparse"] == "exact" and result["signals"]["sparse"]["text_to_image"]["mean_rank"] >= 1
    # (With random weights the ranks mean nothing: which images it finds is tested against FlagEmbedding above.)
    plain = SearchEngine(tmp_path / "db2", caption_model="minilm", clip_model=clip256[0], clip_pretrained=clip256[1],
                         text_model="clip")
    result = evaluate(plain, load_dataset(tmp_path / "eval.csv", photos), image_captions=photos / "captions.csv")
    assert "sparse" not in result["rows"] and "caption" in result["rows"]
