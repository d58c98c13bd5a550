"""Filters evaluated in memory (``mmsearch.search.selection``) keep exactly what Chroma keeps, in every
collection, and a filter-only query lists what Chroma's reading would list, in the same order."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mmsearch.ids import image_id, split_caption_id
from mmsearch.paths import folders_of
from mmsearch.search import ranking
from mmsearch.search.filters import build_where
from mmsearch.search.keywords import KeywordIndex
from mmsearch.search.selection import select
from mmsearch.store import Store

SIGNATURE = {"image_model": "open_clip:test/none", "text_model": "sentence-transformers:test", "caption_model": ""}
DIM = 4
FOLDERS = ["/p", "/p/a", "/p/a/b", "/p/ab", "/q", "/"]
ODD = ["/p//a/x{}.jpg", "//h/x{}.jpg", "/p/./a/y{}.jpg", "///z{}.jpg", "/p/a/b/.{}.jpg"]  # folders by splitting
LAST = {1: "/p/a/b/.", 2: "/p/ab/"}  # a path that starts with a folder and a separator, yet is not inside it
CAMERAS = ["Canon EOS", "Canon EOS 5D", "Pixel 7"]
PLACES = ["jp", "jp/13", "jp/13/tokyo", "pt", "pt/lisbon"]
FIRST = datetime(2019, 1, 1)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def record(rng: np.random.Generator, n: int) -> tuple[dict, list[str], bool, int]:
    """Metadata as the indexer writes it (no key for what is missing), its captions, whether it has text
    read in it, and its frames (a video's)."""
    folder = FOLDERS[int(rng.integers(len(FOLDERS)))].rstrip("/")
    path = LAST.get(n) or ODD[n % len(ODD)].format(n) if n % 9 == 0 or n in LAST else f"{folder}/{n}.jpg"
    meta: dict = {"path": path, "folders": folders_of(path), "size": 1, "mtime_ns": "1", "caption_sig": "s"}
    if rng.random() < 0.9:  # a few share a day, so ties in date order are path order
        meta["date"] = int((FIRST + timedelta(days=int(rng.integers(0, 60)), hours=int(rng.integers(0, 2)))).timestamp())
    if rng.random() < 0.7:
        meta["camera"] = CAMERAS[int(rng.integers(len(CAMERAS)))]
    if rng.random() < 0.6:
        meta["place_keys"] = sorted({PLACES[int(i)] for i in rng.integers(0, len(PLACES), 2)})
    if rng.random() < 0.8:  # near the poles and the antimeridian too
        meta["lat"] = float(rng.choice([rng.uniform(-90, 90), rng.uniform(85, 90), rng.uniform(-5, 5)]))
        meta["lon"] = float(rng.choice([rng.uniform(-180, 180), rng.uniform(175, 180), rng.uniform(-180, -175)]))
    captions = [f"caption {n} {c}" for c in range(int(rng.integers(0, 4)))]
    if captions:
        meta["captions"] = captions
    frames = int(rng.integers(1, 4)) if n % 7 == 0 else 0
    if frames:
        meta.update(kind="video", frames=frames)
    return meta, captions, rng.random() < 0.3, frames


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Store, KeywordIndex]:
    rng = np.random.default_rng(5)
    store = Store(tmp_path_factory.mktemp("selection") / "db")
    store.create(SIGNATURE, DIM)
    made = [record(rng, n) for n in range(400)]
    ids = [image_id(meta["path"]) for meta, *_ in made]
    captions = [[(text, "sidecar") for text in texts] for _, texts, _, _ in made]
    metas = [meta | ({"ocr": f"text {n}"} if has_text else {}) for n, (meta, _, has_text, _) in enumerate(made)]
    store.put(ids, unit(rng.standard_normal((len(ids), DIM))), metas, captions,
              unit(rng.standard_normal((sum(map(len, captions)), DIM))),
              ocr=[(f"text {n}", unit(rng.standard_normal((1, DIM)))[0]) if has_text else None
                   for n, (_, _, has_text, _) in enumerate(made)],
              frames=[([float(t) for t in range(f)], unit(rng.standard_normal((f, DIM)))) if f else None
                      for _, _, _, f in made])
    records = list(store.all_metadata(vectors=("image", "caption")))  # with the images' and their captions' vectors
    built = KeywordIndex.from_metadata(records[:250]).apply(records[250:])  # built, then brought up to date
    path = tmp_path_factory.mktemp("keywords") / "keywords.npz"
    built.save(path, ("test",))
    loaded = KeywordIndex.load(path, ("test",))
    assert loaded is not None and loaded.numbers.keys() == built.numbers.keys()
    for name, values in built.numbers.items():
        np.testing.assert_array_equal(loaded.numbers[name], values)
    return store, loaded


def filters(rng: np.random.Generator) -> dict:
    """One to three random filters of every kind ``build_where`` makes."""
    day = lambda: date(2019, 1, 1) + timedelta(days=int(rng.integers(-3, 64)))  # noqa: E731
    kinds = {
        "folder": lambda: str(rng.choice(FOLDERS + ["//h", "/p/a/b/", "/nowhere", "/p/a//"])),
        "date_from": day, "date_to": day,
        "camera": lambda: str(rng.choice(CAMERAS + ["Canon"])),
        "places": lambda: [list(rng.choice(PLACES, int(rng.integers(1, 3)), replace=False))
                           for _ in range(int(rng.integers(1, 3)))],
        "near": lambda: (float(rng.choice([88.0, 0.0, -45.0])), float(rng.choice([179.0, -179.5, 10.0])),
                         float(rng.choice([50.0, 900.0, 3000.0]))),
    }
    chosen = rng.choice(list(kinds), int(rng.integers(1, 4)), replace=False)
    return {str(name): kinds[str(name)]() for name in chosen}


def chroma_keeps(collection, where: dict) -> set[str]:
    return set(collection.get(where=where, include=[])["ids"]) if collection is not None else set()


@pytest.mark.parametrize("seed", range(4))
def test_a_filter_evaluated_in_memory_keeps_in_every_collection_what_chroma_keeps(library, seed):
    store, index = library
    rng = np.random.default_rng(seed)
    collections = {"images": store._get_images(), "captions": store._captions, "texts": store.ocr_collection(),
                   "frames": store.frames_collection()}
    seen = set()
    for _ in range(40):
        where = build_where(**filters(rng))
        kept = select(index, where)
        assert kept is not None, where
        for name, collection in collections.items():
            assert set(getattr(kept, name)) == chroma_keeps(collection, where), (name, where)
        seen.add(len(kept.images))
        exact_from_memory(store, kept, rng)
    assert len(seen) > 10 and 0 in seen  # the filters were of every size, none among them


def exact_from_memory(store: Store, kept, rng: np.random.Generator) -> None:
    """The kept images and captions nearest a vector, scored from the keyword index's vectors, are those scored
    from the vectors Chroma holds; so are the captions of some of the kept images."""
    from mmsearch.store.collections import vectors_by_id

    vector = unit(rng.standard_normal((1, DIM)))[0]
    for found, stored, key in ((kept.nearest(vector, 7), store.image_vectors(kept.images), str),
                               ({(m.image_id, m.index): m.score for m in kept.caption_nearest(vector, 7) or []},
                                vectors_by_id(store._captions, kept.captions), split_caption_id)):
        assert found is not None
        ids = list(stored)
        scores = np.stack([stored[i] for i in ids]) @ vector if ids else np.zeros(0)
        best = sorted(range(len(ids)), key=lambda n: -scores[n])[:7]
        assert list(found) == [key(ids[n]) for n in best]  # which records, best first
        assert np.allclose(list(found.values()), scores[best], atol=1e-6)
    some = kept.images[::3]
    held, stored = kept.captions_of(some), _by_image(store, some)
    assert held is not None and held.keys() == stored.keys()
    for image, rows in held.items():
        assert [n for n, _ in rows] == list(range(len(stored[image])))
        np.testing.assert_allclose(np.stack([row for _, row in rows]), np.stack(stored[image]), atol=1e-6)


def _by_image(store: Store, ids: list[str]) -> dict[str, list[np.ndarray]]:
    """Every caption vector of these images that Chroma holds, in caption order."""
    from mmsearch.ids import split_caption_id

    out: dict[str, list[np.ndarray]] = {}
    for cid, vector in sorted(store.caption_vectors_of(ids).items(), key=lambda pair: split_caption_id(pair[0])):
        out.setdefault(split_caption_id(cid)[0], []).append(vector)
    return out


def test_a_filter_of_another_shape_is_left_to_chroma(library):
    _, index = library
    for where in ({"camera": {"$ne": "Pixel 7"}}, {"date": {"$in": [1, 2]}}, {"$or": []}, {"size": 1},
                  {"$and": [{"camera": "Pixel 7"}, {"kind": {"$eq": "video"}}]}, {"camera": "Pixel 7", "size": 1}):
        assert select(index, where) is None, where
    assert select(index, None) is None


@pytest.mark.parametrize("sort", ["date", "date-asc"])
def test_a_filter_only_query_lists_from_memory_what_reading_every_record_lists(library, monkeypatch, sort):
    store, index = library
    monkeypatch.setattr(ranking, "BROWSE_CHUNK", 3)  # many chunks, each cut inside a run of one date
    rng = np.random.default_rng(11)
    for _ in range(25):
        chosen = filters(rng)
        near = chosen.pop("near", None)
        where = build_where(near=near, **chosen)
        excluded = tuple(rng.choice(["caption", "3", "x", "nothing"], int(rng.integers(0, 2)), replace=False))
        k = int(rng.integers(1, 40))
        listed = ranking.browse(store, where, near, excluded, k, sort, index)
        read = ranking.browse(store, where, near, excluded, k, sort)
        assert [h.path for h in listed] == [h.path for h in read], (where, excluded, k)
    everything = ranking.browse(store, None, None, (), 400, sort, index)
    assert [h.path for h in everything] == [h.path for h in ranking.browse(store, None, None, (), 400, sort)]
    assert len(everything) == 400


def test_a_filtered_search_never_asks_chroma_to_evaluate_its_filter(tmp_path, make_engine, monkeypatch):
    """Every read of a filtered search (and of a query of filters only) is by id: the filter was evaluated once,
    in memory. A filter that keeps every photo (the library's one root) is no filter at all."""
    import shutil

    from chromadb.api.models.Collection import Collection

    samples = Path(__file__).resolve().parent.parent / "sample_images"
    root = tmp_path / "photos"
    for n, name in enumerate(sorted(p.name for p in samples.iterdir() if p.suffix in (".png", ".jpg"))[:8]):
        (root / ("inside" if n % 2 else "outside")).mkdir(parents=True, exist_ok=True)
        shutil.copy(samples / name, root / ("inside" if n % 2 else "outside") / name)
    engine = make_engine()
    engine.index([root])
    asked: list[dict] = []
    for method in ("get", "query"):
        real = getattr(Collection, method)
        monkeypatch.setattr(Collection, method, lambda self, *a, real=real, **k: (
            asked.append(k["where"]) if k.get("where") else None, real(self, *a, **k))[1])
    inside = engine.search("a photo", k=8, folder=root / "inside")
    assert sorted(Path(h.path).parent.name for h in inside) == ["inside"] * 4
    assert engine.plan("a photo", k=8, folder=root).where is None
    assert [h.path for h in engine.search("a photo", k=8, folder=root)] == [h.path for h in engine.search("a photo", k=8)]
    assert len(engine.search(f"folder:{root / 'outside'}", k=8)) == 4  # filters only: listed in date order
    assert not [where for where in asked if "folders" in str(where)], asked


def test_a_folders_keyword_matches_are_not_crowded_out_by_better_ones_outside_it(tmp_path, make_engine):
    """The keyword find searches among the images the filter keeps: 35 better matches outside the folder (more
    than the pool of 30) no longer leave its own matches unscored."""
    from PIL import Image

    for n in range(37):
        folder = tmp_path / "photos" / ("inside" if n < 2 else "outside")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (7 * n, 255 - 7 * n, 90)).save(
            folder / (f"battery-{n}.png" if n < 2 else f"battery-battery-{n}.png"))
    engine = make_engine()
    engine.index([tmp_path / "photos"])
    hits = engine.search("battery", k=2, folder=tmp_path / "photos" / "inside")
    assert sorted(Path(h.path).name for h in hits) == ["battery-0.png", "battery-1.png"]
    assert all(h.scores["keyword"] for h in hits), [h.scores for h in hits]


def test_the_text_in_photos_and_the_lexical_weights_find_among_what_the_filter_keeps():
    """The ``ocr`` and ``sparse`` finds, like the keyword one, rank only the images the filter keeps."""
    from types import SimpleNamespace

    from mmsearch.search.query import Query
    from mmsearch.search.selection import Kept
    from mmsearch.search.signals.base import Context
    from mmsearch.search.signals.ocr import OcrSignal
    from mmsearch.search.signals.sparse import SparseSignal
    from mmsearch.search.topk import top

    ids = [f"img{n}" for n in range(6)]
    index = KeywordIndex.build([(i, "exit sign") for i in ids])
    best_outside = np.asarray([9.0, 8.0, 7.0, 1.0, 0.5, 0.0])  # img0-img2 outside the filter, img3-img5 inside
    index.lexical = SimpleNamespace(score_array=lambda weights: best_outside, top=lambda s, n: top(index.ids, s, n))
    store = SimpleNamespace(query_ocr=lambda vector, n, where, among: {})  # the text's meaning finds nothing
    ocr = SimpleNamespace(scores=lambda text: dict(zip(ids, best_outside.tolist())))
    inside = Kept(index, np.arange(3, 6))
    for kept, wanted in ((inside, {"img3", "img4"}), (None, {"img0", "img1"})):
        query = Query(np.ones(4, np.float32), "exit", 2, {}, {"camera": "x"}, lexical={1: 1.0}, kept=kept)
        context = Context(store, query, 2, False, index, ocr)  # type: ignore[arg-type]
        assert set(SparseSignal().find(context)) == wanted
        assert OcrSignal().find(context) == wanted


def test_what_a_filter_keeps_is_marked_in_a_keyword_index_caught_up_since():
    """The keyword and lexical finds take a bool per document of the index they search; one made since the
    filter was evaluated (a catch-up) has other documents, and gets its own marks of the same images."""
    from mmsearch.search.selection import Kept

    ids = [f"img{n}" for n in range(6)]
    before = KeywordIndex.build([(i, "a text") for i in ids])
    kept = Kept(before, np.arange(3, 6))
    after = KeywordIndex.build([(i, "a text") for i in ["new", *reversed(ids)]])
    assert kept.mask_in(before) is kept.mask and np.flatnonzero(kept.mask).tolist() == [3, 4, 5]
    assert after.ids.at(np.flatnonzero(kept.mask_in(after))) == ["img5", "img4", "img3"]
    assert kept.among(["img4", "new", "img0", "img3"]) == ["img4", "img3"]
