"""The papercuts of a first day: a mistyped folder, a re-run that repeats what it said, warnings without a
name, models pinned by a leftover variable, and files left behind by dropped generations."""

from __future__ import annotations

import struct
from pathlib import Path

from helpers import index_photos, make_photos, save_image

from mmsearch import Config, SearchEngine
from mmsearch.cli import main


def _offline_index(tmp_path: Path) -> tuple[Path, Path]:
    photos = make_photos(tmp_path / "photos")
    (photos / "beach" / "2019").mkdir(parents=True)
    save_image(photos / "beach" / "2019" / "sand.jpg", (220, 200, 150))
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    assert index_photos(engine, photos).added == 7
    return tmp_path / "db", photos


def test_a_folder_filter_that_matches_no_indexed_folder_names_the_nearest(tmp_path, capsys, monkeypatch):
    db, photos = _offline_index(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["search", "sand", "--db", str(db), "--folder", "beech"]) == 0
    out = capsys.readouterr().out
    assert f"no indexed folder matches 'beech'; nearest: {photos / 'beach'}" in out
    # An indexed folder with nothing relevant gets the usual answer, not the hint.
    assert main(["search", "a rocket launch", "--db", str(db), "--folder", str(photos / "beach" / "2019")]) == 0
    out = capsys.readouterr().out
    assert "no indexed folder" not in out and out.strip()


def test_a_re_run_lists_only_new_skips_and_counts_the_others(tiny_env, tmp_path, capsys):
    photos = make_photos(tmp_path / "photos")
    (photos / "broken.png").write_bytes(b"garbage")
    assert main(["index", str(photos)]) == 0
    first = capsys.readouterr().err
    assert f"skipped {photos / 'broken.png'}: not an image" in first
    assert main(["index", str(photos)]) == 0
    again = capsys.readouterr().err
    assert "broken.png" not in again and f"1 skipped as before (see {tiny_env / 'skipped.tsv'})" in again
    (photos / "also-broken.jpg").write_bytes(b"more garbage")
    assert main(["index", str(photos)]) == 0
    third = capsys.readouterr().err
    assert f"skipped {photos / 'also-broken.jpg'}: not an image" in third and "broken.png:" not in third
    assert "1 new file skipped" in third and "1 skipped as before" in third
    assert len((tiny_env / "skipped.tsv").read_text().splitlines()) == 2


def test_a_query_image_with_corrupt_exif_is_named_in_its_warning(tiny_env, tmp_path, capsys):
    from PIL import Image

    photos = make_photos(tmp_path / "photos")
    assert main(["index", str(photos)]) == 0
    ifd = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x010E, 2, 100, 99999)
    query = tmp_path / "query.jpg"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(query, "JPEG", exif=b"Exif\x00\x00" + ifd + bytes(4))
    capsys.readouterr()
    assert main(["search", "--image", str(query), "-k", "1"]) == 0
    err = capsys.readouterr().err
    assert f"mmsearch: warning: {query}: UserWarning: Truncated File Read" in err


def test_a_leftover_model_variable_is_named_when_it_does_not_fit_the_index(tmp_path, capsys, monkeypatch):
    db, _ = _offline_index(tmp_path)
    monkeypatch.setenv("MMSEARCH_TEXT_MODEL", "clip")
    assert main(["search", "sand", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "this environment sets MMSEARCH_TEXT_MODEL=clip: unset it to use the index's models" in err


def test_an_engine_given_the_index_own_models_follows_a_switch_and_dropped_files_go(tmp_path, clip512):
    db, _ = _offline_index(tmp_path)
    pinned = SearchEngine(config=Config.offline_profile(Config(db=str(db))))  # the same models, given again
    assert pinned.follows and pinned.search("sand", k=1)
    given = SearchEngine(db, clip_model=clip512[0], clip_pretrained=clip512[1], text_model="clip")
    assert not given.follows
    report = given.reindex()
    assert report.switched and pinned.follow_switch() and pinned.stats()["dim"] == 512
    assert pinned.search("sand", k=1)  # its keyword index is the new generation's own file
    kept = db / f"keywords-{report.generation}.npz"
    assert kept.exists() and (db / "keywords.npz").exists()
    assert main(["reindex", "--db", str(db), "--rollback"]) == 0
    assert main(["reindex", "--db", str(db), "--drop-previous"]) == 0
    assert not kept.exists() and (db / "keywords.npz").exists()
