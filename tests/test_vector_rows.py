"""The images' and captions' vectors beside the keyword index (``mmsearch.search.vector_rows``): what goes in
comes out, row for row, through appends, packing and the keyword file; the index built from the store holds
each image's vectors as stored, and a filtered search scores the images it keeps from there, never reading
Chroma."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mmsearch.search import vector_rows
from mmsearch.search.keywords import KeywordIndex
from mmsearch.search.vector_rows import VectorRows
from mmsearch.store import Store
from mmsearch.store.collections import VECTOR


def _block(rng: np.random.Generator, size: int, dim: int = 6) -> list[np.ndarray | None]:
    """``size`` vectors, a third of them missing (a block of 3: all of them)."""
    return [None if (rng.random() < 0.33 or size == 3) else rng.standard_normal(dim).astype(np.float32)
            for _ in range(size)]


def _rows(rng: np.random.Generator, sizes: list[int]) -> tuple[VectorRows, list[np.ndarray | None]]:
    """Rows appended in blocks of ``sizes``."""
    rows, given = VectorRows(), []
    for size in sizes:
        block = _block(rng, size)
        rows, given = rows.appended(block), given + block
    return rows, given


def _check(rows: VectorRows, given: list[np.ndarray | None]) -> None:
    assert len(rows) == len(given)
    np.testing.assert_array_equal(rows.held, [v is not None for v in given])
    order = np.random.default_rng(1).permutation(len(given))
    got = rows.of(order)
    for n, row in zip(order.tolist(), got):
        np.testing.assert_array_equal(row, given[n] if given[n] is not None else np.zeros(rows.dim, np.float32))


def test_rows_come_back_as_given_through_appends_joins_and_packing(monkeypatch):
    monkeypatch.setattr(vector_rows, "JOIN_BELOW", 8)  # small blocks are joined, large ones left apart
    rng = np.random.default_rng(0)
    first, given = _rows(rng, [3, 5])  # the first block holds no vector: the rows' length comes later
    rows, every = first, list(given)
    for size in [7, 1, 4, 2, 9, 3, 6, 12]:
        block = _block(rng, size)
        rows, every = rows.appended(block), every + block
    sizes = [len(b) for b in rows.tail]
    assert len(sizes) < 8 and all(max(a, b) >= 8 for a, b in zip(sizes, sizes[1:])), sizes  # no two small ones
    _check(rows, every)
    _check(first, given)  # appending left the rows it started from as they were
    keep = np.flatnonzero(np.random.default_rng(2).random(len(rows)) < 0.6)
    _check(rows.packed(keep), [every[n] for n in keep.tolist()])
    assert not rows.appended([np.zeros(4, np.float32)]).held[-1]  # a vector of another length is not held


def _saved(rows: VectorRows, folder: Path) -> VectorRows | None:
    """``rows`` saved as ``KeywordIndex.save`` saves them, and read back."""
    saved = rows.saving(folder, "k")
    np.savez(folder / "k.npz", **saved.arrays())
    saved.retire(folder, rows)
    with np.load(folder / "k.npz") as data:
        return VectorRows.from_arrays(data, folder)


def test_rows_saved_come_back_from_the_keyword_file_and_a_base_file_written_past_the_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(vector_rows, "TAIL_MAX", 60)
    rng = np.random.default_rng(3)
    rows, given = _rows(rng, [3, 40])
    small = _saved(rows, tmp_path)  # a tail of 60 rows at most: in the .npz, no base file
    assert small is not None and not small.base_file and not list(tmp_path.glob("*.f32"))
    _check(small, given)
    more, added = _rows(rng, [70])
    rows = small.appended(added)
    big = _saved(rows, tmp_path)  # past the tail's room: every held row into a base file, mapped
    assert big is not None and isinstance(big.base.mapping, np.memmap) and big.tail_rows == 0
    assert [p.name for p in tmp_path.glob("*.f32")] == [big.base_file]
    _check(big, given + added)
    keep = np.flatnonzero(np.random.default_rng(2).random(len(big)) < 0.3)
    later = big.packed(keep).appended(more := _block(rng, 9))
    monkeypatch.setattr(vector_rows, "TAIL_MAX", 10)
    again = _saved(later, tmp_path)  # most of the base no document's any more: written again, the old one deleted
    assert again is not None and again.base_file != big.base_file and len(again.base) == int(later.held.sum())
    assert [p.name for p in tmp_path.glob("*.f32")] == [again.base_file]
    _check(again, [(given + added)[n] for n in keep.tolist()] + more)
    (tmp_path / again.base_file).unlink()
    with np.load(tmp_path / "k.npz") as data:
        assert VectorRows.from_arrays(data, tmp_path) is None  # its base gone: the keyword index is built again
    assert _saved(again, tmp_path) is not None  # a process whose base was deleted writes one of its own


@pytest.mark.parametrize("block", [7, vector_rows.SCORE_ROWS])  # scored a few rows at a time, or all at once
@pytest.mark.parametrize("held", ["tail", "read", "mapped"])  # in memory; in a base file, read or mapped
def test_the_nearest_rows_are_the_exact_cosine_order_and_none_where_one_is_missing(tmp_path, monkeypatch, block, held):
    monkeypatch.setattr(vector_rows, "SCORE_ROWS", block)
    monkeypatch.setattr(vector_rows, "READ_RUNS", 0 if held == "mapped" else 1000)
    monkeypatch.setattr(vector_rows, "TAIL_MAX", 1000 if held == "tail" else 0)
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    rows = _saved(VectorRows().appended(list(vectors[:20])).appended([*vectors[20:], None]), tmp_path)
    assert rows is not None and (held == "tail") == (not rows.base_file)
    picked = np.asarray(sorted(rng.choice(50, 30, replace=False).tolist()))
    query = rng.standard_normal(8).astype(np.float32)
    found = rows.nearest(picked, query, 7)  # positions in ``picked``, cosines
    cosine = vectors[picked] @ query / (np.linalg.norm(vectors[picked], axis=1) * np.linalg.norm(query))
    best = np.argsort(-cosine)[:7]
    assert found is not None and found[0].tolist() == best.tolist()
    np.testing.assert_allclose(found[1], cosine[best], rtol=1e-5)
    assert rows.nearest(np.asarray([50]), query, 1) is None


def _stored_vectors(store: Store, index: KeywordIndex) -> None:
    """Every live document of ``index`` holds its image's vector and its captions' as the store holds them (the
    first run's feed has the vectors as given to Chroma, which may hand them back renormalised: 1e-8 apart)."""
    ids = index.live_ids()
    rows = np.asarray([index.positions()[i] for i in ids])
    assert ids and index.vectors.held[rows].all()
    stored = store.image_vectors(ids)
    np.testing.assert_allclose(index.vectors.of(rows), np.stack([stored[i] for i in ids]), rtol=0, atol=1e-6)
    captions, held = store.caption_vectors_of(ids), index.captions_of(ids)
    assert captions and held is not None
    assert {f"{i}:{n}" for i, pairs in held.items() for n, _ in pairs} == set(captions)
    for image, pairs in held.items():
        for n, vector in pairs:
            np.testing.assert_allclose(vector, captions[f"{image}:{n}"], rtol=0, atol=1e-6)


def test_the_keyword_index_holds_each_images_vector_as_stored_fed_caught_up_and_read_back(tmp_path, make_engine,
                                                                                         monkeypatch):
    """Built from the first run's writes (``KeywordFeed``), brought up to date from the store's numbered writes
    after a file changed, one was removed and two were added, and read back from ``keywords.npz`` and its base
    file by a new process's engine, mapped."""
    from PIL import Image

    monkeypatch.setattr(vector_rows, "TAIL_MAX", 2)  # saved into a base file

    samples = Path(__file__).resolve().parent.parent / "sample_images"
    photos = tmp_path / "photos"
    photos.mkdir()
    for n, name in enumerate(sorted(p.name for p in samples.iterdir() if p.suffix in (".png", ".jpg"))[:5]):
        shutil.copy(samples / name, photos / name)
        (photos / f"{name}.txt").write_text("".join(f"caption {c} of {name}\n" for c in range(n % 3)))
    engine = make_engine()
    engine.index([photos])
    _stored_vectors(engine.store, engine.keyword_index())
    images = sorted(p for p in photos.iterdir() if p.suffix != ".txt")
    Image.open(images[0]).convert("RGB").rotate(90).save(images[0])  # changed
    images[1].unlink()
    (photos / f"{images[2].name}.txt").write_text("a caption added\n")
    for n in range(2):
        Image.new("RGB", (40, 30), (200, 60 * n, 10)).save(photos / f"new-{n}.png")
    engine.index([photos])
    caught_up = engine.keyword_index()
    assert len(caught_up) == 6
    _stored_vectors(engine.store, caught_up)
    saved = engine.session.keyword_index(fresh=True)  # kept on disk, and its vectors mapped from there since
    assert isinstance(saved.vectors.base.mapping, np.memmap) and not saved.vectors.tail
    _stored_vectors(engine.store, saved)
    again = make_engine()
    loaded = again.keyword_index()
    assert isinstance(loaded.vectors.base.mapping, np.memmap)
    _stored_vectors(again.store, loaded)


def test_a_filtered_search_scores_what_it_keeps_from_memory_as_reading_chroma_would(tmp_path, make_engine, monkeypatch):
    """The image find and the other finds' vectors under a filter come from the keyword index: no vector is
    read from Chroma, and the hits and their scores are those of the way that reads them."""
    from mmsearch.search import selection

    samples = Path(__file__).resolve().parent.parent / "sample_images"
    photos = tmp_path / "photos"
    for n, name in enumerate(sorted(p.name for p in samples.iterdir() if p.suffix in (".png", ".jpg"))):
        folder = photos / ("inside" if n % 3 else "outside")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(samples / name, folder / name)
        (folder / f"{name}.txt").write_text("".join(f"a photo, caption {c}\n" for c in range(n % 3)))
    engine = make_engine()
    engine.index([photos])
    queries = [("a photo", {"folder": photos / "inside"}), ("cat", {"folder": photos / "inside"}),
               ("rocket", {"folder": photos / "outside"})]
    read: list[str] = []

    for name in ("image_vectors", "query_images", "query_captions", "caption_vectors_of", "caption_vectors_by_id"):
        real = getattr(Store, name)
        monkeypatch.setattr(Store, name, lambda self, *a, real=real, name=name, **k: (read.append(name),
                                                                                     real(self, *a, **k))[1])
    from_memory = [[(h.path, h.scores) for h in engine.search(text, k=6, **where)] for text, where in queries]
    assert not read and all(from_memory), (read, from_memory)
    for method in ("nearest", "caption_nearest"):
        monkeypatch.setattr(selection.Kept, method, lambda self, vector, n: None)
    for method in ("vectors_of", "captions_of"):
        monkeypatch.setattr(selection.Kept, method, lambda self, ids: None)
    from_chroma = [[(h.path, h.scores) for h in engine.search(text, k=6, **where)] for text, where in queries]
    assert {"query_images", "query_captions"} <= set(read)
    assert any(s.get("caption") for hits in from_memory for _, s in hits)  # captions took part
    for memory, chroma in zip(from_memory, from_chroma):
        assert [p for p, _ in memory] == [p for p, _ in chroma]
        for (_, a), (_, b) in zip(memory, chroma):
            assert a.keys() == b.keys() and all(a[s] == pytest.approx(b[s], abs=2e-6) for s in a if a[s] is not None), (a, b)


def test_rows_not_held_or_too_many_leave_the_search_to_chroma(monkeypatch):
    from mmsearch.search import selection
    from mmsearch.search.selection import Kept

    ids = [f"img{n}" for n in range(6)]
    index = KeywordIndex.from_metadata([(i, {"path": f"/p/{i}.jpg", VECTOR: np.ones(3, np.float32)})
                                        for n, i in enumerate(ids)])
    kept = Kept(index, np.arange(2, 6))
    assert list(kept.nearest(np.ones(3, np.float32), 2) or {}) == ["img2", "img3"]  # all alike: ties in order
    assert set(kept.vectors_of(["img0", "img3"]) or {}) == {"img3"}  # only what the filter keeps
    monkeypatch.setattr(selection, "EXACT_ROWS", 3)
    assert kept.nearest(np.ones(3, np.float32), 2) is None
    texts = Kept(KeywordIndex.build([(i, "a text") for i in ids]), np.arange(2, 6))
    assert texts.nearest(np.ones(3, np.float32), 2) is None and texts.vectors_of(["img3"]) is None


def test_a_base_no_keyword_file_names_is_deleted_once_old(tmp_path, monkeypatch):
    """A keyword file deleted and built again, or a process that ended, leaves a base behind: the next base
    written deletes those an hour old that ``keywords.npz`` does not name, and keeps the one it names."""
    import os
    import time

    monkeypatch.setattr(vector_rows, "TAIL_MAX", 0)
    rng = np.random.default_rng(6)
    rows, given = _rows(rng, [20])
    named = _saved(rows, tmp_path)
    assert named is not None and named.base_file
    hour_ago = time.time() - 3700
    orphan, fresh = tmp_path / "k.image.0ld.f32", tmp_path / "k.image.fr35h.f32"
    for path in (orphan, fresh):
        path.write_bytes(bytes(24))
    os.utime(orphan, (hour_ago, hour_ago))
    os.utime(tmp_path / named.base_file, (hour_ago, hour_ago))
    other = VectorRows().appended(_block(rng, 5))  # another process's rows: a base of its own, the file's untouched
    written = other.saving(tmp_path, "k")
    assert {p.name for p in tmp_path.glob("*.f32")} == {named.base_file, fresh.name, written.base_file}


def test_a_build_writes_its_rows_into_a_base_file_as_they_come(tmp_path, monkeypatch):
    """A build from every record with ``spill_to`` holds no vector in memory: each chunk's rows go into the base
    file beside the keyword file, mapped once the build is done; saved, the keyword file names it."""
    from mmsearch.search import keywords

    monkeypatch.setattr(keywords, "CHUNK", 7)
    rng = np.random.default_rng(8)
    vectors = _block(rng, 30)
    records = [(f"i{n}", {"path": f"/p/{n}.jpg", **({VECTOR: v} if v is not None else {})})
               for n, v in enumerate(vectors)]
    spilled, written = [], vector_rows.Spill.write
    monkeypatch.setattr(vector_rows.Spill, "write", lambda self, rows: (spilled.append(len(rows)), written(self, rows)))
    index = KeywordIndex.from_metadata(records, spill_to=tmp_path / "keywords.npz")
    rows = index.vectors
    assert len(spilled) >= 4 and sum(spilled) == sum(v is not None for v in vectors)  # a write per chunk held
    assert isinstance(rows.base.mapping, np.memmap) and not rows.tail and rows.base_file
    _check(rows, vectors)
    index.save(tmp_path / "keywords.npz", ("k",))
    assert index.vectors.base_file == rows.base_file and [p.name for p in tmp_path.glob("*.f32")] == [rows.base_file]
    loaded = KeywordIndex.load(tmp_path / "keywords.npz", ("k",))
    assert loaded is not None
    _check(loaded.vectors, vectors)


def test_the_offline_profile_keeps_the_captions_vectors_and_not_the_layout_ones(tmp_path):
    """Without an image model the image records hold layout vectors no search compares: the keyword index keeps
    none of them, and keeps the captions' (the offline profile's main signal), fed and built from the store."""
    from mmsearch import Config, SearchEngine

    photos = tmp_path / "photos"
    photos.mkdir()
    samples = Path(__file__).resolve().parent.parent / "sample_images"
    for n, name in enumerate(["chelsea-cat.png", "rocket.jpg", "coffee.png"]):
        shutil.copy(samples / name, photos / name)
        (photos / f"{name}.txt").write_text("".join(f"a caption {c} of {name}\n" for c in range(n + 1)))
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([photos])
    for index in (engine.keyword_index(), KeywordIndex.from_metadata(engine.store.all_metadata(("caption",)))):
        ids = index.live_ids()
        assert not index.vectors.held.any() and len(index.caption_vectors) == 6
        held = index.captions_of(ids)
        stored = engine.store.caption_vectors_of(ids)
        assert held is not None and {f"{i}:{n}" for i, pairs in held.items() for n, _ in pairs} == set(stored)
    hits = engine.search("a caption", k=3, folder=photos)
    assert len(hits) == 3 and all(h.scores["caption"] for h in hits)


@pytest.mark.parametrize("filtered", [True, False])
def test_a_photo_another_process_removed_gives_its_place_in_the_hits(tmp_path, make_engine, monkeypatch, filtered):
    """Until the keyword index sees a removal (``KEYWORD_CHECK``), its rows still score the photo (the filter's
    kept images; with no filter, the keyword find's); the hits' read of the records finds it gone, and the next
    photo takes its place: still k hits."""
    from mmsearch import session
    from mmsearch.ids import image_id

    monkeypatch.setattr(session, "KEYWORD_CHECK", 1e9)  # this engine never looks again
    samples = Path(__file__).resolve().parent.parent / "sample_images"
    photos, outside = tmp_path / "photos" / "inside", tmp_path / "photos" / "outside"
    for n, name in enumerate(sorted(p.name for p in samples.iterdir() if p.suffix in (".png", ".jpg"))[:9]):
        (photos if n % 3 else outside).mkdir(parents=True, exist_ok=True)
        shutil.copy(samples / name, (photos if n % 3 else outside) / name)
        ((photos if n % 3 else outside) / f"{name}.txt").write_text(f"a photo, number {n}\n")
    engine = make_engine()
    engine.index([photos.parent])
    where = {"folder": photos} if filtered else {}
    before = [h.path for h in engine.search("a photo", k=3, **where)]
    assert len(before) == 3 and (not filtered or all(p.startswith(str(photos)) for p in before))
    make_engine().store.delete_images([image_id(before[0])])  # another process's removal
    after = [h.path for h in engine.search("a photo", k=3, **where)]
    assert after[:2] == before[1:] and len(after) == 3 and before[0] not in after



def _captioned_photos(tmp_path: Path) -> Path:
    """The sample photos in a folder, each with a caption beside it naming it and its number."""
    samples = Path(__file__).resolve().parent.parent / "sample_images"
    photos = tmp_path / "photos"
    photos.mkdir()
    for n, name in enumerate(sorted(p.name for p in samples.iterdir() if p.suffix in (".png", ".jpg"))):
        shutil.copy(samples / name, photos / name)
        (photos / f"{name}.txt").write_text(f"a photo of {name.split('.')[0].replace('-', ' ')}, number {n}\n")
    return photos


def _same_hits(ours: list[list[tuple[str, dict]]], theirs: list[list[tuple[str, dict]]]) -> None:
    """Each text's hits (path, scores) in the same order, with the same scores to 2e-6."""
    for mine, other in zip(ours, theirs, strict=True):
        assert [p for p, _ in mine] == [p for p, _ in other]
        for (_, a), (_, b) in zip(mine, other):
            assert a.keys() == b.keys() and all(a[s] == pytest.approx(b[s], abs=2e-6) for s in a if a[s] is not None)

def test_an_unfiltered_search_takes_the_other_finds_vectors_from_the_keyword_index(tmp_path, make_engine, monkeypatch):
    """The keyword and caption finds' image vectors come from the keyword index where it holds them: none is read
    from Chroma, and the hits and scores are those of reading them."""
    from mmsearch.search.keywords import KeywordIndex as Index

    photos = _captioned_photos(tmp_path)
    engine = make_engine()
    engine.index([photos])
    texts = ["a photo of coffee", "rocket", "number 3"]
    asked: list[list[str]] = []
    real = Store.image_vectors
    monkeypatch.setattr(Store, "image_vectors", lambda self, ids, *a: (asked.append(list(ids)), real(self, ids, *a))[1])
    from_index = [[(h.path, h.scores) for h in engine.search(text, k=5)] for text in texts]
    assert not asked and all(from_index)
    monkeypatch.setattr(Index, "held_vectors", lambda self, ids: {})
    from_chroma = [[(h.path, h.scores) for h in engine.search(text, k=5)] for text in texts]
    assert asked and any(s.get("keyword") for hits in from_index for _, s in hits)
    _same_hits(from_index, from_chroma)



def test_a_first_search_while_chroma_loads_the_captions_index_reads_no_caption_there(tmp_path, make_engine,
                                                                                      monkeypatch):
    """With no filter, while Chroma loads the captions' vector index (``Store.warming``: a new process's first
    search, where any read of that collection waits for the load), every caption is scored from the keyword
    index's own vectors and counted there: nothing of the captions' collection is read, and the hits and scores
    are those of asking Chroma once its index is loaded."""
    make_engine().index([_captioned_photos(tmp_path)])
    texts = ["a photo of coffee", "rocket", "number 3"]
    loaded = [[(h.path, h.scores) for h in make_engine().search(text, k=5)] for text in texts]
    assert any(s.get("caption") for hits in loaded for _, s in hits)
    asked: list[str] = []
    for name in ("query_captions", "caption_vectors_of", "caption_count"):
        real = getattr(Store, name)
        monkeypatch.setattr(Store, name, lambda self, *a, _real=real, _name=name, **k: (asked.append(_name),
                                                                                         _real(self, *a, **k))[1])
    monkeypatch.setattr(Store, "warming", lambda self, kind: kind == "captions")
    loading = [[(h.path, h.scores) for h in make_engine().search(text, k=5)] for text in texts]  # new processes
    assert not asked
    _same_hits(loading, loaded)
    monkeypatch.setattr(Store, "warming", lambda self, kind: False)
    assert [[h.path for h in make_engine().search(text, k=5)] for text in texts] == [[p for p, _ in h] for h in loaded]
    assert "query_captions" in asked  # the index loaded: Chroma's captions are asked again


def test_a_first_search_while_chroma_loads_the_images_index_reads_nothing_of_chroma(tmp_path, make_engine,
                                                                                    monkeypatch):
    """While Chroma loads the images' vector index (the first one ``warm_up`` loads; any read of any collection
    waits for it), a search with no filter takes the keyword file as it is where it holds the last write published
    (no count, no catch-up, no look at the writes in progress), scores every image from its vectors and reads its
    hits' records from its copy (``KeywordIndex.records_of``): nothing is read from Chroma's collections, and the
    hits, scores, captions and metadata are those of reading them once their indexes are loaded."""
    photos = _captioned_photos(tmp_path)
    shutil.copy(photos / "rocket.jpg", photos / "rocket copy.jpg")  # copies fold: their cosine is asked for
    for path in photos.iterdir():  # dated by their file times: "2019" lists them (a browse, in date order)
        os.utime(path, (1_560_000_000 + len(path.name), 1_560_000_000 + len(path.name)))
    make_engine().index([photos])
    texts = ["a photo of coffee", "rocket", "number 3", "chelsea", "2019"]

    def hits() -> list[list[tuple[str, dict]]]:
        engine = make_engine()  # a new process
        found = [engine.search(text, k=5, collapse=True) for text in texts]
        assert all(found)
        shown.append([[(h.caption, h.metadata, h.relevance, h.similar) for h in each] for each in found])
        return [[(h.path, h.scores) for h in each] for each in found]

    shown: list[list] = []
    loaded = hits()
    assert any(s.get("image") is not None for each in loaded for _, s in each)  # the image model took part
    assert any(similar for each in shown[0] for *_, similar in each)  # the copy folded into the rocket
    asked: list[str] = []
    for name in ("query_images", "query_frames", "frame_sets", "image_metadata", "image_vectors", "image_records",
                 "query_captions", "caption_vectors_of", "caption_count", "count", "changed_since", "all_metadata"):
        real = getattr(Store, name)
        monkeypatch.setattr(Store, name, lambda self, *a, _real=real, _name=name, **k: (asked.append(_name),
                                                                                         _real(self, *a, **k))[1])
    for name in ("write_mark", "published_through"):
        real = getattr(Store, name)
        monkeypatch.setattr(Store, name, lambda self, _real=real, _name=name: (asked.append(_name), _real(self))[1])
    monkeypatch.setattr(Store, "warming", lambda self, kind: True)
    _same_hits(hits(), loaded)
    assert asked == ["published_through"]  # only the images' metadata is read: nothing that waits
    assert shown[1] == shown[0]
    monkeypatch.setattr(Store, "warming", lambda self, kind: kind == "captions")  # the images' index loaded
    _same_hits(hits(), loaded)
    assert {"query_images", "image_metadata", "write_mark"} <= set(asked)

def test_a_scan_of_every_image_stops_where_the_images_index_is_loaded_midway_and_asks_chroma(tmp_path, make_engine,
                                                                                             monkeypatch):
    """Read from a disk with nothing cached, the scan of every image can take longer than Chroma's load: once the
    load ends (``Store.warming`` turns false between two reads of ``SCORE_ROWS`` rows), the scan stops and the
    loaded index is asked, with the same hits and scores."""
    make_engine().index([_captioned_photos(tmp_path)])
    texts = ["a photo of coffee", "rocket"]
    loaded = [[(h.path, h.scores) for h in make_engine().search(text, k=5)] for text in texts]
    monkeypatch.setattr(vector_rows, "SCORE_ROWS", 2)
    loading, scored, asked = [True], [], []
    real_cosines, real_query = vector_rows.cosines, Store.query_images

    def cosines(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        scored.append(len(rows))
        loading[0] = False  # the load ends while the first rows are scored
        return real_cosines(rows, vector)

    monkeypatch.setattr(vector_rows, "cosines", cosines)
    monkeypatch.setattr(Store, "query_images", lambda self, *a, **k: (asked.append(1), real_query(self, *a, **k))[1])
    monkeypatch.setattr(Store, "warming", lambda self, kind: kind == "images" and loading[0])
    again = []
    for text in texts:
        loading[0] = True
        again.append([(h.path, h.scores) for h in make_engine().search(text, k=5)])
    _same_hits(again, loaded)
    assert scored == [2, 2] and len(asked) == 2  # one read of two rows each time, then Chroma


def _without_the_rocket(tmp_path: Path) -> tuple[Path, Callable[[], None]]:
    """``_captioned_photos`` with the rocket and its caption set aside, and what puts them back."""
    photos, aside = _captioned_photos(tmp_path), tmp_path / "aside"
    aside.mkdir()
    names = ("rocket.jpg", "rocket.jpg.txt")
    for name in names:
        (photos / name).rename(aside / name)

    def bring_back() -> None:
        for name in names:
            (aside / name).rename(photos / name)

    return photos, bring_back


def test_a_first_search_while_chroma_loads_reads_the_store_where_the_keyword_file_lacks_a_write(tmp_path, make_engine,
                                                                                                 monkeypatch):
    """A keyword file older than the last write published (another process wrote since it was saved) is brought
    up to date from the store before the first search, as when the indexes are loaded, and the photo written
    since is found."""
    photos, bring_back = _without_the_rocket(tmp_path)
    engine = make_engine()
    engine.index([photos])
    saved = {path: path.read_bytes() for path in engine.config.keyword_files()}
    bring_back()
    make_engine().index([photos])
    for path, data in saved.items():  # the keyword file as it was before the rocket was written
        path.write_bytes(data)
    asked: list[str] = []
    real = Store.changed_since
    monkeypatch.setattr(Store, "changed_since", lambda self, *a, **k: (asked.append("changed_since"),
                                                                       real(self, *a, **k))[1])
    monkeypatch.setattr(Store, "warming", lambda self, kind: True)
    hits = make_engine().search("a photo of rocket", k=3)
    assert asked and hits and Path(hits[0].path).name == "rocket.jpg"


def test_a_first_search_while_chroma_loads_reads_the_store_after_a_write_claimed_and_never_published(
        tmp_path, make_engine, monkeypatch):
    """An index run interrupted after writing its records and before publishing their write leaves them in the
    store under a number claimed, not published: a first search while the images' index loads reads what
    changed (as once it is loaded) and finds them, where the keyword file and the last number published alone
    would miss them."""
    photos, bring_back = _without_the_rocket(tmp_path)
    make_engine().index([photos])
    bring_back()
    real = Store._modify_metadata

    def modify(self: Store, changes: dict) -> None:
        if "write_seq" in changes:
            raise KeyboardInterrupt  # Ctrl-C between the records' write and its publish
        real(self, changes)

    with monkeypatch.context() as patched:
        patched.setattr(Store, "_modify_metadata", modify)
        with pytest.raises(KeyboardInterrupt):
            make_engine().index([photos])
    store = make_engine().store
    assert store.published_through() is None and store.write_mark().through == store.write_seq() + 1
    monkeypatch.setattr(Store, "warming", lambda self, kind: True)
    hits = make_engine().search("a photo of rocket", k=3)
    assert hits and Path(hits[0].path).name == "rocket.jpg"


def _mapped_kb(path: Path) -> int:
    """How much of ``path`` is mapped into this process (kB of ``Rss`` in /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isalnum() and "-" in line.split(" ", 1)[0] and ":" not in line.split(" ", 1)[0]:
            inside = line.rstrip().endswith(str(path))  # a mapping's first line: addresses, ..., its file
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads /proc/self/smaps (Linux)")
def test_rows_in_few_runs_are_read_from_the_base_file_mapping_none_and_many_scattered_through_its_mapping(
        tmp_path, monkeypatch):
    """Scattered rows map whole large folios of a base file: a gather of a few (a search's candidates, the
    relevance sample), or of many in few runs (a folder's photos), reads them from the file and leaves none of it
    counted in the process, as does a copy of every row into a new base; many scattered rows (a filter that keeps
    every tenth photo) go through the mapping. All give the rows as they went in, in any order."""
    monkeypatch.setattr(vector_rows, "TAIL_MAX", 0)
    rng = np.random.default_rng(7)
    rows, given = _rows(rng, [4000])
    saved = _saved(rows, tmp_path)
    assert saved is not None and isinstance(saved.base.mapping, np.memmap) and not saved.tail
    base = tmp_path / saved.base_file
    few = rng.permutation(len(saved))[:vector_rows.READ_RUNS]
    got = saved.of(few)
    near = saved.nearest(np.flatnonzero(saved.held)[:200], given[int(np.flatnonzero(saved.held)[0])], 5)
    (tmp_path / "copy").mkdir()
    copied = _saved(saved, tmp_path / "copy")  # every row copied into a base file of its own, read, not mapped
    assert copied is not None and copied.base_file and not (tmp_path / "copy" / saved.base_file).exists()
    in_order = saved.of(np.arange(len(saved)))  # 4,000 rows, every held one in a single run
    assert _mapped_kb(base) == 0 and near is not None
    np.testing.assert_array_equal(in_order, [v if v is not None else np.zeros(saved.dim, np.float32) for v in given])
    for n, row in zip(few.tolist(), got):
        np.testing.assert_array_equal(row, given[n] if given[n] is not None else np.zeros(saved.dim, np.float32))
    _check(copied, given)
    _check(saved, given)  # every row, scattered in more than READ_RUNS runs: through the mapping
    assert _mapped_kb(base) > 0
    np.testing.assert_array_equal(saved.of(few), got)
