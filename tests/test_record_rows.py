"""The records beside the keyword index (``mmsearch.search.record_rows``): each image's stored metadata, read a
few rows at a time by a first search while Chroma loads the images' vector index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmsearch.search import record_rows, vector_rows
from mmsearch.search.keywords import KeywordIndex
from mmsearch.store.collections import CAPTION_VECTORS, VECTOR

KEY = ["records"]


def _meta(n: int) -> dict:
    return {"path": f"/photos/{n:03d}/IMG_{n}.jpg", "size": 1000 + n, "mtime_ns": str(10**18 + n), "date": 1.6e9 + n,
            "lat": -1.2921 + n / 7, "camera": "Pixel 7" if n % 2 else "", "captions": [f"photo {n}", "ünïcödé 写真"],
            "sha256": f"{n:064x}", "lexical": ["101:0.5 2040:0.25"], VECTOR: np.full(4, n, np.float32),
            CAPTION_VECTORS: np.ones((2, 4), np.float32), "weird": "a\ud800b\x00"}


def _shown(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in record_rows.LEFT_OUT}


def _base_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("keywords.records.*.rows"))


def test_records_survive_saving_loading_changes_and_new_bases(tmp_path, monkeypatch):
    """Each live image's record as it was given (less the vectors and lexical weights), through a save with its
    rows in the keyword file, a base file written, changes applied on top, and a new base replacing the old."""
    metas = {f"img{n}": _meta(n) for n in range(40)}
    index = KeywordIndex.from_metadata(list(metas.items()))
    ids = list(metas)
    assert index.records_of(ids) == {i: _shown(m) for i, m in metas.items()}
    path = tmp_path / "keywords.npz"
    index.save(path, KEY)
    assert not _base_files(tmp_path)  # 40 rows: kept in the keyword file
    loaded = KeywordIndex.load(path, KEY)
    assert loaded is not None and loaded.records_of(ids) == index.records_of(ids)

    monkeypatch.setattr(vector_rows, "TAIL_MAX", 0)
    monkeypatch.setattr(record_rows, "TAIL_MAX", 0)
    loaded.save(path, KEY)
    first = _base_files(tmp_path)
    assert len(first) == 1 and not loaded.records.tail
    changed = {**_meta(3), "captions": ["changed"]}
    new = loaded.apply([("img3", changed), ("img99", _meta(99))], removed=["img5"])
    assert new.records_of(["img3", "img5", "img99", "img7", "unknown"]) == {
        "img3": _shown(changed), "img99": _shown(_meta(99)), "img7": _shown(metas["img7"])}
    assert loaded.records_of(["img3"]) == {"img3": _shown(metas["img3"])}  # the index it was made from is as it was
    new.save(path, KEY)
    second = _base_files(tmp_path)
    assert len(second) == 1 and second != first  # a new base, the old one deleted
    again = KeywordIndex.load(path, KEY)
    live = [i for i in ids if i != "img5"] + ["img99"]
    assert again is not None and again.records_of(live) == new.records_of(live) and len(again.records_of(live)) == 40


def test_a_build_spills_its_records_into_a_base_file_and_a_record_json_cannot_hold_is_left_to_the_store(tmp_path):
    """A build from every record writes the records into a base file as they come (none held in memory); a
    record with a value JSON cannot hold is not kept (``records_of`` leaves it out: the store is read for it)."""
    metas = [(f"img{n}", _meta(n)) for n in range(30)] + [("odd", {**_meta(30), "odd": np.float32(1.5)})]
    path = tmp_path / "keywords.npz"
    index = KeywordIndex.from_metadata(metas, spill_to=path)
    assert len(_base_files(tmp_path)) == 1 and not index.records.tail
    assert set(index.records_of([i for i, _ in metas])) == {i for i, _ in metas} - {"odd"}
    assert index.records_of(["img0", "img29"]) == {"img0": _shown(_meta(0)), "img29": _shown(_meta(29))}
    index.save(path, KEY)
    loaded = KeywordIndex.load(path, KEY)
    assert loaded is not None and loaded.records_of(["img12"]) == {"img12": _shown(_meta(12))}


def test_a_keyword_file_whose_records_base_is_gone_or_cut_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setattr(record_rows, "TAIL_MAX", 0)
    path = tmp_path / "keywords.npz"
    KeywordIndex.from_metadata([(f"img{n}", _meta(n)) for n in range(10)]).save(path, KEY)
    base = _base_files(tmp_path)[0]
    data = base.read_bytes()
    base.write_bytes(data[:-1])
    assert KeywordIndex.load(path, KEY) is None
    base.unlink()
    assert KeywordIndex.load(path, KEY) is None
    base.write_bytes(data)
    assert KeywordIndex.load(path, KEY) is not None
    with np.load(path) as saved:
        arrays = dict(saved)
    np.savez(path, **{**arrays, "records_base": np.asarray([""])})  # row ends of a base it does not name
    assert KeywordIndex.load(path, KEY) is None


def test_base_rows_are_read_in_any_order_repeated_and_in_runs(tmp_path):
    rows = [f'{{"n":{n}}}'.encode() * (n % 5 + 1) for n in range(50)]
    path = tmp_path / "base.rows"
    path.write_bytes(b"".join(rows))
    base = record_rows.RecordBase(path, np.cumsum([len(r) for r in rows], dtype=np.int64))
    wanted = [49, 0, 1, 2, 17, 2, 30, 31, 48]
    assert base.rows(wanted) == [rows[n] for n in wanted]
    assert base.rows([]) == []
