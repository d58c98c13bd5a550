"""A caption space of its own: captions and photo text embedded by a caption model (any sentence-transformers
model, in its own dimension) while the text model keeps embedding queries into the image space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import count_encoder_calls, index_photos, make_photos, tiny_sentence_model

from mmsearch import IndexMismatchError, SearchEngine
from mmsearch.encoders.sentence import SentenceEncoder


@pytest.fixture
def settings(clip256) -> dict:
    """CLIP's own text tower for queries into the image space; captions get the caption model."""
    return {"clip_model": clip256[0], "clip_pretrained": clip256[1], "text_model": "clip", "caption_weight": 1.0}


@pytest.fixture(scope="module")
def m3e_shaped(tmp_path_factory, minilm) -> str:
    return str(tiny_sentence_model(tmp_path_factory.mktemp("m3e"), minilm, "bert", "mean", hidden=48))


@pytest.fixture(scope="module")
def bge_m3_shaped(tmp_path_factory, minilm) -> str:
    return str(tiny_sentence_model(tmp_path_factory.mktemp("bge-m3"), minilm, "xlmr", "cls", normalize=True))


@pytest.mark.parametrize("query, want", [
    ("a kitten napping on the couch", "black_cat.jpg"),
    ("a bike parked by a wall", "red_bicycle.png"),
    ("pasta for dinner", "pasta.jpg"),
    ("the sea at dusk", "beach.jpg"),
])
def test_paraphrases_find_captioned_photos_through_the_caption_model(tmp_path, settings, minilm, query, want):
    engine = SearchEngine(tmp_path / "db", caption_model=minilm, **settings)
    photos = make_photos(tmp_path / "photos")
    assert index_photos(engine, photos).added == 6
    assert engine.encoders.dim == 256 and engine.encoders.captions.dim == 384
    hit = engine.search(query, k=1)[0]
    assert Path(hit.path).name == want and hit.scores["caption"] > 0.3
    stats = engine.stats()
    assert stats["caption_model"].endswith("all-MiniLM-L6-v2") and stats["text_model"].startswith("open_clip:")


def test_without_a_caption_model_captions_stay_in_the_text_models_space(tmp_path, settings):
    engine = SearchEngine(tmp_path / "db", **settings)
    photos = make_photos(tmp_path / "photos")
    index_photos(engine, photos)
    assert not engine.has_caption_space and engine.encoders.captions is engine.encoders.text
    assert engine.stats()["caption_model"] == engine.stats()["text_model"]


def test_changing_the_caption_model_embeds_captions_again_and_never_images(tmp_path, settings, minilm, m3e_shaped,
                                                                            monkeypatch):
    photos = make_photos(tmp_path / "photos")
    first = SearchEngine(tmp_path / "db", caption_model=minilm, **settings)
    index_photos(first, photos)
    ids = [entry.id for entry in first.store.entries().values()]
    before = first.store.image_vectors(ids)

    engine = SearchEngine(tmp_path / "db", caption_model=m3e_shaped, **settings)
    assert engine.caption_space_mismatch() is not None
    with pytest.raises(IndexMismatchError, match=r"mmsearch reindex --caption-model"):
        engine.search("a cat", k=1)
    with pytest.raises(IndexMismatchError, match=r"mmsearch reindex --caption-model"):
        index_photos(engine, photos)
    images, texts = count_encoder_calls(monkeypatch, engine.encoders.image, engine.encoders.captions)
    report = engine.reindex()
    assert report.switched and (report.images_encoded, report.images_copied, report.texts_embedded) == (0, 6, 5)
    assert report.final is not None and report.final.unchanged == 6
    assert images == [] and len(texts) == 5  # the five stored captions, nothing else
    assert engine.caption_space_mismatch() is None and engine.stats()["captions"] == 5
    hit = engine.search("a black cat sleeping on a sofa", k=1)[0]
    assert hit.path.endswith("black_cat.jpg") and hit.scores["caption"] == pytest.approx(1.0, abs=1e-5)
    after = engine.store.image_vectors(ids)
    # copied, not encoded: equal up to the ~1e-8 Chroma gives back
    assert after.keys() == before.keys() and all(np.allclose(after[i], before[i], rtol=0, atol=1e-6) for i in ids)

    # Models belong to the index: an engine without --caption-model uses the one it records.
    later = SearchEngine(tmp_path / "db", **settings)
    assert later.search("a black cat sleeping on a sofa", k=1)[0].path.endswith("black_cat.jpg")
    assert later.config.caption_model == m3e_shaped and later.caption_encoder.dim == 48


@pytest.mark.parametrize("shape", ["m3e_shaped", "bge_m3_shaped"])
def test_bge_m3_and_m3e_shaped_folders_load_without_torch_with_sentence_transformers_vectors(shape, request):
    from sentence_transformers import SentenceTransformer

    folder = request.getfixturevalue(shape)
    lean = SentenceEncoder(folder)
    assert lean.runtime == "onnxruntime" and lean.dim == (48 if shape == "m3e_shaped" else 64)
    texts = ["一只猫", "a red bicycle", "ein Hund am Strand"]
    want = SentenceTransformer(folder, device="cpu").encode(texts, normalize_embeddings=True)
    got = lean.encode_texts(texts)
    assert got.shape == (3, lean.dim)
    assert np.sum(got * want, axis=1).min() >= 0.9999


def test_custom_code_models_need_trust_remote_code(tmp_path, minilm):
    import shutil

    from mmsearch import Config, ModelLoadError
    from mmsearch.encoders import load_caption_encoder

    folder = tmp_path / "custom"
    shutil.copytree(minilm, folder)
    config_file = next(folder.rglob("config.json"))
    data = json.loads(config_file.read_text())
    data["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig",
                        "AutoModel": "modeling_custom.CustomModel"}  # what GTE's folder declares
    data["model_type"] = "new"  # GTE's: no class of that name in transformers itself
    config_file.write_text(json.dumps(data))
    for module in ("configuration_custom.py", "modeling_custom.py"):
        (config_file.parent / module).write_text("raise RuntimeError('custom code ran')\n")
    config = Config(db="x", caption_model=str(folder), text_runtime="torch")
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        load_caption_encoder(config)
    with pytest.raises(ModelLoadError, match="custom code ran"):  # allowed: the repository's code runs
        load_caption_encoder(Config(db="x", caption_model=str(folder), text_runtime="torch", trust_remote_code=True))


def test_the_command_line_says_which_model_scored_the_captions(tmp_path, clip256, minilm, monkeypatch, capsys):
    from mmsearch.cli import main

    photos = make_photos(tmp_path / "photos")
    monkeypatch.setenv("MMSEARCH_DB", str(tmp_path / "db"))
    models = ["--clip-model", clip256[0], "--clip-pretrained", clip256[1], "--text-model", "clip"]
    assert main(["index", str(photos), "--captions", str(photos / "captions.csv"), "--caption-model", minilm, *models]) == 0
    capsys.readouterr()
    assert main(["search", "a kitten napping on the couch", "-k", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["models"]["caption"].endswith("all-MiniLM-L6-v2") and out["models"]["text"].startswith("open_clip:")
    assert main(["search", "a kitten napping on the couch", "-k", "1"]) == 0
    assert "caption and ocr scores by sentence-transformers:" in capsys.readouterr().out
    assert main(["stats"]) == 0
    assert "caption model   sentence-transformers:" in capsys.readouterr().out


def test_image_example_and_mixed_queries_work_across_the_two_spaces(tmp_path, settings, minilm):
    engine = SearchEngine(tmp_path / "db", caption_model=minilm, ocr=False, **settings)
    photos = make_photos(tmp_path / "photos")
    index_photos(engine, photos)
    cat = photos / "black_cat.jpg"
    assert Path(engine.search_image(cat, k=1)[0].path).name == "black_cat.jpg"  # image space only
    liked = engine.search(None, positive=[cat], k=2)  # examples alone: their image vectors
    assert Path(liked[0].path).name == "black_cat.jpg"
    both = engine.search("a kitten napping on the couch", image=cat, k=1)[0]
    assert Path(both.path).name == "black_cat.jpg" and both.scores["caption"] > 0.3
    refined = engine.search("a sleeping animal", positive=[cat], negative=[photos / "pasta.jpg"], k=1)[0]
    assert Path(refined.path).name == "black_cat.jpg"
    assert Path(engine.similar(cat, k=1)[0].path).name != "black_cat.jpg"


def test_export_and_import_keep_the_caption_space(tmp_path, settings, minilm):
    from mmsearch.transfer import export_index, import_index

    engine = SearchEngine(tmp_path / "db", caption_model=minilm, **settings)
    photos = make_photos(tmp_path / "photos")
    index_photos(engine, photos)
    export_index(engine.store, tmp_path / "export")
    copy = SearchEngine(tmp_path / "copy", **settings)
    import_index(copy.store, tmp_path / "export")
    again = SearchEngine(tmp_path / "copy", **settings)  # adopts the caption model the import recorded
    assert again.stats()["caption_model"] == engine.stats()["caption_model"]
    assert again.search("a kitten napping on the couch", k=1)[0].path.endswith("black_cat.jpg")
