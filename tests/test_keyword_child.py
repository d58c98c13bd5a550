"""A large library's keyword index, when it must be built from every record, is built in a child process
(``mmsearch.search.keyword_child``): the process that asked reads the file the child wrote and never reads
every record itself, and a child that fails leaves the build to that process."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from mmsearch import Config, SearchEngine
from mmsearch.search import keyword_child
from mmsearch.search.keywords import KeywordIndex
from mmsearch.store.client import Store


def _photo(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path)


def _engine(tmp_path: Path) -> SearchEngine:
    return SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))


@pytest.fixture
def library_without_files(tmp_path: Path) -> Path:
    """An indexed library whose keyword file and entries file are gone (as after an upgrade)."""
    library = tmp_path / "library"
    for n in range(5):
        _photo(library / "trip" / f"beach{n}.jpg", (40 * n, 90, 10))
    (library / "trip" / "beach1.jpg.txt").write_text("a red kite over the dunes\n")
    engine = _engine(tmp_path)
    engine.index([library])
    engine.session.keywords_path().unlink()
    (tmp_path / "db" / "entries.npz").unlink()
    return library


def test_a_large_librarys_build_runs_in_a_child_that_writes_both_files(tmp_path, monkeypatch, caplog,
                                                                       library_without_files):
    monkeypatch.setattr(keyword_child, "APART_FROM", 5)
    engine = _engine(tmp_path)  # a new process
    monkeypatch.setattr(Store, "pages", lambda self: pytest.fail("this process read every record"))
    with caplog.at_level(logging.INFO, logger="mmsearch.search.keyword_child"):
        index = engine.session.keyword_index()
    assert "keyword index of 5 images built from every record in a child process" in caplog.text
    monkeypatch.undo()
    built_here = KeywordIndex.from_metadata(Store(str(tmp_path / "db")).all_metadata())
    assert index.live_ids() == built_here.live_ids() and len(index) == 5
    assert index.search("kite", 5) == built_here.search("kite", 5) and index.search("kite", 5)
    assert index.folder_counts == built_here.folder_counts
    assert (tmp_path / "db" / "entries.npz").exists()  # the child kept the entries it read
    assert engine.store.entries() == Store(str(tmp_path / "db")).entries()
    # and the file is the next process's start
    assert len(KeywordIndex.load(engine.session.keywords_path(), (engine.store.identity(),
                                                                  engine.store.schema_version()))) == 5


def test_below_the_size_the_build_stays_in_the_process(tmp_path, monkeypatch, library_without_files):
    monkeypatch.setattr(keyword_child, "APART_FROM", 6)
    monkeypatch.setattr(keyword_child, "build_apart", lambda job: pytest.fail("a child was started"))
    assert len(_engine(tmp_path).session.keyword_index()) == 5


def test_a_child_that_fails_leaves_the_build_to_the_process(tmp_path, monkeypatch, caplog, library_without_files):
    monkeypatch.setattr(keyword_child, "APART_FROM", 1)
    engine = _engine(tmp_path)
    monkeypatch.setattr(keyword_child.sys, "executable", str(tmp_path / "no-python"))
    with caplog.at_level(logging.WARNING, logger="mmsearch.search.keyword_child"):
        index = engine.session.keyword_index()
    assert "could not start a process to build the keyword index" in caplog.text
    assert len(index) == 5 and index.search("kite", 5)


def test_a_child_that_exits_with_an_error_is_reported_with_its_last_line(tmp_path, monkeypatch, caplog,
                                                                          library_without_files):
    monkeypatch.setattr(keyword_child, "APART_FROM", 1)
    engine = _engine(tmp_path)
    real_job = keyword_child.Job

    def into_a_missing_folder(*fields):
        job = real_job(*fields)
        return job._replace(keywords=str(tmp_path / "gone" / "deeper" / "keywords.npz"))

    monkeypatch.setattr(keyword_child, "Job", into_a_missing_folder)
    with caplog.at_level(logging.WARNING, logger="mmsearch.search.keyword_child"):
        index = engine.session.keyword_index()
    assert "the keyword index's build in a child process failed (" in caplog.text
    assert "No such file or directory" in caplog.text
    assert len(index) == 5
