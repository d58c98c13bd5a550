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
