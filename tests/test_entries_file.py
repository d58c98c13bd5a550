"""The store keeps its entries (what an index run compares files against) in a file beside the index: a new
process reads that file and what was written since, never every record, and a file that does not fit (another
index, damaged, behind a write made without a number) is read again from the store."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from helpers import records_read_back
from PIL import Image

from mmsearch import Config, SearchEngine
from mmsearch.store.client import Store
from mmsearch.store.entries import Entries, Entry, load, save


def _photo(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path)


def _engine(tmp_path: Path) -> SearchEngine:
    return SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))


def _every_record_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Store, "pages", lambda self, vectors=(): pytest.fail("every record was read"))


def _library(tmp_path: Path, n: int = 5) -> Path:
    library = tmp_path / "library"
    for k in range(n):
        _photo(library / f"p{k}.jpg", (50 * k, 10, 10))
    (library / "p1.jpg.txt").write_text("a red door\n")
    return library


def _truth(tmp_path: Path) -> dict[str, Entry]:
    """The entries read from every record, as a store without a file reads them."""
    return Store(str(tmp_path / "db")).entries()


def test_the_first_run_reads_no_record_back_and_later_runs_never_read_every_record(tmp_path, monkeypatch):
    library = _library(tmp_path)
    read = records_read_back(monkeypatch)
    engine = _engine(tmp_path)
    first = engine.index([library])  # into a new index: its entries and keyword index follow its own writes
    assert first.added == 5 and read == []
    assert engine.search("a red door", k=1)[0].path == str(library / "p1.jpg")  # the keyword index it built
    assert engine.facets()["folders"]  # and its facets, still without a read
    assert read == []
    monkeypatch.undo()
    _every_record_forbidden(monkeypatch)
    entries_file = Path(tmp_path / "db" / "entries.npz")
    assert entries_file.exists()
    later = _engine(tmp_path)  # a new process: the file and what changed since
    assert later.index([library]).unchanged == 5
    (library / "p0.jpg").unlink()
    _photo(library / "p7.jpg", (7, 7, 7))
    (library / "p2.jpg.txt").write_text("a blue boat\n")
    report = _engine(tmp_path).index([library])
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 3)
    assert _engine(tmp_path).index([library]).unchanged == 5
    monkeypatch.undo()
    kept = _engine(tmp_path).store.entries()
    assert kept == _truth(tmp_path) and kept[str(library / "p2.jpg")].captions == ("a blue boat",)


def test_another_processs_writes_since_the_file_was_kept_are_read(tmp_path, monkeypatch):
    library = _library(tmp_path)
    _engine(tmp_path).index([library])
    reader = _engine(tmp_path)
    reader.store.entries()  # read from the file now ...
    (library / "p3.jpg").unlink()
    _photo(library / "p8.jpg", (8, 8, 8))
    writer = _engine(tmp_path)
    writer.store.entries_file = None  # ... while a writer that keeps no file changes the index
    assert writer.index([library]).added == 1
    _every_record_forbidden(monkeypatch)
    assert reader.store.entries() == _engine(tmp_path).store.entries()
    monkeypatch.undo()
    assert reader.store.entries() == _truth(tmp_path)
    assert str(library / "p8.jpg") in reader.store.entries() and str(library / "p3.jpg") not in reader.store.entries()


@pytest.mark.parametrize("damage", ["truncated", "empty", "other index", "unnumbered write"])
def test_a_file_that_does_not_fit_the_index_is_read_again_from_the_store(tmp_path, damage):
    library = _library(tmp_path)
    engine = _engine(tmp_path)
    engine.index([library])
    path = Path(tmp_path / "db" / "entries.npz")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other index":
        through, by_id = load(path, (engine.store.identity(), engine.store.schema_version()))
        stale = {i: Entry(i, 1, "0", "", path="/elsewhere/x.jpg") for i in by_id}
        save(path, ("another collection", engine.store.schema_version()), through, stale)
    else:  # a record written straight to Chroma, as an older mmsearch wrote: no number, only the count shows it
        store = engine.store
        (first, meta), = store.image_metadata(store.image_ids()[:1]).items()
        vector = store.image_vectors([first])[first]
        meta = {k: v for k, v in meta.items() if k != "seq"} | {"path": str(library / "zebra.jpg"), "name": "zebra.jpg"}
        store.client.get_collection(store.name("images")).add(ids=["unnumbered"], embeddings=[vector], metadatas=[meta])
    read = _engine(tmp_path).store.entries()
    assert read == _truth(tmp_path) and len(read) == (6 if damage == "unnumbered write" else 5)
    assert all(e.path.startswith(str(library)) for e in read.values())


def test_the_file_keeps_every_marker_and_any_caption(tmp_path):
    entries = {"a": Entry("a", 12, "1700000000123456789", "sig", "ff" * 32, ("一只猫", "", "nul\x00in"), ("一只猫",),
                          "rapidocr", "/p/一只猫.jpg"),
               "b": Entry("b", 0, "0", "", path="/p/b.jpg")}
    save(tmp_path / "e.npz", ("id", 3), 42, entries)
    assert load(tmp_path / "e.npz", ("id", 3)) == (42, entries)
    assert load(tmp_path / "e.npz", ("id", 4)) is None and load(tmp_path / "missing.npz", ("id", 3)) is None
    save(tmp_path / "e.npz", ("id", 3), 1, {})
    assert load(tmp_path / "e.npz", ("id", 3)) == (1, {})


def test_a_read_of_every_record_keeps_the_entries_only_where_no_file_holds_them(tmp_path, monkeypatch):
    import mmsearch.store.client as client

    library = _library(tmp_path)
    _engine(tmp_path).index([library])
    truth = _truth(tmp_path)
    made: list[str] = []
    entry_of = client.entry_of
    monkeypatch.setattr(client, "entry_of", lambda image_id, meta: made.append(image_id) or entry_of(image_id, meta))
    store = _engine(tmp_path).store  # a new process, the entries file beside the index
    assert len(list(store.all_metadata())) == 5 and made == []  # (a keyword build from every record)
    assert store.entries() == truth and made == []  # read from the file
    (tmp_path / "db" / "entries.npz").unlink()
    store = _engine(tmp_path).store
    assert len(list(store.all_metadata())) == 5 and len(made) == 5  # no file: kept from this read
    _every_record_forbidden(monkeypatch)
    assert store.entries() == truth


def _entry(rng: random.Random, image_id: str) -> Entry:
    captions = tuple(rng.choice(["a cat", "一只猫", "", "nul\x00in"]) for _ in range(rng.randrange(3)))
    return Entry(image_id, rng.randrange(10**12), str(rng.randrange(10**19)), rng.choice(["", "sig"]),
                 rng.choice(["", "ab" * 32]), captions, captions[:1], rng.choice(["", "rapidocr"]),
                 f"/p/{rng.choice(['x', '一'])}/{image_id}.jpg")


@pytest.mark.parametrize("seed", range(5))
def test_packed_entries_changed_by_copies_are_the_dict_the_same_changes_give(tmp_path, seed):
    """The packed entries (read from the file, then written over and removed from, by copies) answer as
    a dict given the same changes does: by id and by path, saved and read back, and the copies they were
    made from stay as they were."""
    rng = random.Random(seed)
    truth = {f"i{n}": _entry(rng, f"i{n}") for n in range(60)}
    save(tmp_path / "e.npz", ("id", 1), 7, truth)
    _, entries = load(tmp_path / "e.npz", ("id", 1))
    assert isinstance(entries, Entries)
    generations = [(entries, dict(truth))]
    for _ in range(4):
        entries, truth = entries.copy(), dict(truth)
        for _ in range(25):
            image_id = f"i{rng.randrange(80)}"
            if rng.random() < 0.4:
                entries.discard([image_id])
                truth.pop(image_id, None)
            else:
                entries[image_id] = truth[image_id] = _entry(rng, image_id)
        generations.append((entries, dict(truth)))
        if rng.random() < 0.5:
            entries = entries.packed()
    for kept, expected in generations:
        assert kept == expected and len(kept) == len(expected) and sorted(kept) == sorted(expected)
        assert dict(kept.items()) == expected and all(kept.get(i) == expected.get(i) for i in map("i{}".format, range(80)))
        by_path = {e.path: e for e in expected.values()}
        view = kept.by_path()
        assert view == by_path and sorted(view) == sorted(by_path) and len(view) == len(by_path)
        paths = [f"/p/{folder}/i{n}.jpg" for folder in ("x", "一") for n in range(80)]  # those gone or moved too
        assert [view.get(p) for p in paths] == [by_path.get(p) for p in paths]
        save(tmp_path / "again.npz", ("id", 1), 8, kept)
        assert load(tmp_path / "again.npz", ("id", 1)) == (8, expected)
    with pytest.raises(KeyError):
        del generations[-1][0]["absent"]
