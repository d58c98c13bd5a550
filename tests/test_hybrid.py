"""Keyword (BM25) signal, exact file-name and phrase queries, Chinese without spaces, the optional reranker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import index_photos, save_image

from mmsearch.search.keywords import KeywordIndex, tokenize


def test_tokens_split_file_names_fold_plurals_and_use_cjk_bigrams():
    assert tokenize("IMG_0042.JPG") == ["img", "0042", "jpg"]
    assert tokenize("Two bicycles, three puppies") == ["two", "bicycle", "three", "puppy"]
    assert tokenize("一只猫") == ["一", "只", "猫", "一只", "只猫"]
    assert tokenize("東京タワー at night") == ["東", "京", "タ", "ワ", "ー", "東京", "京タ", "タワ", "ワー", "at", "night"]


def test_bm25_ranks_rarer_and_denser_matches_higher_and_quotes_mean_a_phrase():
    index = KeywordIndex.build([("a", "a red door in a white wall"), ("b", "a red car next to a door"),
                                ("c", "一只虎斑猫在沙发上"), ("d", "a door"), ("e", "a blue car")])
    scores = index.search("red door", 5)
    assert scores["a"] == pytest.approx(scores["b"]) and scores["b"] > scores["d"] > 0  # both words beat one
    assert set(index.search('"red door"', 5)) == {"a"}
    assert list(index.search("猫", 5)) == ["c"] and list(index.search("虎斑猫", 5)) == ["c"]
    assert index.search("car", 5, mask=index.mask_of(["e"])) == {"e": pytest.approx(index.search("car", 5)["e"])}
    assert index.search("zebra", 5) == {} and index.search("", 5) == {}


@pytest.fixture
def hybrid(make_engine, photos):
    save_image(photos / "IMG_0042.jpg", (90, 90, 90))
    (photos / "tabby.jpg.txt").write_text("一只虎斑猫在沙发上睡觉\n", encoding="utf-8")
    save_image(photos / "tabby.jpg", (150, 110, 60))
    engine = make_engine(caption_weight=1.0, keyword_weight=1.0)
    index_photos(engine, photos)
    return engine


def test_a_file_name_query_finds_that_file_first(hybrid):
    for query in ("IMG_0042.jpg", "img_0042", "pasta.jpg"):
        for k in (1, 3):  # k=1: only the hit and the best keyword match have their metadata read
            assert Path(hybrid.search(query, k=k)[0].path).name.lower().startswith(query.lower().split(".")[0]), query


def test_chinese_captions_are_found_through_keywords_even_with_an_english_only_text_model(hybrid):
    hits = hybrid.search("虎斑猫", k=3)
    assert Path(hits[0].path).name == "tabby.jpg" and hits[0].scores["keyword"] > 0
    assert all(h.scores["keyword"] == 0.0 for h in hits[1:])


def test_keyword_signal_can_be_switched_off(make_engine, photos):
    engine = make_engine(keyword_weight=0.0)
    index_photos(engine, photos)
    assert all("keyword" not in h.scores for h in engine.search("a black cat", k=3))


def tiny_cross_encoder(folder: Path, minilm: str) -> str:
    """A one-layer BERT cross-encoder with random weights and MiniLM's tokenizer (mechanics only)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm).save_pretrained(folder)
    return str(folder)


def test_reranker_reorders_the_top_hits_by_its_own_scores(make_engine, photos, minilm, tmp_path):
    from sentence_transformers import CrossEncoder

    model = tiny_cross_encoder(tmp_path / "cross", minilm)
    engine = make_engine(rerank_model=model)
    index_photos(engine, photos)
    hits = engine.search("a cat asleep", k=6)
    raw = [h.scores["rerank"] for h in hits]
    assert raw == sorted(raw, reverse=True) and hits[0].score == 1.0 and hits[-1].score == 0.0
    texts = [" / ".join(h.metadata.get("captions") or []) or Path(h.path).stem.replace("_", " ") for h in hits]
    expected = CrossEncoder(model).predict([("a cat asleep", t) for t in texts])
    assert np.allclose(raw, np.asarray(expected, dtype=np.float32), atol=1e-5)
    assert "rerank" not in engine.search_image(photos / "pasta.jpg", k=2)[0].scores  # text queries only


def test_keyword_index_is_saved_and_reused_for_the_same_index(hybrid, photos, tmp_path):
    from mmsearch.search.keywords import KeywordIndex

    index = hybrid.keyword_index()
    path = Path(hybrid.config.db) / "keywords.npz"
    key = (hybrid.store.identity(), hybrid.store.schema_version())
    loaded = KeywordIndex.load(path, key)
    assert loaded is not None and loaded.ids == index.ids and loaded.texts == index.texts
    assert loaded.through == index.through == hybrid.store.write_seq() + 1
    assert loaded.search("虎斑猫 sofa", 5) == index.search("虎斑猫 sofa", 5)
    assert KeywordIndex.load(path, ("another collection", key[1])) is None  # an index made again: rebuilt
    assert KeywordIndex.load(path, (key[0], key[1] + 1)) is None  # a schema step rewrote the records
    empty = KeywordIndex.build([])
    empty.save(tmp_path / "empty.npz", (0, 0))
    assert len(KeywordIndex.load(tmp_path / "empty.npz", (0, 0))) == 0


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated", None])
def test_a_damaged_keyword_file_is_rebuilt_not_fatal(hybrid, damage):
    path = Path(hybrid.config.db) / "keywords.npz"
    hybrid.keyword_index()
    if damage is None:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # cut in the middle
    else:
        path.write_bytes(damage)
    from mmsearch import SearchEngine

    fresh = SearchEngine(config=hybrid.config, encoders=hybrid.encoders)
    assert Path(fresh.search("虎斑猫", k=1)[0].path).name == "tabby.jpg"
    key = (fresh.store.identity(), fresh.store.schema_version())
    from mmsearch.search.keywords import KeywordIndex

    assert KeywordIndex.load(path, key) is not None  # rewritten whole


def test_any_character_in_a_caption_survives_the_keyword_file(tmp_path):
    from mmsearch.search.keywords import KeywordIndex

    texts = ["nul\x00inside", "", "tab\tand\nnewline", "一只猫", "lone \udcff surrogate"]
    index = KeywordIndex.build([(f"id{n}", t) for n, t in enumerate(texts)])
    index.save(tmp_path / "k.npz", (1, 2))
    loaded = KeywordIndex.load(tmp_path / "k.npz", (1, 2))
    assert loaded.ids == index.ids and loaded.texts == index.texts and len(loaded) == 5
    assert loaded.search("inside", 5) == index.search("inside", 5) == {"id0": pytest.approx(index.search("inside", 5)["id0"])}
