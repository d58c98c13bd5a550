"""Photos decoded in worker processes (``MMSEARCH_DECODE=process``, mmsearch.ingest.decoders) keep every
guarantee of the decode threads: the same records, bad files skipped with their reason, warnings recorded
with their file. Kill -9 and Ctrl-C: tests/test_resume.py runs them with processes too."""

from __future__ import annotations

import logging
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import save_image

from mmsearch.ingest.decoders import use_processes
from mmsearch.store.client import Store


def _library(root: Path) -> Path:
    from PIL import Image

    for n in range(12):
        save_image(root / f"d{n % 3}" / f"photo{n:02d}.jpg", (20 * n, 255 - 20 * n, 90), size=(300 + 37 * n, 200))
    save_image(root / "icons" / "dot.png", (200, 10, 10), size=(16, 16))
    rotated = Image.new("RGB", (120, 60), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: stored landscape, shown portrait
    rotated.save(root / "rotated.jpg", exif=exif)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    # EXIF whose ImageDescription points 99,999 bytes into a file of a few hundred: Pillow warns
    ifd = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x010E, 2, 100, 99999)
    Image.new("RGB", (16, 16), (1, 2, 3)).save(root / "corrupt-exif.jpg", "JPEG", exif=b"Exif\x00\x00" + ifd + bytes(4))
    return root


def _records(db: Path) -> dict[str, tuple]:
    store = Store(db)
    vectors = {}
    for _, rows, metas, _ in store.records("images"):
        for row, meta in zip(rows, metas):
            vectors[meta["path"]] = (meta["sha256"], meta["phash"], meta["look"], meta["width"], meta["height"], row)
    return vectors


def test_processes_give_the_records_the_threads_give(make_engine, tmp_path, caplog):
    library = _library(tmp_path / "library")
    reports = {}
    for mode in ("thread", "process"):
        with caplog.at_level(logging.INFO, logger="mmsearch.ingest.indexer"):
            caplog.clear()
            reports[mode] = make_engine(tmp_path / mode, decode=mode).index([library])
        used = any("worker processes" in r.getMessage() for r in caplog.records)
        assert used == (mode == "process")  # the processes really decoded them
    threads, processes = reports["thread"], reports["process"]
    assert processes.added == threads.added == 15
    assert processes.failed == threads.failed and [Path(p).name for p, _ in processes.failed] == ["broken.jpg"]
    assert processes.warnings == threads.warnings  # recorded with their file, from the processes too
    assert [Path(p).name for p, _ in processes.warnings] == ["corrupt-exif.jpg"]
    a, b = _records(tmp_path / "thread"), _records(tmp_path / "process")
    assert sorted(a) == sorted(b)
    for path in a:
        assert a[path][:5] == b[path][:5], path  # hashes, look, size (the EXIF rotation applied alike)
        np.testing.assert_array_equal(a[path][5], b[path][5])  # the same model input, so the same vector
    assert a[str(library / "rotated.jpg")][3:5] == (60, 120)


def test_a_run_with_renamed_files_decodes_in_threads(make_engine, tmp_path, caplog):
    library = _library(tmp_path / "library")
    engine = make_engine(decode="process")
    with caplog.at_level(logging.INFO, logger="mmsearch.ingest.indexer"):
        engine.index([library])
    assert any("worker processes" in r.getMessage() for r in caplog.records)  # the first run used them
    (library / "d0").rename(library / "moved")  # a rename is claimed by its hash before anything is decoded
    with caplog.at_level(logging.INFO, logger="mmsearch.ingest.indexer"):
        caplog.clear()  # the first run's records (the first run did decode in processes)
        report = engine.index([library])
    assert report.moved == 4 and report.added == 0
    assert not any("worker processes" in r.getMessage() for r in caplog.records)


def test_processes_only_when_asked_for_and_only_with_a_transform_that_travels(monkeypatch):
    from mmsearch import Config
    from mmsearch.errors import ConfigError

    monkeypatch.delenv("MMSEARCH_DECODE", raising=False)
    assert Config().decode == "auto" and not use_processes("auto", 10**6, portable=True)  # threads, for now
    assert not use_processes("thread", 10**6, portable=True)
    assert use_processes("process", 1, portable=True) and not use_processes("process", 0, portable=True)
    assert not use_processes("process", 10**6, portable=False)  # a transform only torchvision runs stays in threads
    monkeypatch.setenv("MMSEARCH_DECODE", "process")
    assert Config.from_env().decode == "process"
    monkeypatch.setenv("MMSEARCH_DECODE", "processes")
    with pytest.raises(ConfigError, match="decode must be one of auto, thread, process"):
        Config.from_env()


def test_the_models_preprocessing_travels_to_a_process_unchanged(tiny_encoders):
    from PIL import Image

    from mmsearch.ingest.indexer import portable_input

    portable, prepare = portable_input(tiny_encoders)
    assert portable and prepare is not None
    image = Image.effect_mandelbrot((333, 217), (-2, -1.5, 1, 1.5), 100).convert("RGB")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(prepare))(image), tiny_encoders.image.prepare(image))


def test_a_file_gone_before_its_process_reads_it_is_a_reason_not_a_stop(tmp_path):
    from mmsearch.ingest.decoders import ProcessDecoder

    pool = ProcessDecoder(1)
    try:
        assert pool.decode(str(tmp_path / "gone.jpg"), 224, None) == "cannot read: No such file or directory"
        save_image(tmp_path / "ok.png", (1, 2, 3))
        decoded = pool.decode(str(tmp_path / "ok.png"), 64, None)
        assert not isinstance(decoded, str) and decoded.image is not None and decoded.pixels is None
    finally:
        pool.close()


def test_a_decode_process_that_dies_is_replaced_and_the_file_decoded_again(tmp_path):
    import multiprocessing
    import os
    import signal

    from mmsearch.ingest.decoders import ProcessDecoder

    save_image(tmp_path / "ok.png", (1, 2, 3))
    pool = ProcessDecoder(1)
    try:
        assert not isinstance(pool.decode(str(tmp_path / "ok.png"), 64, None), str)
        workers = multiprocessing.active_children()
        assert workers
        for worker in workers:  # as a decoder's crash would end it
            os.kill(worker.pid, signal.SIGKILL)
            worker.join()
        again = pool.decode(str(tmp_path / "ok.png"), 64, None)
        assert not isinstance(again, str), again  # a new process decoded it
        assert not isinstance(pool.decode(str(tmp_path / "ok.png"), 64, None), str)  # and the pool works again
    finally:
        pool.close()
