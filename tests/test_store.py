"""The store on its own: records in and out, change markers, generations, and one error family (no raw
chromadb exception leaves a public method)."""

from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest

from mmsearch.errors import IndexMismatchError, StoreError
from mmsearch.ids import caption_id, image_id
from mmsearch.store import Store
from mmsearch.store.client import FeedbackStore
from mmsearch.store.collections import FIRST, collection_name

SIGNATURE = {"image_model": "open_clip:test/none", "text_model": "sentence-transformers:test", "caption_model": ""}
DIM = 4


def unit(*rows: list[float]) -> np.ndarray:
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def meta(path: str, captions: list[str]) -> dict:
    """Image metadata as the indexer writes it (Chroma refuses empty lists: no captions, no key)."""
    return {"path": path, "name": path.rsplit("/", 1)[-1], "size": 10, "mtime_ns": "123", "caption_sig": "s",
            **({"captions": captions} if captions else {})}


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "db")
    store.create(SIGNATURE, DIM)
    paths = ["/photos/a.jpg", "/photos/b.jpg", "/photos/sub/c.jpg"]
    ids = [image_id(p) for p in paths]
    captions = [[("a red door", "sidecar"), ("a door", "manifest")], [("a cat", "exif")], []]
    store.put(ids, unit([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]),
              [meta(p, [t for t, _ in c]) for p, c in zip(paths, captions)], captions,
              unit([1, 0.1, 0, 0], [1, 0, 0.1, 0], [0, 1, 0, 0.1]))
    store.add_roots(["/photos"])
    return store


def test_records_go_in_and_come_out_exactly(store):
    a, b, c = (image_id(p) for p in ("/photos/a.jpg", "/photos/b.jpg", "/photos/sub/c.jpg"))
    assert (store.count(), store.caption_count(), store.roots()) == (3, 3, ["/photos"])
    assert store.updated_at() > 0 and store.ready
    assert set(store.image_vectors([a, b, "missing"])) == {a, b}
    assert np.allclose(store.image_vectors([b])[b], [0, 1, 0, 0], atol=1e-6)
    assert set(store.caption_vectors_of([a, b, c])) == {caption_id(a, 0), caption_id(a, 1), caption_id(b, 0)}
    assert store.caption_sources([a]) == {a: [("a red door", "sidecar"), ("a door", "manifest")]}
    near = store.query_images(unit([0.9, 0.1, 0, 0])[0], 2, None)
    assert list(near) == [a, b] and near[a] > near[b]
    assert store.query_captions(unit([0, 1, 0, 0])[0], 1, None)[0].image_id == b
    entries = store.entries()
    assert entries["/photos/a.jpg"].mtime_ns == "123" and entries["/photos/a.jpg"].captions == ("a red door", "a door")


def test_metadata_changes_moves_and_deletes(store):
    a, b = image_id("/photos/a.jpg"), image_id("/photos/b.jpg")
    store.set_metadata({a: {"camera": "X100"}})
    assert store.image_metadata([a])[a]["camera"] == "X100" and store.image_metadata([a])[a]["size"] == 10
    store.set_metadata({a: {"mtime_ns": "0"}})  # the next index run reads the file again
    assert store.entries()["/photos/a.jpg"].mtime_ns == "0"
    moved = image_id("/photos/renamed.jpg")
    store.move(a, moved, {"path": "/photos/renamed.jpg", "name": "renamed.jpg"})
    assert set(store.image_vectors([a, moved])) == {moved} and store.caption_count() == 3
    assert store.caption_sources([moved])[moved][0] == ("a red door", "sidecar")
    store.delete_images([moved, b])
    assert store.count() == 1 and store.caption_count() == 0
    assert [m["path"] for _, m in store.all_metadata()] == ["/photos/sub/c.jpg"]


def test_other_models_are_refused_and_generations_live_beside(store, tmp_path):
    with pytest.raises(IndexMismatchError, match="was built with image model open_clip:test/none"):
        Store(tmp_path / "db").create({**SIGNATURE, "image_model": "open_clip:other"}, DIM)
    with pytest.raises(IndexMismatchError, match="4-d vectors"):
        Store(tmp_path / "db").create(SIGNATURE, 8)
    assert store.generation == FIRST and store.pointer() == {"active": FIRST, "previous": "", "building": ""}
    later = store.beside("abc123")
    later.create(SIGNATURE, DIM)
    assert later.count() == 0 and store.count() == 3 and store.has_generation("abc123")
    assert collection_name("images", "abc123") in store.collection_names()
    store.set_pointer(active="abc123", previous=FIRST)
    assert Store(tmp_path / "db").generation == "abc123"
    store.drop_generation("abc123")
    assert not store.has_generation("abc123") and store.has_generation(FIRST)


def test_transfer_reads_and_writes_whole_collections(store, tmp_path):
    pages = list(store.records("images"))
    ids, vectors, metas, docs = pages[0]
    copy = Store(tmp_path / "copy")
    copy.create(SIGNATURE, DIM)
    assert copy.differing("images", ids, vectors, metas) == set(ids)
    copy.write_records("images", ids, vectors, metas, docs)
    assert copy.differing("images", ids, vectors, metas) == set()
    assert copy.count() == 3


def test_every_public_method_translates_chromadb_errors():
    for cls in (Store, FeedbackStore):
        for name, value in vars(cls).items():
            if name.startswith("_") or isinstance(value, (classmethod, staticmethod)):
                continue
            function = value.fget if isinstance(value, property) else value
            if inspect.isfunction(function):
                assert hasattr(function, "guarded"), f"{cls.__name__}.{name} lets raw chromadb errors out"


class Broken:
    """A collection whose every call fails as a damaged HNSW file does."""

    metadata = {"roots": "[]"}

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise RuntimeError("Error loading hnsw index")
        return fail


@pytest.mark.parametrize("call", [
    lambda s: s.set_metadata({"x": {"a": 1}}),
    lambda s: list(s.pages()),
    lambda s: list(s.all_metadata()),
    lambda s: s.image_vectors(["x"]),
    lambda s: s.query_images(unit([1, 0, 0, 0])[0], 3, None),
    lambda s: s.delete_images(["x"]),
], ids=["set_metadata", "pages", "all_metadata", "image_vectors", "query_images", "delete_images"])
def test_a_damaged_collection_gives_one_line_that_says_what_to_do(store, call):
    store._images = Broken()
    with pytest.raises(StoreError, match=r"cannot (read|write|search) the database at .*: Error loading hnsw index; "
                                         r"the vector index files look damaged: `mmsearch export DIR`") as info:
        call(store)
    assert "\n" not in str(info.value)


def test_warm_up_loads_both_vector_indexes_in_a_thread_the_process_waits_for(store, monkeypatch):
    from chromadb.api.models.Collection import Collection

    seen: list[str] = []
    query = Collection.query
    monkeypatch.setattr(Collection, "query", lambda self, *a, **k: seen.append(self.name) or query(self, *a, **k))
    thread = store.warm_up()
    thread.join()
    assert not thread.daemon and sorted(seen) == sorted([store.name("images"), store.name("captions")])
    store.delete_captions([image_id(p) for p in ("/photos/a.jpg", "/photos/b.jpg")])
    seen.clear()
    store.warm_up().join()  # an empty collection has no index to load: nothing asked, nothing raised
    assert seen == [store.name("images")]


def test_a_collection_is_warming_while_its_index_loads_and_not_after(store, monkeypatch):
    """``warming`` says which vector index ``warm_up`` is still loading (the first search scores captions from the
    keyword index meanwhile): the captions' while the images' load is held, neither once the thread is done."""
    from chromadb.api.models.Collection import Collection

    assert not store.warming("images") and not store.warming("captions")
    entered, release = threading.Event(), threading.Event()
    query = Collection.query

    def held(self, *a, **k):
        if self.name == store.name("images"):
            entered.set()
            release.wait()
        return query(self, *a, **k)

    monkeypatch.setattr(Collection, "query", held)
    thread = store.warm_up()
    entered.wait()
    assert store.warming("images") and store.warming("captions")
    release.set()
    thread.join()
    assert not store.warming("images") and not store.warming("captions")


def test_the_images_index_searches_wider_as_the_library_grows(tmp_path, monkeypatch):
    """recall@10 falls with the library at a fixed ef_search: an index run's end sets the width its size
    needs in the collection's configuration, which Chroma reads when a process loads the index (its effect
    on recall is measured by benchmarks/recall_bench.py, not here)."""
    from PIL import Image

    from mmsearch import Config, SearchEngine
    from mmsearch.store import collections

    monkeypatch.setattr(collections, "EF_BY_SIZE", ((2, 256), (4, 300)))
    monkeypatch.setattr(collections, "EF_LARGEST", 400)
    library = tmp_path / "library"
    library.mkdir()

    def run(n: int) -> int:
        for k in range(n):
            Image.new("RGB", (40, 30), (40 * k, 9, 9)).save(library / f"p{k}.png")
        for extra in sorted(library.glob("*.png"))[n:]:
            extra.unlink()
        engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
        engine.index([library])
        later = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))  # a new process
        assert later.store.count() == n
        images = later.store.client.get_collection(later.store.name("images"))
        return images.configuration["hnsw"]["ef_search"]

    assert [run(2), run(4), run(6), run(3)] == [256, 300, 400, 300]


@pytest.mark.parametrize("way", ["exact", "among the listed ids", "under the filter again"])
def test_a_filtered_query_gives_the_nearest_of_the_images_the_filter_keeps(tmp_path, monkeypatch, way):
    """However a filtered query is answered (few kept: scored exactly; more: searched among the listed ids; a
    listed image removed meanwhile: under the filter again), it gives the nearest images the filter keeps."""
    import mmsearch.store.client as client

    store = Store(tmp_path / "db")
    store.create(SIGNATURE, DIM)
    rng = np.random.default_rng(3)
    paths = [f"/p/f{n % 6}/{n}.jpg" for n in range(120)]
    vectors = unit(*rng.standard_normal((120, DIM)).tolist())
    store.put([image_id(p) for p in paths], vectors,
              [meta(p, []) | {"folders": ["/p", p.rsplit("/", 1)[0]]} for p in paths], [[] for _ in paths],
              np.zeros((0, DIM), np.float32))
    if way == "exact":
        monkeypatch.setattr(client, "EXACT_SHARE", 1)
    images = store._get_images()
    if way == "under the filter again":  # the listing names an image gone since: Chroma refuses the ids
        listed = type(images).get
        monkeypatch.setattr(type(images), "get", lambda self, *a, **k: (got := listed(self, *a, **k)) | (
            {"ids": [*got["ids"], "gone"]} if k.get("where") else {}))
    query = unit(rng.standard_normal(DIM).tolist())[0]
    for folder, n in [("/p/f1", 5), ("/p/f2", 30), ("/p", 7), ("/nowhere", 5)]:
        kept = [k for k, p in enumerate(paths) if p.startswith(folder + "/")]
        truth = sorted(kept, key=lambda k: -float(vectors[k] @ query))[:n]
        found = store.query_images(query, n, {"folders": {"$contains": folder}})
        assert list(found) == [image_id(paths[k]) for k in truth]
        assert np.allclose(list(found.values()), [float(vectors[k] @ query) for k in truth], atol=1e-5)



def test_a_record_written_again_loses_the_fields_it_no_longer_has(store, tmp_path):
    """Chroma merges a replaced record's metadata; a put drops the fields the record it replaces had and the new
    one lacks, whether this store wrote that record (in this run) or another writer did."""
    d, e = image_id("/photos/d.jpg"), image_id("/photos/e.jpg")
    store.entries()  # as an index run starts

    def put(ids: list[str], fields: list[dict], into: Store = store) -> None:
        into.put(ids, unit(*([[1, 1, 0, 0]] * len(ids))), fields, [[] for _ in ids], np.zeros((0, DIM), np.float32))

    put([d], [{**meta("/photos/d.jpg", []), "camera": "X"}])
    put([d], [meta("/photos/d.jpg", [])])
    other = Store(tmp_path / "db")
    other.create(SIGNATURE, DIM)
    put([e], [{**meta("/photos/e.jpg", []), "camera": "Y"}], other)
    put([e], [meta("/photos/e.jpg", [])])
    found = store.image_metadata([d, e])
    assert found[d]["path"] == "/photos/d.jpg" and found[e]["path"] == "/photos/e.jpg"
    assert "camera" not in found[d] and "camera" not in found[e]
