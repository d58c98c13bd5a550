"""Schema versions and ordered migrations: an index written by the previous release (a committed fixture
built by its own code) opens, is upgraded step by step by the next writer, and searches the same."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mmsearch import Config, SearchEngine
from mmsearch.errors import StoreError
from mmsearch.store.client import Store
from mmsearch.store.collections import HNSW
from mmsearch.store.migrations import SCHEMA, STEPS

FIXTURE = Path(__file__).parent / "fixtures" / "schema1-offline.tar.gz"
# The previous release stored absolute paths; the fixture's photos were indexed at this one.
ROOT = Path("/tmp/mmsearch-fixture-schema1")


@pytest.fixture
def old_index():
    """The offline-profile index ``mmsearch index`` of commit 3b3320f wrote (placeholder vectors, schema 1
    key never read, ef_search 100), with its photos and the hits that release served."""
    shutil.rmtree(ROOT, ignore_errors=True)
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(ROOT.parent, filter="data")
    try:
        yield ROOT
    finally:
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()  # Chroma keeps one client per path: the next test reuses this path
        shutil.rmtree(ROOT, ignore_errors=True)


def _engine(root: Path) -> SearchEngine:
    return SearchEngine(config=Config.offline_profile(Config(db=str(root / "db"))))


def _vectors(store: Store) -> np.ndarray:
    return np.concatenate([vectors for _, vectors, _, _ in store.records("images")])


def test_an_index_of_the_previous_release_is_read_then_upgraded_and_searches_the_same(old_index):
    expected = json.loads((old_index / "expected.json").read_text())
    engine = _engine(old_index)
    assert engine.store.schema_version() == 0  # written before versions were read
    before = {q: [Path(h.path).relative_to(old_index).as_posix() for h in engine.search(q, k=4)] for q in expected["queries"]}
    old_vectors = _vectors(engine.store)
    assert len({v.tobytes() for v in old_vectors}) == 1  # the identical placeholders this upgrade removes

    report = engine.index([old_index / "photos"], captions=old_index / "photos" / "captions.csv")
    assert (report.added, report.updated, report.unchanged) == (0, 0, 6)  # upgraded, nothing re-encoded
    store = engine.store
    assert store.schema_version() == SCHEMA == len(STEPS)
    assert len({v.tobytes() for v in _vectors(store)}) == 6  # one real layout vector per image
    images = store.client.get_collection("mmsearch_images")
    assert images.configuration["hnsw"]["ef_search"] == HNSW["ef_search"]  # step 1 ran too
    assert images.configuration["hnsw"]["sync_threshold"] == HNSW["sync_threshold"]  # and step 4
    hashes = {m["name"]: m.get("phash") for _, m in store.all_metadata()}
    assert all(h and len(h) == 16 for h in hashes.values())  # and step 5
    for query, old in expected["queries"].items():
        hits = engine.search(query, k=4)
        assert [Path(h.path).relative_to(old_index).as_posix() for h in hits][:1] == [old[0][0]], query
        assert [h.caption for h in hits if h.caption][:2] == [c for _, c in old if c][:2], query
        assert [Path(h.path).relative_to(old_index).as_posix() for h in hits] == before[query]  # reader saw the same
    assert engine.stats()["schema"] == SCHEMA


def test_an_unreadable_file_is_left_for_the_next_index_run_to_redo(old_index):
    (old_index / "photos" / "pasta.jpg").unlink()
    engine = _engine(old_index)
    engine.store.upgrade()
    entries = engine.store.entries()
    assert entries[str(old_index / "photos" / "pasta.jpg")].mtime_ns == "0"
    assert entries[str(old_index / "photos" / "black_cat.jpg")].mtime_ns != "0"


def test_a_newer_schema_is_refused_with_both_versions(tmp_path, make_engine, photos):
    engine = make_engine()
    engine.index([photos])
    engine.store.set_schema_version(SCHEMA + 1)
    with pytest.raises(StoreError, match=f"schema {SCHEMA + 1}.*schema {SCHEMA}"):
        make_engine().stats()


def test_a_new_index_is_created_at_the_current_schema_without_placeholders(make_engine, photos, tmp_path):
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "offline"))))
    engine.index([photos])
    assert engine.store.schema_version() == SCHEMA
    vectors = _vectors(engine.store)
    assert len({v.tobytes() for v in vectors}) == len(vectors) == 6
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
