"""Searching while an index run writes: within one process, and across processes through a Chroma server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import save_image
from test_web import free_port

from mmsearch import SearchEngine


def _folder(root: Path, n: int) -> Path:
    for i in range(n):
        save_image(root / f"img{i:04d}.png", ((37 * i) % 256, (11 * i) % 256, 90), size=(40, 30))
    return root


def _search_while(alive: callable, engine: SearchEngine) -> list[int]:
    """Search in a loop while ``alive()``; every answer must come back without error."""
    sizes = []
    while alive():
        sizes.append(len(engine.search("a black cat", k=5)))
        time.sleep(0.02)
    return sizes


def test_library_searches_answer_during_an_index_run_in_the_same_process(make_engine, photos, tmp_path):
    engine = make_engine(batch_size=4)
    engine.index([photos], captions=photos / "captions.csv")
    errors: list[BaseException] = []

    def index() -> None:
        try:
            engine.index([photos, _folder(tmp_path / "more", 240)], captions=photos / "captions.csv")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=index)
    worker.start()
    sizes = _search_while(worker.is_alive, engine)
    worker.join()
    assert errors == []
    assert len(sizes) >= 3 and all(size == 5 for size in sizes)  # searches were answered during the run
    assert engine.stats()["images"] == 246


@pytest.fixture
def chroma_server(tmp_path: Path):
    """A real ``chroma run`` server on a free 127.0.0.1 port, stopped after the test."""
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen([str(chroma), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("chroma run did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_another_process_indexes_through_a_chroma_server_while_this_one_searches(
        chroma_server, tiny_config, tiny_encoders, tiny_clip, minilm, photos, tmp_path):
    engine = SearchEngine(config=tiny_config, encoders=tiny_encoders, chroma_url=chroma_server)
    assert engine.index([photos], captions=photos / "captions.csv").added == 6
    env = {**os.environ, "MMSEARCH_CLIP_MODEL": tiny_clip[0], "MMSEARCH_CLIP_PRETRAINED": tiny_clip[1],
           "MMSEARCH_TEXT_MODEL": minilm, "MMSEARCH_BATCH_SIZE": "4", "MMSEARCH_DB": str(tmp_path / "unused")}
    writer = subprocess.Popen([sys.executable, "-m", "mmsearch", "index", str(_folder(tmp_path / "more", 240)),
                               "--chroma-url", chroma_server, "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sizes = _search_while(lambda: writer.poll() is None, engine)
    out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    assert '"added": 240' in out
    assert len(sizes) >= 3 and all(size == 5 for size in sizes)
    assert engine.stats()["images"] == 246
    assert not (tmp_path / "unused" / "chroma.sqlite3").exists()  # nothing went to an embedded database
