"""Answers users can trust: calibrated relevance ("nothing matches" is an answer), stop words that match
nothing, and copies of one photo folded into one hit."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import index_photos, make_photos, names
from PIL import Image

from mmsearch import Config, SearchEngine
from mmsearch.cli import main
from mmsearch.ids import image_id
from mmsearch.search.keywords import KeywordIndex, query_tokens
from mmsearch.search.ocr_matcher import OcrMatcher
from mmsearch.search.relevance import ALPHA, combine, lexical, tail

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
NOTHING = ["xyzzyqwerty", "a of the", "кошка", "一只猫"]  # gibberish, stop words, scripts no caption has


@pytest.fixture
def offline(tmp_path: Path) -> SearchEngine:
    """An offline index (the packaged MiniLM over captions, no image model) of photos with English captions."""
    photos = make_photos(tmp_path / "photos")
    for source in ("rocket.jpg", "coffee.png", "chelsea-cat.png", "flower.jpg"):
        shutil.copy(SAMPLES / source, photos / source)
    (photos / "rocket.jpg.txt").write_text("a rocket lifting off from the launch pad\n")
    (photos / "coffee.png.txt").write_text("a cup of coffee with latte art\n")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    index_photos(engine, photos)
    return engine


def test_queries_nothing_matches_get_an_empty_answer_and_all_shows_the_nearest(offline, capsys, monkeypatch):
    for query in NOTHING:
        assert offline.search(query, k=5, min_relevance=0.5) == [], query
        nearest = offline.search(query, k=5)  # the library's default: the nearest k, with their relevance
        assert len(nearest) == 5 and all(0.0 <= h.relevance < 0.5 for h in nearest), query
    monkeypatch.setenv("MMSEARCH_DB", offline.config.db)
    assert main(["search", "xyzzyqwerty", "--offline"]) == 0
    assert capsys.readouterr().out.strip() == "no close matches for 'xyzzyqwerty'; --all shows the nearest"
    assert main(["search", "xyzzyqwerty", "--offline", "--all", "-k", "3"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line[:2].strip().isdigit()]) == 3


def test_a_real_query_keeps_its_right_answer_by_default(offline):
    for query, right in (("a black cat", "black_cat.jpg"), ("rocket launch", "rocket.jpg"), ("coffee", "coffee.png"),
                         ("spaghetti", "pasta.jpg"), ("chelsea-cat.png", "chelsea-cat.png")):
        hits = offline.search(query, k=5, min_relevance=0.5)
        assert names(hits)[:1] == [right] and hits[0].relevance >= 0.5, (query, [(h.path, h.relevance) for h in hits])
        assert all(h.relevance >= 0.5 for h in hits)
    unrelated = offline.search("a black cat", k=10)  # the filler ranks below, with a low relevance
    assert [h.relevance < 0.5 for h in unrelated if Path(h.path).name == "coffee.png"] == [True]


def _one_share(background: np.ndarray, x: float) -> float:
    """The noise share of one sample as the module docstring defines it, one numpy call at a time."""
    from scipy.special import stdtr

    centre = float(np.median(background))
    spreads = [1.4826 * float(np.median(np.abs(background - centre))), float(background.std()), 0.01]
    if len(background) >= 100:
        spreads.append((float(np.percentile(background, 95)) - centre) / 1.645)
    return float(stdtr(len(background) - 1, -(x - centre) / (max(spreads) * np.sqrt(1 + 1 / len(background)))))


@pytest.mark.parametrize("size", [4, 7, 99, 100, 512])
def test_each_hit_is_measured_against_the_background_without_its_own_records(size):
    rng = np.random.default_rng(size)
    background = rng.normal(0.2, 0.05, size)
    owners = [f"img{rng.integers(0, size // 2 + 1)}" for _ in range(size)]
    scores = {f"img{i}": float(rng.normal(0.3, 0.1)) for i in range(size // 2 + 3)} | {"none": None}
    got = tail(scores, background, 1000, owners)
    expected = {}
    for image, value in scores.items():
        own = [row for row, owner in enumerate(owners) if owner == image]
        if value is not None and size - len(own) >= 3:
            expected[image] = 1 / (1 + 1000 * _one_share(np.delete(background, own), value) / ALPHA)
    assert got.keys() == expected.keys() and any(image in owners for image in got)
    assert all(got[i] == pytest.approx(expected[i], rel=1e-9, abs=1e-12) for i in got)


def test_relevance_is_one_scale_not_a_rescaling_of_the_candidates(offline):
    gibberish, real = offline.search("xyzzyqwerty", k=3), offline.search("a black cat", k=3)
    assert gibberish[0].score == pytest.approx(1.0) == real[0].score  # the fused score is relative...
    assert gibberish[0].relevance < 0.2 < 0.9 < real[0].relevance  # ...relevance is not


def test_tail_calibration_on_planted_data():
    rng = np.random.default_rng(1)
    library = rng.normal(0.2, 0.03, 5000)
    library[:3] += 0.25  # three right images, far above the noise
    relevance = tail(dict(enumerate(library.tolist())), library[rng.choice(5000, 512, replace=False)], 5000)
    kept = sorted(i for i, r in relevance.items() if r >= 0.5)
    assert kept == [0, 1, 2]
    false = 0  # queries with no right image: how often the largest of 5,000 noise scores passes as a match
    for _ in range(200):
        noise = rng.normal(0.2, 0.03, 5000)
        false += tail({0: float(noise.max())}, noise[rng.choice(5000, 512, replace=False)], 5000)[0] >= 0.5
    assert false / 200 < 0.15  # about ALPHA (0.05) for Gaussian noise
    assert tail({0: 0.9}, np.array([0.1, 0.2]), 10) is None  # two background scores say nothing
    assert lexical(0.5) == 0.25 and lexical(1.0) == 1.0 and combine([0.5, 0.5]) == 0.75 and combine([None]) == 0.0
    assert 0 < ALPHA < 1


def test_stop_words_carry_no_keyword_weight_and_quoted_phrases_still_match():
    index = KeywordIndex.build([("a", "flower-of-life.jpg"), ("b", "a graph of performance"), ("c", "scatter plot")])
    assert not index.score_array("a of").any() and query_tokens("a of the") == []
    assert index.score_array("flower of life").tolist() == index.score_array("flower life").tolist()
    assert index.coverage("a graph of performance", ["a", "b", "c"]) == {"b": 1.0}
    assert set(index.search('"graph of performance"', 5)) == {"b"}  # inside quotes the words count
    assert index.search('"graph for performance"', 5) == {}
    assert query_tokens("我的猫") == ["我", "猫", "我的", "的猫"]  # 的 alone is no term; its bigrams are
    ocr = OcrMatcher({"x": "EXIT OF THE BUILDING", "y": "OFFICE"})
    assert ocr.scores("of the") == {} and ocr.scores("exit of") == {"x": 1.0}


@pytest.fixture
def copies(tmp_path: Path) -> Path:
    """Four copies of one photo (bytes, half size at JPEG 40, PNG, +8 % brightness) among other photos."""
    from PIL import ImageEnhance

    root = tmp_path / "copies"
    root.mkdir()
    shutil.copy(SAMPLES / "rocket.jpg", root / "rocket.jpg")
    shutil.copy(SAMPLES / "rocket.jpg", root / "rocket-copy.jpg")
    with Image.open(SAMPLES / "rocket.jpg") as rocket:
        rocket.resize((rocket.width // 2, rocket.height // 2)).save(root / "rocket-small.jpg", quality=40)
        ImageEnhance.Brightness(rocket.convert("RGB")).enhance(1.08).save(root / "rocket-bright.png")
    for other in ("coffee.png", "flower.jpg", "china-temple.jpg"):
        shutil.copy(SAMPLES / other, root / other)
    for name in ("rocket.jpg", "rocket-copy.jpg", "rocket-small.jpg", "rocket-bright.png"):
        (root / f"{name}.txt").write_text("a rocket lifting off from the launch pad\n")
    return root


@pytest.mark.parametrize("profile", ["offline", "image model"])
def test_four_copies_of_a_photo_show_as_one_hit_naming_the_other_three(copies, tmp_path, profile, tiny_config,
                                                                         tiny_encoders):
    if profile == "offline":
        engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    else:
        engine = SearchEngine(tmp_path / "db", config=tiny_config, encoders=tiny_encoders)
    engine.index([copies])
    rockets = ["rocket-bright.png", "rocket-copy.jpg", "rocket-small.jpg", "rocket.jpg"]
    plain = engine.search("rocket launch", k=7)  # every file found, copies included
    assert set(rockets) <= set(names(plain))
    folded = engine.search("rocket launch", k=7, collapse=True)
    assert len(folded) == len(plain) - 3 and [len(h.similar) for h in folded].count(3) == 1
    head = next(h for h in folded if h.similar)
    assert sorted(Path(p).name for p in [head.path, *head.similar]) == rockets
    assert not any(h.similar for h in folded if h is not head)  # the other photos stay apart


def test_copies_the_image_query_found_fold_by_their_stored_vectors(copies, tmp_path, tiny_config, tiny_encoders,
                                                                    monkeypatch):
    """The image query's own finds are scored from its distances, not read back; the duplicate rule still gets
    their stored vectors' cosine (None would mean "no image model" and skip that check)."""
    import mmsearch.search.collapse as collapse_module
    from mmsearch.store.client import Store

    engine = SearchEngine(tmp_path / "db", config=tiny_config, encoders=tiny_encoders)
    engine.index([copies])
    stored = engine.store.image_vectors(engine.store.image_ids())
    metadata = engine.store.image_metadata(list(stored))
    engine.search("a first search", k=7)  # loads what every search shares (the library sample)
    reads, cosines, real_read, real_rule = [], {}, Store.image_vectors, collapse_module.same_photo

    def read(store, ids, where=None):
        if not threading.current_thread().name.startswith("mmsearch-query"):  # not a find's own read
            reads.append(list(ids))
        return real_read(store, ids, where)

    def rule(a, b, cosine=None, **kwargs):
        cosines[(a.sha256, b.sha256)] = cosine
        return real_rule(a, b, cosine, **kwargs)

    monkeypatch.setattr(Store, "image_vectors", read)
    monkeypatch.setattr(collapse_module, "same_photo", rule)
    plain = engine.search("rocket launch", k=7)
    assert len(plain) == 7 and not any(reads)  # every photo came from the image query: none read back
    folded = engine.search("rocket launch", k=7, collapse=True)
    names = sorted(Path(m["path"]).name for m in metadata.values())
    assert len(folded) == 4 and sorted(Path(p).name for h in folded for p in [h.path, *h.similar]) == names
    assert cosines and None not in cosines.values()
    by_hash = {metadata[i]["sha256"]: v for i, v in stored.items()}
    for (a, b), cosine in cosines.items():
        if a != b:
            assert cosine == pytest.approx(float(by_hash[a] @ by_hash[b]), abs=1e-6)


def test_vectors_of_reads_the_missing_ones_once_and_lists_only_those_that_exist():
    from mmsearch.search.ranking import Candidates

    class Store:
        def __init__(self):
            self.reads: list[list[str]] = []

        def image_vectors(self, ids, where=None):
            self.reads.append(list(ids))
            return {i: np.full(2, float(n)) for n, i in enumerate(ids) if i != "deleted"}

    store = Store()
    vectors = Candidates({}, {}, [], vectors={"a": np.ones(2), "other": np.ones(2)}).vectors_of(store, ["a", "b", "deleted"])
    assert vectors.get("a") is not None and vectors.get("other") is None and store.reads == []  # known, or not asked for
    assert vectors.get("b") is not None and store.reads == [["b", "deleted"]]  # the missing ones, in one read
    assert vectors.get("deleted") is None and store.reads == [["b", "deleted"]]  # not read again
    assert list(vectors) == ["a", "b"] and len(vectors) == 2
    fresh = Candidates({}, {}, [], vectors={}).vectors_of(store, ["deleted", "c"])
    assert list(fresh) == ["c"] and store.reads[-1] == ["deleted", "c"]  # listing reads first


def test_the_other_finds_vectors_are_read_while_the_image_query_runs(copies, tmp_path, tiny_config, tiny_encoders,
                                                                     monkeypatch):
    """A keyword find's vector, where the keyword index does not hold it, is read on its own query thread before
    the image query (the slowest find) is done; where it does, none is read. The filter applies to it, so a name
    match outside the asked folder is no candidate (and no vector is read from the store: the filter was evaluated
    in memory, and the kept images' vectors are the keyword index's)."""
    from mmsearch.search.keywords import KeywordIndex
    from mmsearch.store.client import Store

    (copies / "kept").mkdir()
    for name in ("coffee.png", "flower.jpg"):
        shutil.move(copies / name, copies / "kept" / name)
    engine = SearchEngine(tmp_path / "db", config=tiny_config, encoders=tiny_encoders)
    engine.index([copies])
    engine.search("a first search", k=7)  # loads what every search shares (the library sample)
    rocket = image_id(str(copies / "rocket.jpg"))
    read_on_a_find = threading.Event()
    waits, asked, real_query, real_read = [], [], Store.query_images, Store.image_vectors

    def read(store, ids, where=None):
        if threading.current_thread().name.startswith("mmsearch-query"):
            read_on_a_find.set()
            asked.append(set(ids))
        return real_read(store, ids, where)

    def query(store, vector, n, where, among=None):
        waits.append(read_on_a_find.wait(timeout=60))  # set at once by the keyword find's thread
        return real_query(store, vector, n, where, among)

    monkeypatch.setattr(Store, "image_vectors", read)
    monkeypatch.setattr(Store, "query_images", query)
    held_vectors = KeywordIndex.held_vectors
    monkeypatch.setattr(KeywordIndex, "held_vectors", lambda self, ids: {})  # as if the index held none
    everywhere = engine.search("rocket", k=7, collapse=False)
    assert waits == [True] and rocket in {image_id(h.path) for h in everywhere}
    assert any(h.scores.get("keyword") for h in everywhere)  # the keyword signal found the rockets by name
    monkeypatch.setattr(KeywordIndex, "held_vectors", held_vectors)
    read_on_a_find.clear()
    unfiltered = len(asked)
    monkeypatch.setattr(Store, "query_images", real_query)
    assert [h.path for h in engine.search("rocket", k=7, collapse=False)] == [h.path for h in everywhere]
    assert len(asked) == unfiltered  # held: none read
    monkeypatch.setattr(Store, "query_images", query)
    kept = engine.search("rocket", k=7, folder=copies / "kept", collapse=False)
    assert sorted(Path(h.path).name for h in kept) == ["coffee.png", "flower.jpg"]
    # under the filter, the kept images' vectors come from the keyword index: no image query, no read at all
    assert waits == [True] and len(asked) == unfiltered and rocket in set().union(*asked)


def test_the_command_line_folds_copies_unless_told_not_to(copies, tmp_path, capsys):
    db = str(tmp_path / "db")
    assert main(["index", str(copies), "--db", db, "--offline"]) == 0
    capsys.readouterr()
    assert main(["search", "rocket launch", "--db", db, "--offline", "--json"]) == 0
    import json

    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 1 and len(results[0]["similar"]) == 3 and results[0]["relevance"] >= 0.5
    assert main(["search", "rocket launch", "--db", db, "--offline"]) == 0
    assert "(+3 similar)" in capsys.readouterr().out
    assert main(["search", "rocket launch", "--db", db, "--offline", "--json", "--no-collapse"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 4
