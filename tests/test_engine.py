"""SearchEngine end to end: indexing, incremental runs, fused search, filters, model mismatch, offline profile."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from helpers import index_photos, names, save_image, unit
from PIL import Image

from mmsearch import IndexMismatchError, QueryError, SearchEngine
from mmsearch.encoders import Encoders
from mmsearch.search.fusion import fuse


def _index(engine: SearchEngine, photos) -> object:
    return index_photos(engine, photos)


def test_index_reports_counts_and_stores_every_caption_source(make_engine, photos):
    engine = make_engine()
    report = _index(engine, photos)
    assert (report.added, report.updated, report.unchanged, report.removed, report.failed) == (6, 0, 0, 0, [])
    stats = engine.stats()
    assert stats["images"] == 6 and stats["captions"] == 5  # 4 from the manifest, 1 sidecar
    assert stats["roots"] == [str(photos)] and stats["dim"] == 384 and stats["updated_at"] > 0
    pasta = engine.search("spaghetti", k=6, folder=photos)
    meta = next(h.metadata for h in pasta if h.path.endswith("pasta.jpg"))
    assert meta["captions"] == ["a plate of spaghetti with tomato sauce"]
    assert (meta["width"], meta["height"], meta["size"]) == (96, 64, (photos / "pasta.jpg").stat().st_size)
    assert len(meta["sha256"]) == 64 and meta["folder"] == str(photos)


@pytest.mark.parametrize(("query", "expected"), [
    ("a crimson bike", "red_bicycle.png"),
    ("a kitten napping on the couch", "black_cat.jpg"),
    ("pasta for dinner", "pasta.jpg"),
    ("ocean shore in the evening", "beach.jpg"),
    ("alpine summit covered in snow", "mountain.png"),
])
def test_paraphrased_queries_rank_the_captioned_image_first(make_engine, photos, query, expected):
    # Random CLIP weights make the image signal noise, so rank by the (real MiniLM) caption signal alone.
    engine = make_engine(caption_weight=1.0)
    _index(engine, photos)
    hits = engine.search(query, k=3)
    assert names(hits)[0] == expected
    others = [h.scores["caption"] for h in hits[1:] if h.scores["caption"] is not None]
    assert hits[0].caption and others and all(hits[0].scores["caption"] > o for o in others)


def test_every_hit_shows_every_signal_and_the_image_score_is_the_cosine(make_engine, photos):
    engine = make_engine()
    _index(engine, photos)
    hits = engine.search("a black cat", k=6)
    assert len(hits) == 6 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    query = engine.query_vector("a black cat")
    stored = engine.store.image_vectors([_id(h.path) for h in hits])
    for hit in hits:
        assert set(hit.scores) == {"image", "caption", "keyword"}
        assert hit.scores["image"] == pytest.approx(float(stored[_id(hit.path)] @ query), abs=1e-5)
    uncaptioned = next(h for h in hits if h.path.endswith("uncaptioned.jpg"))
    assert uncaptioned.scores["caption"] is None and uncaptioned.caption == ""
    assert uncaptioned.scores["keyword"] == 0.0
    cat = next(h for h in hits if h.path.endswith("black_cat.jpg"))
    assert cat.scores["keyword"] == max(h.scores["keyword"] for h in hits) > 0  # "black", "cat" in caption and name


def _id(path: str) -> str:
    from mmsearch.ingest.indexer import image_id

    return image_id(path)


class ColourEncoder:
    """Constructed vectors: an image maps to its mean colour, a text to the colour words it contains."""

    model_id, dim = "test:colour", 8
    WORDS = {"red": 0, "green": 1, "blue": 2}

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        rows = [np.r_[np.asarray(im, dtype=np.float32).reshape(-1, 3).mean(0), np.full(5, 1.0)] for im in images]
        return np.stack([unit(r) for r in rows]).astype(np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            row = np.full(8, 0.01, dtype=np.float32)
            for word, axis in self.WORDS.items():
                row[axis] += text.count(word)
            rows.append(unit(row))
        return np.stack(rows).astype(np.float32)


def test_constructed_vectors_rank_by_the_image_signal(tmp_path):
    encoder = ColourEncoder()
    engine = SearchEngine(tmp_path / "db", encoders=Encoders(image=encoder, text=encoder), caption_weight=0.0)
    for name, colour in [("r.png", (250, 5, 5)), ("g.png", (5, 250, 5)), ("b.png", (5, 5, 250)), ("rb.png", (200, 5, 200))]:
        save_image(tmp_path / "img" / name, colour)
    assert engine.index([tmp_path / "img"]).added == 4
    assert names(engine.search("blue", k=4))[:2] == ["b.png", "rb.png"]
    assert names(engine.search("red", k=1)) == ["r.png"]
    assert names(engine.search("green", k=1)) == ["g.png"]
    hits = engine.search_image(tmp_path / "img" / "rb.png", k=4)
    assert names(hits)[0] == "rb.png" and hits[0].scores["image"] == pytest.approx(1.0, abs=1e-5)


def test_fusion_normalises_each_signal_and_falls_back_to_the_available_one():
    fused = fuse({"a": {"image": 0.30, "caption": 0.90}, "b": {"image": 0.20, "caption": 0.50},
                  "c": {"image": 0.25, "caption": None}}, {"image": 0.5, "caption": 0.5})
    assert fused["a"] == pytest.approx(1.0) and fused["b"] == pytest.approx(0.0)
    assert fused["c"] == pytest.approx(0.5)  # image only: (0.25 - 0.20) / (0.30 - 0.20)
    assert fuse({"x": {"image": None, "caption": None}}, {"image": 1, "caption": 1}) == {"x": 0.0}


def test_reindex_encodes_nothing_when_nothing_changed(make_engine, photos, monkeypatch):
    engine = make_engine()
    _index(engine, photos)
    calls = []
    for method in ("encode_images", "encode_prepared"):  # the indexer uses the latter
        monkeypatch.setattr(engine.encoders.image, method, lambda images: calls.append(images))
    report = _index(engine, photos)
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 0, 6, 0)
    assert calls == []


def test_deleted_file_disappears_and_changed_file_is_reencoded(make_engine, photos):
    engine = make_engine()
    _index(engine, photos)
    before = engine.store.image_vectors([_id(str(photos / "black_cat.jpg"))])
    (photos / "pasta.jpg").unlink()
    save_image(photos / "black_cat.jpg", (250, 250, 250), size=(120, 90))
    report = _index(engine, photos)
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 4, 1)
    assert engine.stats()["images"] == 5 and engine.stats()["captions"] == 4
    assert all(not h.path.endswith("pasta.jpg") for h in engine.search("spaghetti", k=10))
    after = engine.store.image_vectors([_id(str(photos / "black_cat.jpg"))])
    key = _id(str(photos / "black_cat.jpg"))
    assert float(before[key] @ after[key]) < 0.9999
    assert engine.store.image_metadata([key])[key]["width"] == 120


def test_changed_caption_updates_the_image(make_engine, photos):
    engine = make_engine(caption_weight=1.0)
    _index(engine, photos)
    (photos / "pasta.jpg.txt").write_text("a bowl of ramen noodle soup\n")
    report = _index(engine, photos)
    assert (report.updated, report.unchanged) == (1, 5)
    hit = engine.search("japanese noodles", k=1)[0]
    assert hit.path.endswith("pasta.jpg") and hit.caption == "a bowl of ramen noodle soup"


def test_other_models_on_an_existing_index_raise_index_mismatch(make_engine, photos, tiny_config, tmp_path):
    _index(make_engine(), photos)
    engine = SearchEngine(tmp_path / "db", config=tiny_config, text_model="clip")
    with pytest.raises(IndexMismatchError) as err:
        engine.search("a cat")
    message = str(err.value)
    assert "all-MiniLM-L6-v2" in message and "leave out the model options" in message and "mmsearch reindex" in message
    assert "delet" not in message  # a flag fixes this; no message suggests deleting data


def test_models_belong_to_the_index_commands_without_model_options_use_them(photos, tmp_path, monkeypatch, capsys):
    from mmsearch.cli import main

    for var in ("MMSEARCH_CLIP_MODEL", "MMSEARCH_CLIP_PRETRAINED", "MMSEARCH_TEXT_MODEL"):
        monkeypatch.delenv(var, raising=False)
    db = str(tmp_path / "offline-db")
    assert main(["index", str(photos), "--db", db, "--offline", "--captions", str(photos / "captions.csv")]) == 0
    capsys.readouterr()
    assert main(["stats", "--db", db, "--json"]) == 0  # no --offline: the index says which models it has
    assert '"image_model": "none"' in capsys.readouterr().out
    assert main(["search", "a kitten napping on the couch", "--db", db, "-k", "1"]) == 0
    assert "black_cat.jpg" in capsys.readouterr().out
    assert main(["index", str(photos), "--db", db]) == 0  # a later run keeps the index's models too
    assert "unchanged 6" in capsys.readouterr().out
    assert SearchEngine(db).signature["image_model"] == "none"  # the library as well
    assert main(["search", "a cat", "--db", db, "--clip-pretrained", "openai"]) == 1  # explicit other models
    err = capsys.readouterr().err
    assert "offline profile" in err and "leave out the model options" in err and "delet" not in err


def test_filters_folder_date_and_camera(make_engine, photos):
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"
    exif.get_ifd(0x8769)[0x9003] = "2019:08:01 12:00:00"
    save_image(photos / "holidays" / "canon.jpg", (90, 90, 200), exif=exif)
    engine = make_engine()
    _index(engine, photos)
    assert sorted(names(engine.search("anything", k=10, folder=photos / "holidays"))) == [
        "beach.jpg", "canon.jpg", "mountain.png", "uncaptioned.jpg"]
    assert len(engine.search("anything", k=10, folder="holidays")) == 4  # relative to the indexed root
    assert names(engine.search("anything", k=10, camera="Canon EOS 5D")) == ["canon.jpg"]
    assert names(engine.search("anything", k=10, date_from="2019-08-01", date_to="2019-08-01")) == ["canon.jpg"]
    assert "canon.jpg" not in names(engine.search("anything", k=10, date_from="2020-01-01"))
    assert engine.search("anything", k=10, folder=photos / "nothing-here") == []


def test_a_query_text_asked_again_is_not_encoded_again(make_engine, photos, monkeypatch):
    # The page asks the same text again whenever a filter, the order or the number of hits changes.
    engine = make_engine()
    _index(engine, photos)
    encoder, encoded = engine.session.text_encoder, []
    encode = encoder.encode_texts
    monkeypatch.setattr(encoder, "encode_texts", lambda texts: encoded.extend(texts) or encode(texts))
    first = engine.search("a black cat", k=6)
    assert encoded == ["a black cat"]
    assert names(engine.search("a black cat", k=6, folder=photos / "holidays")) != names(first)
    assert engine.search("a black cat", k=6) == first and names(engine.search("a black cat", k=2)) == names(first)[:2]
    engine.search("a black cat -spaghetti", k=6)
    engine.search("a red bicycle -spaghetti", k=6)
    assert encoded == ["a black cat", "spaghetti", "a red bicycle"]  # each text once, an excluded word too
    assert engine.search("a black cat", k=6) == make_engine(engine.config.db).search("a black cat", k=6)
    with pytest.raises(ValueError):
        engine.session.query_vector("a black cat")[0][0] = 0.0  # a kept vector is read-only


def test_image_query_finds_the_same_image_and_combined_query_mixes_vectors(make_engine, photos):
    engine = make_engine()
    _index(engine, photos)
    hits = engine.search_image(photos / "holidays" / "beach.jpg", k=3)
    assert names(hits)[0] == "beach.jpg" and hits[0].scores["image"] == pytest.approx(1.0, abs=1e-4)
    assert names(engine.search_image(Image.open(photos / "red_bicycle.png"), k=1)) == ["red_bicycle.png"]
    text = engine.encoders.text.encode_texts(["at night"])[0]
    image = engine.encoders.image.encode_images([Image.open(photos / "pasta.jpg").convert("RGB")])[0]
    combined = engine.query_vector("at night", photos / "pasta.jpg", text_weight=0.3)
    np.testing.assert_allclose(combined, unit(0.3 * text + 0.7 * image), atol=1e-5)
    assert len(engine.search("at night", image=photos / "pasta.jpg", k=3)) == 3


def test_unreadable_files_are_skipped_and_reported(make_engine, photos):
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "empty.png").write_bytes(b"")
    report = _index(make_engine(), photos)
    assert report.added == 6
    assert sorted(report.failed) == [(str(photos / "broken.jpg"), "not an image Pillow can identify"),
                                     (str(photos / "empty.png"), "empty file (0 bytes)")]


def test_offline_profile_searches_captions_and_marks_the_image_signal_unavailable(tmp_path, photos, tiny_encoders):
    engine = SearchEngine(tmp_path / "db", encoders=Encoders(image=None, text=tiny_encoders.text))
    assert _index(engine, photos).added == 6
    hits = engine.search("a kitten napping on the couch", k=10)
    assert names(hits)[0] == "black_cat.jpg"
    assert all(h.scores["image"] is None for h in hits)
    assert "uncaptioned.jpg" not in names(hits)  # nothing to find it by without an image model
    assert engine.stats()["image_model"] == "none"
    with pytest.raises(QueryError, match="image queries need an image encoder"):
        engine.search_image(photos / "pasta.jpg")


def test_empty_query_and_empty_index(make_engine):
    engine = make_engine()
    with pytest.raises(QueryError):
        engine.search("  ")
    assert engine.search("a cat") == []
    assert engine.stats()["images"] == 0


def test_renamed_and_moved_files_keep_their_vectors_without_reencoding(make_engine, photos, monkeypatch):
    engine = make_engine(caption_weight=1.0)
    _index(engine, photos)
    old = _id(str(photos / "pasta.jpg"))
    vector = engine.store.image_vectors([old])[old]
    (photos / "dinner").mkdir()
    (photos / "pasta.jpg").rename(photos / "dinner" / "my pasta.jpg")
    (photos / "pasta.jpg.txt").rename(photos / "dinner" / "my pasta.jpg.txt")
    (photos / "holidays" / "uncaptioned.jpg").rename(photos / "green.jpg")
    calls = []
    for method in ("encode_images", "encode_prepared"):  # the indexer uses the latter
        monkeypatch.setattr(engine.encoders.image, method, lambda images: calls.append(images))
    report = _index(engine, photos)
    assert (report.added, report.updated, report.unchanged, report.moved, report.removed) == (0, 0, 4, 2, 0)
    assert calls == []
    new = _id(str(photos / "dinner" / "my pasta.jpg"))
    np.testing.assert_allclose(engine.store.image_vectors([new])[new], vector, atol=1e-6)
    assert engine.store.image_vectors([old]) == {}
    hit = engine.search("pasta for dinner", k=1)[0]
    assert hit.path == str(photos / "dinner" / "my pasta.jpg") and hit.caption == "a plate of spaghetti with tomato sauce"
    assert hit.metadata["folder"] == str(photos / "dinner") and engine.stats()["captions"] == 5
    assert len(engine.search("anything", k=10, folder=photos / "dinner")) == 1
    assert engine.stats()["images"] == 6


def test_captions_are_read_by_id_in_rounds_until_an_image_has_no_more(tmp_path):
    from mmsearch.store.client import Store

    store = Store(tmp_path / "db")
    store.create({"image_model": "m", "text_model": "m"}, 4)
    counts = {"none": 0, "one": 1, "three": 3, "seven": 7, "nine": 9}
    rng = np.random.default_rng(0)
    metas = [{"path": f"/p/{name}.jpg", "name": f"{name}.jpg", "folder": "/p", "folders": ["/", "/p"]} for name in counts]
    captions = [[(f"{name} {n}", "manifest") for n in range(c)] for name, c in counts.items()]
    store.put(list(counts), rng.standard_normal((5, 4)).astype(np.float32), metas, captions,
              rng.standard_normal((sum(counts.values()), 4)).astype(np.float32))
    asked = []
    original = store.caption_vectors_by_id
    store.caption_vectors_by_id = lambda ids: asked.append(len(ids)) or original(ids)  # type: ignore[method-assign]

    found = store.caption_vectors_of(list(counts) + ["missing"])

    assert sorted(found) == sorted(f"{name}:{n}" for name, c in counts.items() for n in range(c))
    # ids 0-2 of all six; 3-8 of those with a caption 2 (three, seven, nine); 9-20 of those with a caption 8 (nine)
    assert asked == [6 * 3, 3 * 6, 1 * 12]


def test_candidates_missing_from_the_caption_search_get_the_same_caption_scores(make_engine, photos, monkeypatch):
    engine = make_engine()
    _index(engine, photos)
    want = {h.path: (h.scores, h.caption) for h in engine.search("a cat sleeping on a sofa", k=12)}
    monkeypatch.setattr(engine.store, "query_captions", lambda *args: [])  # every caption score is then read by id

    got = {h.path: (h.scores, h.caption) for h in engine.search("a cat sleeping on a sofa", k=12)}

    # Chroma's distance and numpy's product of the same float32 vectors differ in the last bits, which a
    # score rounded to 6 places can show
    assert got.keys() == want.keys() and any(caption for _, caption in got.values())
    for path, (scores, caption) in got.items():
        assert caption == want[path][1] and scores == pytest.approx(want[path][0], abs=2e-6)


def test_progress_callback_counts_stored_images_without_a_progress_bar(make_engine, photos):
    calls: list[tuple[int, int]] = []
    report = make_engine().index([photos], batch_size=2, on_progress=lambda done, total: calls.append((done, total)))
    total = report.added + len(report.failed)
    assert total >= 6 and calls[-1] == (total, total)
    assert [done for done, _ in calls] == list(range(2, total, 2)) + [total]
