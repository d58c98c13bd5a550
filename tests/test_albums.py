"""Smart albums: saved searches that fill themselves as photos arrive, keep marks, survive reindex and
export/import, and export as links, safely."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import scene_picture
from test_watch import watching

from mmsearch import Config, SearchEngine
from mmsearch.cli import main
from mmsearch.errors import ConfigError, QueryError


def _photo(root: Path, name: str, caption: str, seed: int) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    scene_picture(seed, (96, 72)).save(path)
    path.with_name(path.name + ".txt").write_text(caption)
    return path


@pytest.fixture
def shelf(tmp_path: Path) -> tuple[SearchEngine, Path]:
    root = tmp_path / "library"
    _photo(root, "tabby.jpg", "a tabby cat asleep on a sofa", 1)
    _photo(root, "bike.jpg", "a red bicycle leaning on a wall", 2)
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([root])
    return engine, root


def _names(photos) -> list[str]:
    return [Path(p.path).name for p in photos]


def test_an_album_fills_itself_with_the_matching_photos_the_watcher_brings(shelf, tmp_path):
    engine, root = shelf
    album = engine.add_album("Cats", "a cat")
    assert len(album.photos) == 1
    _, photos = engine.album("Cats")
    assert _names(photos) == ["tabby.jpg"] and photos[0].new
    assert not engine.album("Cats")[1][0].new  # seen now
    with watching(engine, [root]) as (runs, _):
        incoming = tmp_path / "incoming"
        _photo(incoming, "kitten.jpg", "a small grey cat playing with wool", 3)
        _photo(incoming, "soup.jpg", "a bowl of tomato soup", 4)
        for name in ("kitten.jpg", "kitten.jpg.txt", "soup.jpg", "soup.jpg.txt"):
            shutil.move(incoming / name, root / name)
        runs.wait_for(lambda: engine.store.count() == 4, "the new photos")
    listed = {a.name: a for a in engine.albums}["Cats"]
    assert len(listed.photos) == 2 and len(listed.new) == 1  # counted after the run, before anyone looked
    album, photos = engine.album("Cats")
    assert sorted(_names(photos)) == ["kitten.jpg", "tabby.jpg"]
    assert [p.new for p in photos if Path(p.path).name == "kitten.jpg"] == [True]
    engine.feedback("a cat", str(root / "kitten.jpg"), False)  # a lasting mark keeps it out
    assert _names(engine.album("Cats")[1]) == ["tabby.jpg"]
    with pytest.raises(QueryError, match="there is an album called 'cats' already"):
        engine.add_album("cats", "felines")
    with pytest.raises(QueryError, match="no album called 'Dogs'"):
        engine.album("Dogs")


def test_albums_survive_a_reindex_and_an_export_and_import(shelf, tmp_path, clip512):
    from mmsearch.store.client import Store
    from mmsearch.transfer import export_index, import_index

    engine, root = shelf
    engine.add_album("Cats", "a cat", min_relevance=0.0)
    manifest = export_index(engine.store, tmp_path / "export")
    assert manifest["albums"] == 1
    other = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db2"))))
    import_index(Store(tmp_path / "db2"), tmp_path / "export")
    assert [a.name for a in other.albums] == ["Cats"]

    report = SearchEngine(engine.config.db, clip_model=clip512[0], clip_pretrained=clip512[1], text_model="clip").reindex()
    assert report.switched
    after = SearchEngine(engine.config.db)
    album, photos = after.album("Cats")
    assert album.query == "a cat" and photos  # its query answered by the new models


def test_album_commands_and_a_safe_export(shelf, tmp_path, capsys):
    engine, root = shelf
    db = str(engine.config.db)
    assert main(["album", "add", "Cats", "a cat", "--db", db]) == 0
    assert "album 'Cats': 1 photos now" in capsys.readouterr().out
    assert main(["album", "list", "--db", db]) == 0
    assert "Cats: 1 photos, 1 new" in capsys.readouterr().out
    assert main(["album", "show", "Cats", "--db", db, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["album"]["name"] == "Cats" and [Path(p["path"]).name for p in shown["photos"]] == ["tabby.jpg"]
    assert set(shown["photos"][0]) == {"path", "relevance", "new"} and shown["photos"][0]["new"] is True
    target = tmp_path / "out"
    (target).mkdir()
    (target / "tabby.jpg").write_text("someone else's file")  # never overwritten
    assert main(["album", "export", "Cats", str(target), "--db", db]) == 0
    assert main(["album", "export", "Cats", str(target), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "1 photos linked" in out and "0 photos linked into" in out and "1 there already" in out
    assert (target / "tabby.jpg").read_text() == "someone else's file"
    assert (target / "tabby (2).jpg").resolve() == (root / "tabby.jpg").resolve()
    with pytest.raises(ConfigError, match="inside an indexed folder"):
        engine.export_album("Cats", root / "albums")
    assert main(["album", "remove", "Cats", "--db", db]) == 0
    assert engine.albums == []
