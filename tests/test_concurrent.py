"""Searching while an index run writes: within one process, and across processes through a Chroma server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from helpers import folder_of_images, index_photos

from mmsearch import SearchEngine

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.subprocess]  # make test runs them


def _search_while(alive: callable, engine: SearchEngine) -> list[int]:
    """Search in a loop while ``alive()``; every answer must come back without error."""
    sizes = []
    while alive():
        sizes.append(len(engine.search("a black cat", k=5)))
        time.sleep(0.02)
    return sizes


def test_library_searches_answer_during_an_index_run_in_the_same_process(make_engine, photos, tmp_path):
    engine = make_engine(batch_size=4)
    index_photos(engine, photos)
    errors: list[BaseException] = []

    def index() -> None:
        try:
            engine.index([photos, folder_of_images(tmp_path / "more", 240)], captions=photos / "captions.csv")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=index)
    worker.start()
    sizes = _search_while(worker.is_alive, engine)
    worker.join()
    assert errors == []
    assert len(sizes) >= 3 and all(size == 5 for size in sizes)  # searches were answered during the run
    assert engine.stats()["images"] == 246


def test_another_process_indexes_through_a_chroma_server_while_this_one_searches(
        chroma_server, tiny_config, tiny_encoders, tiny_clip, minilm, photos, tmp_path):
    engine = SearchEngine(config=tiny_config, encoders=tiny_encoders, chroma_url=chroma_server.url)
    assert index_photos(engine, photos).added == 6
    env = {**os.environ, "MMSEARCH_CLIP_MODEL": tiny_clip[0], "MMSEARCH_CLIP_PRETRAINED": tiny_clip[1],
           "MMSEARCH_TEXT_MODEL": minilm, "MMSEARCH_BATCH_SIZE": "4", "MMSEARCH_DB": str(tmp_path / "unused")}
    writer = subprocess.Popen([sys.executable, "-m", "mmsearch", "index", str(folder_of_images(tmp_path / "more", 240)),
                               "--chroma-url", chroma_server.url, "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sizes = _search_while(lambda: writer.poll() is None, engine)
    out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    assert '"added": 240' in out
    assert len(sizes) >= 3 and all(size == 5 for size in sizes)
    assert engine.stats()["images"] == 246
    assert not (tmp_path / "unused" / "chroma.sqlite3").exists()  # nothing went to an embedded database
