"""A new process's first search does not wait for each thing it needs in turn: ``SearchEngine.warm_up``
loads the vector indexes and the text model in threads while the keyword index loads."""

from __future__ import annotations

import threading

from PIL import Image

from mmsearch import Config, SearchEngine
from mmsearch import session as session_module


def test_the_text_model_loads_while_the_keyword_index_does(tmp_path, monkeypatch):
    library = tmp_path / "library"
    library.mkdir()
    for n, colour in enumerate([(200, 20, 20), (20, 200, 20)]):
        Image.new("RGB", (64, 48), colour).save(library / f"p{n}.jpg")
    (library / "p1.jpg.txt").write_text("a green field\n")
    config = Config.offline_profile(Config(db=str(tmp_path / "db")))
    SearchEngine(config=config).index([library])

    loading, keywords_read, waited = threading.Event(), threading.Event(), []
    load = session_module.load_text_encoder

    def held_until_the_keywords_are_read(config):
        loading.set()
        waited.append(keywords_read.wait(60))  # False if the keyword index could not load meanwhile
        return load(config)

    monkeypatch.setattr(session_module, "load_text_encoder", held_until_the_keywords_are_read)
    fresh = SearchEngine(config=config)  # as a new process opens the index
    fresh.warm_up()
    assert loading.wait(60)
    assert len(fresh.session.keyword_index()) == 2  # while the text model is being loaded
    keywords_read.set()
    hits = fresh.search("a green field", k=1)
    assert waited == [True] and hits[0].path.endswith("p1.jpg")


def test_the_keyword_file_is_read_while_the_vector_indexes_load(tmp_path, monkeypatch):
    """Chroma answers a count only once it has loaded the images' vector index (seconds at a million photos):
    a new process reads keywords.npz meanwhile, and asks the store for nothing that waits before it has."""
    from mmsearch.search.keywords import KeywordIndex
    from mmsearch.store.client import Store

    library = tmp_path / "library"
    library.mkdir()
    Image.new("RGB", (64, 48), (20, 200, 20)).save(library / "field.jpg")
    (library / "field.jpg.txt").write_text("a green field\n")
    config = Config.offline_profile(Config(db=str(tmp_path / "db")))
    SearchEngine(config=config).index([library])  # leaves keywords.npz

    read, loaded, waited = threading.Event(), threading.Event(), []
    read_file, load_indexes, count = KeywordIndex.load, Store._load_indexes, Store.count

    def reading(cls, *args):
        read.set()
        return read_file(*args)

    def loading(self, names):
        waited.append(("load waits for the file", read.wait(60)))
        load_indexes(self, names)
        loaded.set()

    monkeypatch.setattr(KeywordIndex, "load", classmethod(reading))
    monkeypatch.setattr(Store, "_load_indexes", loading)
    monkeypatch.setattr(Store, "count", lambda self: waited.append(("count waits for the load", loaded.wait(60)))
                        or count(self))
    fresh = SearchEngine(config=config)  # as a new process opens the index
    fresh.warm_up()
    hits = fresh.search("a green field", k=1)
    assert hits[0].path.endswith("field.jpg") and read.is_set() and loaded.is_set()
    assert waited and all(ok for _, ok in waited), waited
