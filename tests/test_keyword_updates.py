"""The keyword index is kept up to date a change at a time: what the store's numbered writes changed
(``Store.written_since``), never every record again, and the result is the index a fresh build gives."""

from __future__ import annotations

import gc
import random
import tracemalloc

import numpy as np
import pytest
from helpers import records_read_back
from PIL import Image

from mmsearch import Config, SearchEngine
from mmsearch.encoders.sparse import pack
from mmsearch.search.keyword_feed import KeywordFeed
from mmsearch.search.keywords import KeywordIndex
from mmsearch.store.client import Store

WORDS = ["red", "door", "cat", "sofa", "beach", "snow", "bicycle", "一只猫", "東京", "of", "the", "sunset"]
PLACES = [["JP", "JP.40", "1850147"], ["PT", "PT.14", "2267057"], ["JP", "JP.32", "1853909"]]
NAMES = {"JP": "Japan", "PT": "Portugal", "JP.40": "Tokyo", "PT.14": "Lisbon", "JP.32": "Osaka",
         "1850147": "Tokyo", "2267057": "Lisbon", "1853909": "Osaka"}


def _meta(rng: random.Random, n: int) -> dict:
    """An image record's metadata as an index run writes it (with some of the optional fields)."""
    path = f"/photos/{rng.choice(['2023', '2024'])}/{rng.choice(['beach', 'home', 'trip'])}/IMG_{n:04d}.jpg"
    meta: dict = {"path": path, "folders": ["/", "/photos", path.rsplit("/", 2)[0], path.rsplit("/", 1)[0]],
                  "sha256": f"{rng.getrandbits(256):064x}", "phash": f"{rng.getrandbits(64):016x}"}
    if rng.random() < 0.6:
        meta["captions"] = [" ".join(rng.choices(WORDS, k=rng.randint(1, 6))) for _ in range(rng.randint(1, 2))]
        meta["lexical"] = [pack({rng.randint(5, 40): round(rng.random(), 3) for _ in range(3)}) for _ in meta["captions"]]
    if rng.random() < 0.3:
        meta["camera"] = rng.choice(["Canon EOS 5D", "Google Pixel 8"])
    if rng.random() < 0.3:
        keys = rng.choice(PLACES)
        meta.update({"place_keys": keys, "place": f"{NAMES[keys[2]]}, {NAMES[keys[0]]}",
                     "place_city": [NAMES[keys[2]]], "place_region": [NAMES[keys[1]]], "place_country": [NAMES[keys[0]]]})
    if rng.random() < 0.2:
        meta["ocr"] = " ".join(rng.choices(WORDS, k=3))
    return meta


def _same(kept: KeywordIndex, fresh: KeywordIndex) -> None:
    """Everything a search, the facets and the query parser read is what a fresh build has."""
    assert sorted(kept.live_ids()) == sorted(fresh.live_ids()) and len(kept) == len(fresh)
    for query in ["red door", "cat", '"red door"', "一只猫", "img_0007", "beach sofa", "the", "snow sunset bicycle"]:
        got, want = kept.search(query, 10), fresh.search(query, 10)
        assert list(got) == list(want), query
        assert np.allclose(list(got.values()), list(want.values()), rtol=1e-5), query
        ids = fresh.live_ids()
        assert kept.coverage(query, ids) == pytest.approx(fresh.coverage(query, ids)), query
        assert sorted(kept.exact(query)) == sorted(fresh.exact(query)), query
        every, positions = kept.score_array(query), kept.positions()
        assert every[[d for d in range(len(kept.ids)) if d not in set(positions.values())]].sum() == 0.0
        # a filtered search's scores: the phrase looked for in the images asked about only
        matching = {i: float(every[d]) for i, d in positions.items() if every[d] > 0}
        assert kept.scores_of(query, ids) == pytest.approx(matching), query
        assert kept.scores_of(query, ids[::2]) == pytest.approx({i: matching[i] for i in ids[::2] if i in matching})
    assert kept.folder_counts == fresh.folder_counts and kept.cameras == fresh.cameras
    # postings stay in document order through changes, packing and the file (coverage bisects them)
    assert all((np.diff(docs) > 0).all() for _, (docs, _) in kept.postings.items())
    assert sorted(kept.captioned) == sorted(fresh.captioned) and kept.ocr == fresh.ocr

    def hashes(index: KeywordIndex) -> dict[str, tuple[str, int, str]]:
        return {i: (index.doc_sha256[d], int(index.phashes[d]), index.paths[d]) for i, d in index.positions().items()}

    assert hashes(kept) == hashes(fresh)
    assert kept.places.facet() == fresh.places.facet() and kept.places.lookup("tokyo") == fresh.places.lookup("tokyo")
    query = {7: 1.0, 12: 0.5, 30: 0.25}
    assert (kept.lexical is None) == (fresh.lexical is None)
    if fresh.lexical is not None:
        got, want = kept.lexical.search(query, 10), fresh.lexical.search(query, 10)
        assert list(got) == list(want) and np.allclose(list(got.values()), list(want.values()))


def test_changes_read_a_chunk_at_a_time_give_the_index_a_fresh_build_gives(monkeypatch):
    """A catch-up adds what it reads ``CHUNK`` records at a time, never holding every record's metadata: an id
    given twice (in two chunks) keeps its last metadata, and one removed and written back since is kept."""
    import mmsearch.search.keywords as keywords

    monkeypatch.setattr(keywords, "CHUNK", 3)
    rng = random.Random(5)
    library = {f"id{n:03d}": _meta(rng, n) for n in range(30)}
    index = KeywordIndex.from_metadata(library.items())
    back, gone = "id004", {"id001", "id002"}
    written = [(i, _meta(rng, int(i[2:]))) for i in ["id010", "id011", "id012", "id013", back]]
    written += [("id010", _meta(rng, 10)), ("id040", _meta(rng, 40)), ("id041", _meta(rng, 41))]
    pulled, added = [], []
    extend = KeywordIndex.extend
    monkeypatch.setattr(KeywordIndex, "extend", lambda self, records, through=None: (
        added.append(len(pulled)), extend(self, records, through))[1])

    def reading():
        for pair in written:
            pulled.append(pair[0])
            yield pair

    updated = index.apply(reading(), removed=gone | {back}, through=7)
    library.update(written)  # the last metadata of id010
    for i in gone:
        del library[i]
    assert added == [3, 6, 8]  # each chunk added as it was read, the next not yet pulled
    assert updated.through == 7 and back in updated.positions()
    _same(updated, KeywordIndex.from_metadata(library.items()))
    assert len(index) == 30 and "id040" not in index.positions()  # the index it was applied to is as it was


def test_changes_applied_one_at_a_time_give_the_index_a_fresh_build_gives(tmp_path):
    rng = random.Random(3)
    library = {f"id{n:03d}": _meta(rng, n) for n in range(60)}
    index = KeywordIndex.from_metadata(library.items())
    packed_once = False
    for step in range(40):
        changed = {i: _meta(rng, int(i[2:])) for i in rng.sample(sorted(library), rng.randint(0, 6))}
        new = {f"id{100 + step * 3 + k:03d}": _meta(rng, 100 + step * 3 + k) for k in range(rng.randint(0, 3))}
        removed = set(rng.sample(sorted(library), rng.randint(0, 4))) - set(changed)
        library.update(changed | new)
        for i in removed:
            del library[i]
        before = len(index.ids)
        index = index.apply(list((changed | new).items()), removed=removed, through=step)
        packed_once |= len(index.ids) < before
        assert index.through == step
        _same(index, KeywordIndex.from_metadata(library.items()))
    assert packed_once  # switched-off documents passed PACK_AT at least once and were packed away
    index.save(tmp_path / "k.npz", ("store", 9))
    loaded = KeywordIndex.load(tmp_path / "k.npz", ("store", 9))
    assert loaded is not None and loaded.through == index.through
    _same(loaded, KeywordIndex.from_metadata(library.items()))
    extra, removed = _meta(rng, 999), set(sorted(library)[:2])
    library["id999"] = extra
    for i in removed:
        del library[i]
    changed = loaded.apply([("id999", extra)], removed=removed)
    _same(changed, KeywordIndex.from_metadata(library.items()))
    changed.save(tmp_path / "k.npz", ("store", 10))  # what the file held, with the change merged in
    again = KeywordIndex.load(tmp_path / "k.npz", ("store", 10))
    assert again is not None and KeywordIndex.load(tmp_path / "k.npz", ("store", 9)) is None
    _same(again, KeywordIndex.from_metadata(library.items()))
    assert again.apply([], removed={"no-such-id"}) is again  # nothing changed: nothing is copied


def test_an_applied_change_leaves_the_index_searches_run_on_as_it_was():
    rng = random.Random(5)
    library = {f"id{n}": _meta(rng, n) for n in range(20)}
    library["id0"]["captions"] = ["a red door"]
    old = KeywordIndex.from_metadata(library.items())
    before = old.search("red door", 5)
    new = old.apply([("id0", {"path": "/photos/x/IMG_0000.jpg", "captions": ["snow"]})], removed={"id1"})
    assert old.search("red door", 5) == before and "id1" in old.positions() and "id0" in old.search("red door", 5)
    assert "id0" not in new.search("red door", 5) and "id1" not in new.positions()
    library["id2"]["ocr"] = "OPEN 24 HOURS"
    unread = next(i for i, m in library.items() if "ocr" not in m and i not in ("id0", "id1", "id2"))
    library[unread]["captions"] = ["a new caption"]
    plain = new.apply([(unread, library[unread])])
    assert plain.ocr is new.ocr  # no text read in photos changed: the OCR matcher built on it is kept
    read = plain.apply([("id2", library["id2"])])
    assert read.ocr["id2"] == "OPEN 24 HOURS" and "id2" not in plain.ocr and read.ocr is not plain.ocr


def _photo(path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path)


def _engine(tmp_path) -> SearchEngine:
    return SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))


def _full_build_forbidden(monkeypatch, engine: SearchEngine) -> None:
    def every_record():
        raise AssertionError("the keyword index read every record again")

    monkeypatch.setattr(engine.store, "all_metadata", every_record)


def test_an_engine_reads_only_what_changed_and_a_fresh_process_starts_from_the_file(tmp_path, monkeypatch):
    library = tmp_path / "library"
    for n in range(6):
        _photo(library / "old" / f"p{n}.jpg", (40 * n, 10, 10))
    engine = _engine(tmp_path)
    engine.index([library])
    engine.session.keyword_index(fresh=True)  # the first build reads every record, once
    numbered = engine.store.write_seq()
    assert numbered > 0 and all(m["seq"] <= numbered for _, m in engine.store.all_metadata())
    _full_build_forbidden(monkeypatch, engine)
    monkeypatch.setattr(Store, "image_ids", lambda self: pytest.fail("every id listed: the removals are recorded"))
    _photo(library / "new" / "sunset.jpg", (250, 120, 0))
    (library / "old" / "p0.jpg").unlink()
    (library / "old" / "p1.jpg").rename(library / "new" / "moved.jpg")
    engine.index([library], prune=True)
    kept = engine.session.keyword_index(fresh=True)
    fresh = KeywordIndex.from_metadata(Store.all_metadata(engine.store))
    _same(kept, fresh)
    assert set(kept.exact("sunset")) and set(kept.exact("moved")) and not kept.exact("p0")
    assert kept.folder_counts[str(library / "new")] == 2 and kept.folder_counts[str(library / "old")] == 4

    later = _engine(tmp_path)  # a new process: the file, then what was written since it was saved
    _full_build_forbidden(monkeypatch, later)
    monkeypatch.setattr(Store, "image_ids", lambda self: pytest.fail("every id listed: the removals are recorded"))
    calls = []
    since = Store.written_since
    monkeypatch.setattr(Store, "written_since", lambda self, seq, vectors=(): calls.append(seq) or since(self, seq, vectors))
    _same(later.keyword_index(), fresh)
    assert calls == [kept.through]


def test_a_write_in_progress_while_the_index_is_read_is_read_again_once_done(tmp_path, monkeypatch):
    from chromadb.api.models.Collection import Collection

    library = tmp_path / "library"
    _photo(library / "a.jpg", (200, 10, 10))
    engine = _engine(tmp_path)
    engine.index([library])
    engine.session.keyword_index(fresh=True)
    reader = _engine(tmp_path)  # another reader of the same index, as a page or a CLI search is
    upsert = Collection.upsert
    seen_midway = []

    def read_first(self, *args, **kwargs):
        if any("seq" in m for m in kwargs.get("metadatas") or []) and not seen_midway:
            # the write has its number, its records are not in yet: a reader comes now
            seen_midway.append(reader.session.keyword_index(fresh=True).search("zebra", 5))
        return upsert(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", read_first)
    (library / "a.jpg.txt").write_text("a zebra\n")  # a new caption: the same record, written again
    engine.index([library])
    assert seen_midway == [{}]  # a reader ran before the record was in
    assert list(reader.session.keyword_index(fresh=True).search("zebra", 5)) == engine.store.image_ids()


def test_records_written_without_numbers_and_removed_ones_are_found_by_their_ids(tmp_path):
    library = tmp_path / "library"
    for n in range(4):
        _photo(library / f"p{n}.jpg", (50 * n, 10, 10))
    engine = _engine(tmp_path)
    engine.index([library])
    engine.session.keyword_index(fresh=True)
    store = engine.store
    ids = store.image_ids()
    (first, meta), = store.image_metadata(ids[:1]).items()
    vector = store.image_vectors([first])[first]
    # as an older mmsearch wrote: straight to Chroma, no write number (the count shows it)
    meta = {k: v for k, v in meta.items() if k != "seq"} | {"path": str(library / "zebra.jpg"), "name": "zebra.jpg"}
    store.client.get_collection(store.name("images")).add(ids=["unnumbered"], embeddings=[vector], metadatas=[meta])
    assert engine.session.keyword_index(fresh=True).exact("zebra") == ["unnumbered"]
    store.delete_images([ids[1]])
    updated = engine.session.keyword_index(fresh=True)
    assert ids[1] not in updated.positions() and len(updated) == store.count() == 4
    _same(updated, KeywordIndex.from_metadata(store.all_metadata()))


def test_between_recounts_a_check_reads_the_write_mark_only_and_a_recount_finds_unnumbered_records(
        tmp_path, monkeypatch):
    import mmsearch.session as session_module

    library = tmp_path / "library"
    for n in range(3):
        _photo(library / f"p{n}.jpg", (60 * n, 10, 10))
    engine = _engine(tmp_path)
    engine.index([library])
    session, store = engine.session, engine.store
    session.keyword_index(fresh=True)
    counts: list[int] = []
    counting = Store.count
    monkeypatch.setattr(Store, "count", lambda self: counts.append(1) or counting(self))
    monkeypatch.setattr(session_module, "KEYWORD_CHECK", 0.0)  # every call checks the store
    ids = store.image_ids()
    (first, meta), = store.image_metadata(ids[:1]).items()
    meta = {k: v for k, v in meta.items() if k != "seq"} | {"path": str(library / "zebra.jpg"), "name": "zebra.jpg"}
    store.client.get_collection(store.name("images")).add(
        ids=["unnumbered"], embeddings=[store.image_vectors([first])[first]], metadatas=[meta])
    store.delete_images([ids[1]])  # a numbered write: found by the write mark alone
    for _ in range(3):
        index = session.keyword_index()
        assert ids[1] not in index.positions() and index.exact("zebra") == []
    assert counts == []  # the images are not counted on every check
    monkeypatch.setattr(session_module, "KEYWORD_RECOUNT", 0.0)
    assert session.keyword_index().exact("zebra") == ["unnumbered"] and counts == [1]
    _same(session.keyword_index(), KeywordIndex.from_metadata(store.all_metadata()))


def test_the_runs_of_one_process_read_only_what_changed_since_the_last(tmp_path, monkeypatch):
    library = tmp_path / "library"
    for n in range(5):
        _photo(library / f"p{n}.jpg", (50 * n, 10, 10))
    engine = _engine(tmp_path)
    engine.index([library])  # the first run reads every record
    monkeypatch.setattr(Store, "pages", lambda self, vectors=(): pytest.fail("every record read again"))
    (library / "p0.jpg").unlink()
    _photo(library / "p1.jpg", (1, 2, 3))  # changed
    (library / "p1.jpg.txt").write_text("a caption\n")
    _photo(library / "p9.jpg", (9, 9, 9))
    report = engine.index([library])
    assert (report.added, report.updated, report.removed) == (1, 1, 1)
    assert engine.index([library]).unchanged == 5  # and the entries say so without reading them all
    monkeypatch.undo()
    assert engine.store.entries() == Store(str(tmp_path / "db")).entries()
    assert engine.store.entries()[str(library / "p1.jpg")].captions == ("a caption",)


def test_an_index_run_leaves_the_keyword_index_on_disk_for_the_first_search(tmp_path, monkeypatch):
    library = tmp_path / "library"
    for n in range(4):
        _photo(library / f"p{n}.jpg", (60 * n, 10, 10))
    (library / "p2.jpg.txt").write_text("a zebra on the beach\n")
    _engine(tmp_path).index([library])
    later = _engine(tmp_path)  # the first search, in a new process
    _full_build_forbidden(monkeypatch, later)
    hits = later.search("zebra", k=2)
    assert hits and hits[0].path == str(library / "p2.jpg")
    zebra = [i for i, m in later.store.image_metadata(later.store.image_ids()).items() if m["path"].endswith("p2.jpg")]
    assert list(later.keyword_index().search("zebra", 5)) == zebra


@pytest.mark.parametrize("quick_writes", [1, 2])
def test_a_write_that_took_its_number_before_another_finished_is_still_read(tmp_path, monkeypatch, quick_writes):
    """Shards write into one server at once: a slow write takes the number a quicker one then publishes
    (or an older one than the quicker ones publish), and ends after a reader has read them. The reader
    still reads it."""
    import threading

    from chromadb.api.models.Collection import Collection

    library = tmp_path / "library"
    for n in range(3):
        _photo(library / f"p{n}.jpg", (70 * n, 10, 10))
    engine = _engine(tmp_path)
    engine.index([library])
    reader = _engine(tmp_path)
    assert reader.session.keyword_index(fresh=True).search("zebra", 5) == {}
    ids = sorted(engine.store.image_ids())
    slow, quick = Store(str(tmp_path / "db")), Store(str(tmp_path / "db"))
    inside, go = threading.Event(), threading.Event()
    update = Collection.update

    def held(self, *args, **kwargs):
        if any("a zebra" in (m.get("captions") or []) for m in kwargs.get("metadatas") or []):
            inside.set()
            assert go.wait(60)
        return update(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "update", held)
    writer = threading.Thread(target=slow.set_metadata, args=({ids[0]: {"captions": ["a zebra"]}},))
    writer.start()
    assert inside.wait(60)  # the slow write has its number; its record is not written yet
    for n in range(quick_writes):
        quick.set_metadata({ids[1 + n]: {"captions": ["a giraffe"]}})
    midway = reader.session.keyword_index(fresh=True)
    assert len(midway.search("giraffe", 5)) == quick_writes and midway.search("zebra", 5) == {}
    go.set()
    writer.join(60)
    assert list(reader.session.keyword_index(fresh=True).search("zebra", 5)) == [ids[0]]
    assert Store(str(tmp_path / "db")).write_mark().pending is None  # every claim is dropped once done


KILLED_MID_WRITE = """
import os, sys
from chromadb.api.models.Collection import Collection
from mmsearch import Config, SearchEngine
engine = SearchEngine(config=Config.offline_profile(Config(db=sys.argv[1])))
engine.index([sys.argv[2]])
Collection.update = lambda self, *a, **k: os._exit(9)  # killed while the write is in progress
engine.store.set_metadata({engine.store.image_ids()[0]: {"captions": ["a zebra"]}})
"""


def test_a_writer_killed_mid_write_holds_readers_back_only_until_its_claim_lapses(tmp_path, monkeypatch):
    import subprocess
    import sys
    import time
    import types

    import mmsearch.store.client as client
    from mmsearch.store.collections import CLAIM_LEASE

    _photo(tmp_path / "library" / "a.jpg", (200, 10, 10))
    run = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path / "db"), str(tmp_path / "library")])
    assert run.returncode == 9
    store = Store(str(tmp_path / "db"))
    mark = store.write_mark()
    assert mark.pending == mark.seq + 1 == mark.through  # readers ask from the killed write's number
    later = types.SimpleNamespace(time=lambda: time.time() + CLAIM_LEASE + 1, monotonic=time.monotonic)
    with monkeypatch.context() as m:
        m.setattr(client, "time", later)
        assert store.write_mark().pending is None  # its claim has lapsed
        store.set_metadata({store.image_ids()[0]: {"captions": ["a giraffe"]}})  # the next write drops it
    assert store.write_mark().pending is None and store.write_mark().seq == mark.seq + 1


@pytest.mark.parametrize("first", [3, 1000])
def test_a_quoted_phrase_finds_what_reading_every_text_finds(tmp_path, monkeypatch, first):
    from mmsearch.search import keywords
    from mmsearch.search.topk import top

    monkeypatch.setattr(keywords, "PHRASE_FIRST", first)  # few read best first: the search of every text decides
    rng = random.Random(8)
    library = {f"id{n:04d}": {"path": f"/photos/trip/IMG_{n:04d}.jpg",
                              "captions": [" ".join(rng.choices(["red", "door", "blue", "a", "the"], k=rng.randint(2, 6)))]}
               for n in range(1500)}
    built = KeywordIndex.from_metadata(library.items())
    built.save(tmp_path / "k.npz", ("s", 1))
    loaded = KeywordIndex.load(tmp_path / "k.npz", ("s", 1))
    for index in (built, loaded):  # texts in a list, and packed as the file holds them
        for query in ['"red door"', '"door red" blue', '"img_0042"', '"trip img"', '"the"', '"zebra"', '"a red" door']:
            for n in (1, 10, 400):
                want = top(index.ids, index.score_array(query), n, index.id_keys)
                assert index.search(query, n) == want, (query, n)


def _put(store: Store, records: dict[str, dict]) -> None:
    """Image records as an index run puts them (size and time: what its entries need)."""
    vectors = np.random.default_rng(len(records)).standard_normal((len(records), 8)).astype(np.float32)
    metas = [{"size": 1000 + n, "mtime_ns": str(n), **m} for n, m in enumerate(records.values())]
    store.put(list(records), vectors / np.linalg.norm(vectors, axis=1, keepdims=True), metas,
              [[] for _ in records], np.zeros((0, 8), np.float32))


def _new_library(tmp_path) -> SearchEngine:
    engine = _engine(tmp_path)
    engine.store.create(engine.signature, 8)
    return engine


@pytest.mark.parametrize("chunk", [7, 20_000])
def test_a_new_librarys_keyword_index_is_built_from_its_first_runs_own_writes(tmp_path, monkeypatch, chunk):
    from mmsearch.search import keywords

    monkeypatch.setattr(keywords, "CHUNK", chunk)  # 7: added to the index a few records at a time
    engine, rng, library = _new_library(tmp_path), random.Random(11), {}
    done = engine.session.follow_first_run()
    read = records_read_back(monkeypatch)
    for batch in range(6):
        records = {f"id{batch * 5 + k:03d}": _meta(rng, batch * 5 + k) for k in range(5)}
        if batch == 3:
            records["id002"] = _meta(rng, 2)  # a photo written again in the same run
        _put(engine.store, records)
        library.update(records)
    done()
    kept = engine.session.keyword_index(fresh=True)
    assert read == []  # nothing read back: not every record, not what the writes wrote
    _same(kept, KeywordIndex.from_metadata(library.items()))
    assert kept.through == engine.store.write_mark().through
    entries = engine.store.entries()  # the store's own entries followed its puts too
    assert read == [] and entries == Store(str(tmp_path / "db")).entries()


def test_a_build_from_every_record_adds_them_a_chunk_at_a_time(monkeypatch):
    from mmsearch.search import keywords

    rng = random.Random(13)
    library = [(f"id{n:03d}", _meta(rng, n)) for n in range(40)] + [("id005", _meta(rng, 5))]  # one id twice
    whole = KeywordIndex.from_metadata(iter(library), through=9)
    monkeypatch.setattr(keywords, "CHUNK", 7)
    held, added = [], KeywordIndex.extend
    monkeypatch.setattr(KeywordIndex, "extend",
                        lambda self, records, **kw: held.append(len(records)) or added(self, records, **kw))
    chunked = KeywordIndex.from_metadata(iter(library), through=9)
    assert held == [7, 7, 7, 7, 7, 6] and chunked.through == whole.through == 9
    _same(chunked, whole)


def _held(make) -> tuple[int, KeywordIndex]:
    """The bytes that what ``make`` returns holds (Python objects and numpy arrays), and it."""
    gc.collect()
    tracemalloc.start()
    try:
        made = make()
        gc.collect()
        return tracemalloc.get_traced_memory()[0], made
    finally:
        tracemalloc.stop()


def _fed(library: list[tuple[str, dict]], through: int) -> KeywordIndex:
    """The index a first run's writes of 500 records each give (``KeywordFeed``)."""
    feed = KeywordFeed(through)
    for seq, start in enumerate(range(0, len(library), 500), through):
        feed.written(seq, [i for i, _ in library[start:start + 500]], [m for _, m in library[start:start + 500]])
    return feed.index()


@pytest.mark.parametrize("fed", [False, True], ids=["from every record", "fed a first run's writes"])
def test_a_built_index_holds_its_strings_and_tables_packed_as_a_read_file_does(tmp_path, fed):
    rng = random.Random(17)
    library = [(f"id{n:04d}", _meta(rng, n)) for n in range(3000)] + [("id0005", _meta(rng, 5))]

    def unpacked() -> KeywordIndex:  # the documents added as an index run's changes are
        index = KeywordIndex()
        index.extend(library)
        return index

    as_built, fresh = _held(unpacked)
    held, built = _held(lambda: _fed(library, 4) if fed else KeywordIndex.from_metadata(iter(library), through=4))
    assert held < 0.6 * as_built  # no Python object per string, token and file name (0.46 here)
    _same(built, fresh)
    assert built.through == (4 + 7 if fed else 4)  # 7 writes
    # Its id map is made again from the packed ids: it keeps none of the records' own strings, which would
    # keep the allocator's pools they sit in, among the build's freed objects, half empty (``_live_positions``).
    given = {i: i for i, _ in library}
    assert built.positions() == fresh.positions() and all(key is not given[key] for key in built.positions())
    built.save(tmp_path / "k.npz", ("x", 1))
    read_held, read = _held(lambda: KeywordIndex.load(tmp_path / "k.npz", ("x", 1)))
    assert read is not None and held < 1.2 * read_held
    changed = [("id0007", _meta(rng, 7))]  # and changed as a read file is
    _same(built.apply(changed, removed=["id0009"]), fresh.apply(changed, removed=["id0009"]))


def test_a_write_the_feed_did_not_see_stops_it_and_the_store_gives_the_rest(tmp_path, monkeypatch):
    engine, rng = _new_library(tmp_path), random.Random(12)
    store, done = engine.store, engine.session.follow_first_run()
    library = {f"id{n}": _meta(rng, n) for n in range(6)}
    _put(store, dict(list(library.items())[:3]))
    after_first = store.write_mark().through
    store.set_metadata({"id0": {"camera": "Canon EOS 5D"}})  # numbered, and not a put: the feed never sees it
    library["id0"]["camera"] = "Canon EOS 5D"
    _put(store, dict(list(library.items())[3:]))
    done()
    calls, since = [], Store.written_since
    monkeypatch.setattr(Store, "written_since", lambda self, seq, vectors=(): calls.append(seq) or since(self, seq, vectors))
    monkeypatch.setattr(Store, "pages", lambda self, vectors=(): pytest.fail("every record was read"))
    kept = engine.session.keyword_index(fresh=True)
    assert calls == [after_first]  # what the feed had, then every write from the one it missed on
    _same(kept, KeywordIndex.from_metadata(library.items()))
    assert kept.camera_counts["Canon EOS 5D"] == sum(m.get("camera") == "Canon EOS 5D" for m in library.values())
    monkeypatch.undo()
    assert store.entries() == Store(str(tmp_path / "db")).entries()  # the store's own entries stopped there too


def test_writers_into_a_server_are_not_followed(tmp_path, monkeypatch):
    engine = _new_library(tmp_path)
    engine.store.sole_writer = False  # as for a server: two writers can take one number
    done = engine.session.follow_first_run()
    _put(engine.store, {"id0": _meta(random.Random(1), 0)})
    done()
    read = records_read_back(monkeypatch)
    assert engine.session.keyword_index(fresh=True).live_ids() == ["id0"] and read == ["id0"]


def test_a_kept_file_brought_up_to_date_is_written_again_when_asked_fresh(tmp_path):
    """A process that reads an old keywords.npz and brings it up to date keeps the result when asked
    ``fresh``, even if an earlier call did the update: the next process then reads it, not the writes again."""
    library = tmp_path / "library"
    for n in range(3):
        _photo(library / f"p{n}.jpg", (70 * n, 10, 10))
    _engine(tmp_path).index([library])
    _photo(library / "zebra.jpg", (1, 2, 3))
    writer = _engine(tmp_path)
    writer.store.entries_file = None
    writer.session.keyword_index = lambda fresh=False: None  # a writer that keeps no keyword file
    assert writer.index([library]).added == 1
    reader = _engine(tmp_path)
    path = reader.session.keywords_path()
    stale = KeywordIndex.load(path, (reader.store.identity(), reader.store.schema_version()))
    assert stale is not None and len(stale) == 3
    assert len(reader.session.keyword_index()) == 4  # brought up to date; not written yet (every 30 s at most)
    reader.session.keyword_index(fresh=True)
    kept = KeywordIndex.load(path, (reader.store.identity(), reader.store.schema_version()))
    assert kept is not None and len(kept) == 4 and kept.exact("zebra")
