"""A library that keeps itself current: a watched folder's new, changed, deleted and moved files reach the
index by themselves, in few runs, never half-copied, and an unmounted folder prunes nothing. Every wait here
is on an event (a run's report, the watcher's state), with a timeout only as the bound of a failure."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import count_encoder_calls, scene_picture

from mmsearch import Config, SearchEngine
from mmsearch.records import IndexReport

WAIT = 60.0  # seconds before a wait counts as a failure (a run takes well under one here)


class Runs:
    """The reports of a watcher's runs, and a way to wait until one of them satisfies a condition."""

    def __init__(self) -> None:
        self.reports: list[IndexReport] = []
        self.changed = threading.Condition()

    def add(self, report: IndexReport) -> None:
        with self.changed:
            self.reports.append(report)
            self.changed.notify_all()

    def wait_for(self, done: Callable[[], bool], what: str) -> None:
        with self.changed:
            assert self.changed.wait_for(done, WAIT), f"timed out waiting for {what}; runs: {[r.summary() for r in self.reports]}"


@contextmanager
def watching(engine: SearchEngine, roots: list[Path]) -> Iterator[tuple[Runs, object]]:
    runs = Runs()
    watcher = engine.watcher(roots, on_run=runs.add)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    _wait_state(watcher, "watching")
    try:
        yield runs, watcher
    finally:
        stop.set()
        thread.join(WAIT)
        assert not thread.is_alive()


def _wait_state(watcher: object, state: str) -> None:
    deadline = time.monotonic() + WAIT
    while watcher.status.state != state:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"the watcher never reached {state!r}: {watcher.status.line()}"  # type: ignore[attr-defined]
        time.sleep(0.02)


def _count(engine: SearchEngine) -> int:
    return engine.store.count() if engine.store.ready else 0


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    root.mkdir()
    scene_picture(1, (96, 72)).save(root / "first.jpg")
    return root


def test_new_deleted_and_moved_files_reach_the_index_by_themselves(make_engine, tiny_encoders, library, tmp_path,
                                                                     monkeypatch):
    engine = make_engine()
    engine.index([library])
    (library / "trips").mkdir()
    with watching(engine, [library]) as (runs, _):
        started = time.monotonic()
        scene_picture(2, (96, 72)).save(tmp_path / "beach.jpg")
        shutil.move(tmp_path / "beach.jpg", library / "trips" / "beach.jpg")  # arrives whole, as a sync does
        runs.wait_for(lambda: _count(engine) == 2, "the new photo")
        seconds = time.monotonic() - started
        assert [Path(h.path).name for h in engine.search("beach", k=1)] == ["beach.jpg"]
        assert seconds < 10, seconds

        encoded, _ = count_encoder_calls(monkeypatch, tiny_encoders.image, tiny_encoders.text)
        (library / "trips" / "beach.jpg").rename(library / "sea.jpg")
        runs.wait_for(lambda: any(r.moved for r in runs.reports), "the move")
        assert encoded == [] and {Path(p).name for p in engine.store.entries()} == {"first.jpg", "sea.jpg"}

        (library / "first.jpg").unlink()
        runs.wait_for(lambda: any(r.removed for r in runs.reports), "the deletion")
        assert {Path(p).name for p in engine.store.entries()} == {"sea.jpg"}
        assert engine.store.roots() == [str(library)]  # the subfolders indexed by the runs are not roots


def test_two_thousand_files_copied_at_once_are_a_few_runs(make_engine, library, tmp_path):
    from PIL import Image

    source = tmp_path / "card"
    source.mkdir()
    for n in range(2000):
        Image.new("RGB", (8, 8), (n % 256, n // 256, 7)).save(source / f"IMG_{n:04d}.png")
    engine = make_engine()
    engine.index([library])
    with watching(engine, [library]) as (runs, _):
        shutil.copytree(source, library / "card")
        runs.wait_for(lambda: _count(engine) == 2001, "all 2,000 files")
        assert len(runs.reports) <= 4, [r.summary() for r in runs.reports]
        assert sum(r.added for r in runs.reports) == 2000


def test_a_file_still_being_written_is_indexed_only_once_complete(make_engine, library):
    engine = make_engine()
    engine.index([library])
    picture = library / "growing.jpg"
    scene_picture(3, (640, 480)).save(library.parent / "whole.jpg", quality=95)
    whole = (library.parent / "whole.jpg").read_bytes()
    with watching(engine, [library]) as (runs, watcher):
        with open(picture, "wb") as handle:
            handle.write(whole[: len(whole) // 2])
        future = time.time() + 3600
        os.utime(picture, (future, future))  # still being written: its time is not settled
        _wait_state(watcher, "waiting for files to settle")
        assert runs.reports == []
        with open(picture, "ab") as handle:
            handle.write(whole[len(whole) // 2:])
        past = time.time() - 60
        os.utime(picture, (past, past))  # closed a while ago
        runs.wait_for(lambda: _count(engine) == 2, "the finished file")
    assert len(runs.reports) == 1 and runs.reports[0].failed == [] and runs.reports[0].added == 1
    entry = engine.store.entries()[str(picture)]
    assert entry.sha256 == hashlib.sha256(whole).hexdigest()


def test_an_unmounted_folder_prunes_nothing_and_is_caught_up_when_it_returns(make_engine, library, tmp_path):
    engine = make_engine()
    engine.index([library])
    away = tmp_path / "unmounted"
    with watching(engine, [library]) as (runs, watcher):
        library.rename(away)
        deadline = time.monotonic() + WAIT
        while str(library) not in watcher.status.paused:
            assert time.monotonic() < deadline, watcher.status.line()
            time.sleep(0.02)
        assert _count(engine) == 1  # nothing pruned
        scene_picture(4, (96, 72)).save(away / "while-away.jpg")
        away.rename(library)
        runs.wait_for(lambda: _count(engine) == 2, "the catch-up pass")
    assert {Path(p).name for p in engine.store.entries()} == {"first.jpg", "while-away.jpg"}


def test_hidden_files_and_the_database_inside_a_watched_folder_are_never_watched(tmp_path):
    root = tmp_path / "home"
    root.mkdir()
    scene_picture(5, (96, 72)).save(root / "a.jpg")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(root / "db"))))
    engine.index([root])
    watcher = engine.watcher()
    assert watcher.wanted(None, str(root / "b.jpg")) and watcher.wanted(None, str(root / "sub"))
    assert not watcher.wanted(None, str(root / ".cache" / "c.jpg"))
    assert not watcher.wanted(None, str(root / "db" / "chroma.sqlite3"))
    assert not watcher.wanted(None, str(root / "db" / "thumbnails" / "ab" / "x.jpg"))
    assert not watcher.wanted(None, str(root / "notes.pdf"))


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigterm_stops_the_watch_and_frees_the_lock_and_kill_9_mid_batch_resumes_exactly(tiny_clip, minilm, tmp_path):
    import signal
    import subprocess
    import sys

    from helpers import run_until

    from mmsearch.store.client import Store

    root = tmp_path / "roll"
    root.mkdir()
    for n in range(12):
        scene_picture(20 + n, (64, 48)).save(root / f"p{n:02d}.jpg")
    env = {**os.environ, "MMSEARCH_CLIP_MODEL": tiny_clip[0], "MMSEARCH_CLIP_PRETRAINED": tiny_clip[1],
           "MMSEARCH_TEXT_MODEL": minilm, "MMSEARCH_DB": str(tmp_path / "db"), "MMSEARCH_BATCH_SIZE": "2"}
    command = [sys.executable, "-m", "mmsearch", "watch", str(root)]
    code, _ = run_until(command, env, 4, signal.SIGKILL)  # killed in the middle of its catch-up run
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    stored = Store(tmp_path / "db").count()
    assert 4 <= stored < 12

    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("watching "):
                break
        assert lines and lines[0].startswith(f"catching up: added {12 - stored}, updated 0, unchanged {stored}"), lines
        busy = subprocess.run([sys.executable, "-m", "mmsearch", "index", str(root)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert busy.returncode == 1 and "in use by" in busy.stderr and "(mmsearch watch)" in busy.stderr
        assert "it indexes what changes in its folders by itself" in busy.stderr
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped watching" in out, err[-2000:]
    again = subprocess.run([sys.executable, "-m", "mmsearch", "index", str(root), "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr  # the lock was released
    assert Store(tmp_path / "db").count() == 12 and '"unchanged": 12' in again.stdout


@pytest.mark.slow
@pytest.mark.server
def test_serve_watch_finds_a_copied_photo_through_the_page_api(tmp_path):
    from gradio_client import Client
    from helpers import served

    root = tmp_path / "library"
    root.mkdir()
    scene_picture(6, (96, 72)).save(root / "first.jpg")
    (root / "first.jpg.txt").write_text("a red bicycle leaning on a wall")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([root])
    with served(engine, watch=True) as url:
        client = Client(url, verbose=False)
        incoming = tmp_path / "incoming"
        incoming.mkdir()
        scene_picture(7, (96, 72)).save(incoming / "lighthouse.jpg")
        (incoming / "lighthouse.jpg.txt").write_text("a white lighthouse on a rocky coast")
        started = time.monotonic()
        for name in ("lighthouse.jpg.txt", "lighthouse.jpg"):
            shutil.move(incoming / name, root / name)
        found: list = []
        while time.monotonic() - started < WAIT:  # asks the page until the watcher has indexed it
            # (two photos are too few to calibrate relevance on: no floor, the best first)
            _, hits, _ = client.predict("a lighthouse by the sea", k=1, min_relevance=0, api_name="/search")
            found = [Path(h["file"]).name for h in hits]
            if found == ["lighthouse.jpg"]:
                break
            time.sleep(0.2)
        assert found == ["lighthouse.jpg"]
        assert time.monotonic() - started < 10


@pytest.mark.slow
@pytest.mark.server
def test_two_watchers_share_one_chroma_server_each_on_its_own_folder(chroma_server, tmp_path):
    def engine_on_server() -> SearchEngine:
        return SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "unused"),
                                                                 chroma_url=chroma_server.url)))

    first, second = tmp_path / "alice", tmp_path / "bob"
    for root, seed in ((first, 11), (second, 12)):
        root.mkdir()
        scene_picture(seed, (96, 72)).save(root / f"{root.name}.jpg")
    mine, theirs = engine_on_server(), engine_on_server()
    mine.index([first])
    theirs.index([second])
    with watching(mine, [first]) as (mine_runs, _), watching(theirs, [second]) as (their_runs, _):
        scene_picture(13, (96, 72)).save(tmp_path / "new.jpg")
        shutil.move(tmp_path / "new.jpg", first / "new.jpg")
        mine_runs.wait_for(lambda: any(r.added for r in mine_runs.reports), "alice's new photo")
        (second / "bob.jpg").unlink()
        their_runs.wait_for(lambda: any(r.removed for r in their_runs.reports), "bob's deletion")
    names = {Path(p).name for p in engine_on_server().store.entries()}
    assert names == {"alice.jpg", "new.jpg"}  # each watcher pruned only under its own folder
    assert sorted(engine_on_server().store.roots()) == sorted([str(first), str(second)])


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.server
def test_sigterm_on_serve_watch_frees_the_lock(tmp_path):
    import signal
    import subprocess
    import sys
    import urllib.request

    from helpers import free_port

    root = tmp_path / "library"
    root.mkdir()
    scene_picture(8, (96, 72)).save(root / "a.jpg")
    db = tmp_path / "db"
    env = {**os.environ, "MMSEARCH_DB": str(db)}
    assert subprocess.run([sys.executable, "-m", "mmsearch", "index", str(root), "--offline"], env=env,
                          capture_output=True, timeout=300).returncode == 0
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--watch", "--port", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # until the page answers (the server is up and holds the lock)
            assert serve.poll() is None, serve.stderr.read()  # type: ignore[union-attr]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "serve --watch never answered"
                time.sleep(0.2)
        busy = subprocess.run([sys.executable, "-m", "mmsearch", "index", str(root)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert busy.returncode == 1 and "(mmsearch serve)" in busy.stderr
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
    again = subprocess.run([sys.executable, "-m", "mmsearch", "index", str(root)], env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr  # the lock went with the server
