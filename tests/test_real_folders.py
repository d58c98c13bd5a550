"""What a first day on a real folder showed: pinned file names, the signals the CLI shows, a demo away
from its samples, no-op runs that say so, export and import that keep the index's schema and models."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import index_photos, save_image

from mmsearch import Config, SearchEngine
from mmsearch.cli import main
from mmsearch.present import format_hits


@pytest.fixture
def icons(tmp_path):
    """Files that share a name in several folders, as icon themes do."""
    root = tmp_path / "icons"
    for n, size in enumerate(("16x16", "32x32", "48x48")):
        save_image(root / size / "face-monkey.png", (40 * n, 90, 200))
    for n in range(12):
        save_image(root / "misc" / f"face-{n}.png", (15 * n, 20, 60))
    return root


def test_every_file_of_the_queried_name_is_pinned_however_bm25_ranks_it(make_engine, tmp_path):
    root = tmp_path / "theme"
    for size in ("16x16", "24x24", "32x32", "48x48"):  # the exact name, in long folder paths
        save_image(root / size / "emotes" / "deep" / "er" / "face-monkey-symbolic.symbolic.png", (10, 20, 30))
    for size in ("16x16", "48x48"):  # a shorter document that BM25 prefers for the same words
        save_image(root / size / "face-monkey.png", (200, 20, 30))
    engine = make_engine()
    engine.index([root])
    hits = engine.search("face-monkey-symbolic.symbolic.png", k=3)
    assert [Path(h.path).name for h in hits] == ["face-monkey-symbolic.symbolic.png"] * 3
    assert [h.score for h in hits] == [1.0, 1.0, 1.0]
    hits = engine.search("FACE-MONKEY-SYMBOLIC.symbolic", k=10, folder=root / "48x48")
    assert [Path(h.path).name for h in hits][:1] == ["face-monkey-symbolic.symbolic.png"]  # filters still apply
    assert all("/48x48/" in h.path for h in hits)


def test_a_pinned_file_name_scores_the_top_of_the_scale_and_survives_the_threshold(make_engine, icons):
    engine = make_engine()
    engine.index([icons])
    hits = engine.search("face-monkey.png", k=5)
    assert [Path(h.path).name for h in hits[:3]] == ["face-monkey.png"] * 3
    scores = [h.score for h in hits]
    assert scores[:3] == [1.0, 1.0, 1.0] and scores == sorted(scores, reverse=True)  # the order agrees with the scores
    kept = engine.search("face-monkey", k=5, min_score=0.95)
    assert len(kept) >= 3 and all(Path(h.path).name == "face-monkey.png" for h in kept[:3])


def test_the_cli_table_shows_every_signal_that_ranked(tmp_path, icons, capsys):
    db = str(tmp_path / "offline")
    assert main(["index", str(icons), "--db", db, "--offline"]) == 0
    capsys.readouterr()
    assert main(["search", "monkey", "--db", db, "-k", "3"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "keyword" in header and "image" not in header  # the offline index has no image signal to show
    row = out.splitlines()[1]
    assert "face-monkey.png" in row and float(row.split()[2]) > 0


def test_format_hits_marks_a_missing_signal(make_engine, photos):
    engine = make_engine()
    index_photos(engine, photos)
    table = format_hits(engine.search("a black cat", k=6))
    assert table.splitlines()[0].split()[:6] == ["#", "relev.", "score", "image", "caption", "keyword"]
    uncaptioned = next(line for line in table.splitlines() if "uncaptioned.jpg" in line)
    assert uncaptioned.split()[4] == "-"  # no caption signal: shown as such, not as a number


def test_a_second_run_and_a_second_import_say_they_changed_nothing(tmp_path, photos, capsys):
    db, copy, export = str(tmp_path / "db"), str(tmp_path / "copy"), tmp_path / "export"
    assert main(["index", str(photos), "--db", db, "--offline"]) == 0
    capsys.readouterr()
    assert main(["index", str(photos), "--db", db]) == 0
    captured = capsys.readouterr()
    assert "indexing" not in captured.err  # no empty progress bar for a run with nothing to encode
    assert "added 0, updated 0, unchanged 6" in captured.out
    assert main(["export", str(export), "--db", db]) == 0
    assert main(["import", str(export), "--db", copy]) == 0
    assert "imported 6 images and 1 captions" in capsys.readouterr().out
    assert main(["import", str(export), "--db", copy]) == 0
    assert capsys.readouterr().out.startswith("nothing to import: all 6 images and 1 captions")
    imported = SearchEngine(copy)  # no model options: the export carried the index's models
    assert imported.signature["image_model"] == "none" and imported.search("a black cat", k=1)


def test_an_exported_old_index_is_upgraded_on_import(tmp_path):
    import shutil
    import tarfile

    from chromadb.api.client import SharedSystemClient

    from mmsearch.store.migrations import SCHEMA

    fixture = Path(__file__).parent / "fixtures" / "schema1-offline.tar.gz"
    root = Path("/tmp/mmsearch-fixture-schema1")
    shutil.rmtree(root, ignore_errors=True)
    with tarfile.open(fixture) as archive:
        archive.extractall(root.parent, filter="data")
    try:
        assert main(["export", str(tmp_path / "export"), "--db", str(root / "db")]) == 0
        assert main(["import", str(tmp_path / "export"), "--db", str(tmp_path / "new")]) == 0
        engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "new"))))
        assert engine.store.schema_version() == SCHEMA
        vectors = [v.tobytes() for _, page, _, _ in engine.store.records("images") for v in page]
        assert len(set(vectors)) == 6  # layout vectors, not the exported placeholders
    finally:
        SharedSystemClient.clear_system_cache()
        shutil.rmtree(root, ignore_errors=True)


def test_demo_away_from_its_samples_and_a_missing_path_are_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--no-serve", "--offline", "--db", str(tmp_path / "db")]) == 1
    assert "name a folder: mmsearch demo FOLDER" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "nope"), "--db", str(tmp_path / "db"), "--offline"]) == 1
    assert capsys.readouterr().err.strip().endswith("nope does not exist")
