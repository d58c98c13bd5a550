"""Hardening, round 2: files served only while they are what was indexed, undo of what mmsearch moved only,
moved copies findable by name, hand-overs to a server that died, read-only meaning no writes, and empty
filters that delete nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import names

from mmsearch import Config, SearchEngine
from mmsearch.cli import main
from mmsearch.errors import ConfigError, QueryError
from mmsearch.ids import image_id
from mmsearch.media.identity import still_indexed

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


def _offline(db: Path) -> SearchEngine:
    return SearchEngine(config=Config.offline_profile(Config(db=str(db))))


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for name in ("rocket.jpg", "coffee.png", "flower.jpg"):
        shutil.copy(SAMPLES / name, root / "sub" / name)
    shutil.copy(SAMPLES / "flower.jpg", root / "flower-copy.jpg")
    (tmp_path / "secret.txt").write_text("root:x:0:0:not for the browser\n")
    return root


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_file_is_still_the_indexed_image_only_while_it_is(library, tmp_path):
    engine = _offline(tmp_path / "db")
    engine.index([library])
    records = {Path(m["path"]).name: m for _, m in engine.store.all_metadata()}
    rocket, coffee = library / "sub" / "rocket.jpg", library / "sub" / "coffee.png"
    assert still_indexed(str(rocket), records["rocket.jpg"])
    os.utime(rocket, (1_000_000_000, 1_000_000_000))  # touched: the content hash decides, and agrees
    assert still_indexed(str(rocket), records["rocket.jpg"])
    rocket.rename(tmp_path / "rocket-away.jpg")
    rocket.symlink_to(tmp_path / "secret.txt")  # a link to something else in its place
    assert not still_indexed(str(rocket), records["rocket.jpg"])
    coffee.unlink()
    os.link(tmp_path / "db" / "chroma.sqlite3", coffee)  # a hard link of the database under its name
    assert not still_indexed(str(coffee), records["coffee.png"])
    os.mkfifo(library / "sub" / "fifo.jpg")  # never blocks
    assert not still_indexed(str(library / "sub" / "fifo.jpg"), {**records["flower.jpg"], "path": "x"})


@pytest.mark.slow
@pytest.mark.server
def test_the_page_serves_and_thumbnails_a_file_only_while_it_is_the_indexed_image(library, tmp_path):
    from helpers import served
    from mmsearch_web.views import SearchForm, run_search

    from mmsearch.media.thumbnails import ThumbnailCache

    engine = _offline(tmp_path / "db")
    engine.index([library])
    rocket, coffee = library / "sub" / "rocket.jpg", library / "sub" / "coffee.png"
    with served(engine) as url:
        status, body = _get(f"{url}mmsearch/original/{image_id(str(rocket))}")
        assert status == 200 and body == rocket.read_bytes()
        rocket.rename(tmp_path / "rocket-away.jpg")
        rocket.symlink_to(tmp_path / "secret.txt")
        status, body = _get(f"{url}mmsearch/original/{image_id(str(rocket))}")
        assert status == 404 and b"not for the browser" not in body
        coffee.unlink()
        os.link(tmp_path / "db" / "chroma.sqlite3", coffee)
        status, body = _get(f"{url}mmsearch/original/{image_id(str(coffee))}")
        assert status == 404 and not body.startswith(b"SQLite format 3")
    thumbs = ThumbnailCache(str(tmp_path / "thumbs"))
    shown = run_search(engine, thumbs, SearchForm("rocket.jpg", min_relevance=0))
    assert "rocket.jpg" not in names(shown.hits) and "no longer readable" in shown.status
    assert not list((tmp_path / "thumbs").rglob("*.*")) or all("rocket" not in p.name for p in (tmp_path / "thumbs").rglob("*"))


def test_undo_moves_back_only_what_this_index_moved(library, tmp_path):
    engine = _offline(tmp_path / "db")
    engine.index([library])
    groups = engine.duplicates()
    assert [sorted(Path(f).name for f in g.files) for g in groups] == [["flower-copy.jpg", "flower.jpg"]]
    manifest = Path(engine.move_duplicates(groups, tmp_path / "moved"))
    data = json.loads(manifest.read_text())
    assert data["version"] == 2 and data["roots"] == [str(library)] and len(data["mac"]) == 64
    assert oct((tmp_path / "db" / "duplicates-manifest.key").stat().st_mode & 0o777) == "0o600"
    forged = dict(data, moved=[*data["moved"], {"from": str(library / "secret.txt"), "to": str(tmp_path / "secret.txt")}])
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    with pytest.raises(ConfigError, match="checksum does not match"):
        engine.undo_duplicate_moves(tmp_path / "forged.json")
    unsigned = {"format": "mmsearch-duplicates-moves", "version": 1,
                "moved": [{"from": str(library / "sub" / "stolen.txt"), "to": str(tmp_path / "secret.txt")}]}
    (tmp_path / "old.json").write_text(json.dumps(unsigned))
    assert engine.undo_duplicate_moves(tmp_path / "old.json") == (0, [str(tmp_path / "secret.txt")])  # never indexed
    assert (tmp_path / "secret.txt").exists() and not (library / "sub" / "stolen.txt").exists()
    for bad in ("[]", '{"format": "x"}', '{"format": "mmsearch-duplicates-moves", "version": 2, "moved": 5}', "{"):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(ConfigError, match="is not a duplicates manifest of this index") as caught:
            engine.undo_duplicate_moves(tmp_path / "bad.json")
        assert "\n" not in str(caught.value)
    moved = Path(data["moved"][0]["from"])
    moved.symlink_to(tmp_path / "nowhere")  # a dangling link where the file was: never replaced
    assert engine.undo_duplicate_moves(manifest) == (0, [data["moved"][0]["to"]])
    moved.unlink()
    assert engine.undo_duplicate_moves(manifest) == (1, []) and moved.is_file()


def test_a_moved_copy_is_found_by_name_in_a_fresh_process(library, tmp_path, capsys):
    engine = _offline(tmp_path / "db")
    engine.index([library])
    groups = engine.duplicates()
    name = Path(groups[0].members[1].path).name  # the copy that moves (the keeper stays)
    engine.search(name, k=5)  # the keyword index is built and saved before the move
    before = engine.store.updated_at()
    engine.move_duplicates(groups, tmp_path / "moved")
    assert engine.store.updated_at() > before
    assert any(h.path.startswith(str(tmp_path / "moved")) for h in engine.search(name, k=5))
    assert main(["search", name, "--db", str(tmp_path / "db"), "--json"]) == 0  # a fresh process: keywords.npz
    found = [r["path"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert any(p.startswith(str(tmp_path / "moved")) and p.endswith(name) for p in found), found


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_hand_over_to_a_server_that_died_ends_with_a_sentence(tmp_path):
    from mmsearch.ingest.handoff import STATUS, hand_over, server_alive

    db = tmp_path / "db"
    db.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not server_alive({"pid": dead.pid}, time.time()) and server_alive({"pid": os.getpid()}, time.time())
    assert not server_alive({"pid": os.getpid(), "beat": time.time() - 3600}, time.time())  # no heartbeat for an hour

    def taken_by_a_dead_server() -> None:  # what a serve killed by -9 right after taking the job leaves
        while not (db / "reindex-request.json").exists():
            time.sleep(0.05)
        job = json.loads((db / "reindex-request.json").read_text())["id"]
        (db / "reindex-request.json").unlink()
        (db / STATUS).write_text(json.dumps({"id": job, "state": "running", "pid": dead.pid, "beat": time.time()}))

    import threading

    threading.Thread(target=taken_by_a_dead_server, daemon=True).start()
    from mmsearch.errors import ReindexError

    with pytest.raises(ReindexError, match=rf"the server \(pid {dead.pid}\) stopped while it ran the reindex"):
        hand_over(db, "reindex", {}, progress=False, poll=0.05)
    assert not (db / STATUS).exists()  # the next command starts clean


@pytest.mark.slow
@pytest.mark.server
def test_a_read_only_page_writes_no_marks(library, tmp_path):
    from gradio_client import Client
    from helpers import served

    engine = _offline(tmp_path / "db")
    engine.index([library])
    rocket = str(library / "sub" / "rocket.jpg")
    with served(engine, read_only=True) as url:
        client = Client(url, verbose=False)
        client.predict("a rocket", rocket, [], [], True, api_name="/like")
        client.predict("a rocket", rocket, [], [], True, api_name="/unlike")
        assert _get(f"{url}mmsearch/original/{image_id(rocket)}?q=a%20rocket")[0] == 200
    assert engine.feedback_marks() == []


def test_marks_are_capped_and_empty_filters_forget_nothing(library, tmp_path, capsys, monkeypatch):
    engine = _offline(tmp_path / "db")
    engine.index([library])
    rocket = library / "sub" / "rocket.jpg"
    with pytest.raises(QueryError, match="at most 1000 characters"):
        engine.feedback("x" * 1_000_001, rocket, True)
    for strength in (float("nan"), 0.0, 5, "1"):
        with pytest.raises(QueryError, match="strength"):
            engine.feedback("a rocket", rocket, True, strength=strength)
    with pytest.raises(QueryError, match="True or False"):
        engine.feedback("a rocket", rocket, "no")
    engine.feedback("a rocket", rocket, True)
    engine.feedback("a flower", library / "sub" / "flower.jpg", True)
    for blank in ("", "  "):
        with pytest.raises(QueryError, match="empty or blank query"):
            engine.forget_feedback(query=blank)
        with pytest.raises(QueryError, match="empty or blank path"):
            engine.forget_feedback(path=blank)
    db = str(tmp_path / "db")
    assert main(["feedback", "clear", "--query", "", "--db", db]) == 1
    assert "empty or blank query" in capsys.readouterr().err and len(engine.feedback_marks()) == 2
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(""))  # nobody answers: nothing is cleared
    assert main(["feedback", "clear", "--db", db]) == 1 and len(engine.feedback_marks()) == 2
    assert main(["feedback", "clear", "--db", db, "--yes"]) == 0 and engine.feedback_marks() == []


def test_marks_per_query_are_capped(library, tmp_path, monkeypatch):
    from mmsearch.search import feedback

    monkeypatch.setattr(feedback, "MAX_MARKS_PER_QUERY", 2)
    engine = _offline(tmp_path / "db")
    engine.index([library])
    photos = sorted(library.rglob("*.jpg"))
    engine.feedback("flowers", photos[0], True)
    engine.feedback("flowers", photos[1], False)
    engine.feedback("flowers", photos[1], True)  # the same mark again: replaced, not added
    with pytest.raises(QueryError, match="has 2 marks, the most one query keeps"):
        engine.feedback("flowers", photos[2], True)


def test_moves_are_refused_into_the_database_or_through_a_link_into_a_root(library, tmp_path):
    engine = _offline(tmp_path / "db")
    engine.index([library])
    groups = engine.duplicates()
    (tmp_path / "link").symlink_to(library / "sub")
    with pytest.raises(ConfigError, match="inside an indexed folder"):
        engine.move_duplicates(groups, tmp_path / "link" / "x")
    with pytest.raises(ConfigError, match="inside the database folder"):
        engine.move_duplicates(groups, tmp_path / "db" / "thumbnails" / "x")
    with pytest.raises(ConfigError, match="needs the folder"):
        engine.move_duplicates([], None)  # type: ignore[arg-type]
    assert not Path("None").exists()


def test_parallel_login_guesses_queue_one_at_a_time_and_a_flood_is_refused(monkeypatch):
    import asyncio

    from mmsearch_web import guard

    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:  # the delays asked for, without waiting them out
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(guard.asyncio, "sleep", sleep)
    inside, most = [0], [0]

    async def wrong_password(scope, receive, send) -> None:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        await real_sleep(0)
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        inside[0] -= 1

    throttle = guard.LoginThrottle(wrong_password)
    answers: list[int] = []

    async def attempt() -> None:
        async def send(message) -> None:
            if message["type"] == "http.response.start":
                answers.append(message["status"])
        await throttle({"type": "http", "method": "POST", "path": "/login", "client": ("10.0.0.9", 1)}, None, send)

    async def guesses() -> None:
        await asyncio.gather(*(attempt() for _ in range(8)))

    asyncio.run(guesses())
    assert most[0] == 1  # never two guesses of one client at once
    assert sorted(answers) == [401] * 5 + [429] * 3  # five queued, the rest refused
    assert [w for w in waits if w > 0] == [1.0, 2.0, 4.0, 8.0]  # each waited the delay of the failures before it


def test_proxy_headers_are_not_trusted_unless_asked(monkeypatch):
    from mmsearch_web.guard import trust_proxy_headers

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "x")  # so that the test's changes are undone after it
    monkeypatch.delenv("FORWARDED_ALLOW_IPS")
    trust_proxy_headers(True)
    assert "FORWARDED_ALLOW_IPS" not in os.environ  # uvicorn's default: a proxy on this machine
    trust_proxy_headers(False)
    assert os.environ["FORWARDED_ALLOW_IPS"] == ""  # nobody's X-Forwarded-For is believed


def test_quiet_logging_restores_levels_when_threads_overlap():
    """Two model loads in two threads: the levels come back when the last one leaves, whatever the order."""
    import logging
    import threading

    from mmsearch.encoders.hub import quiet_logging

    root = logging.getLogger()
    before = root.level
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with quiet_logging():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(10)
    with quiet_logging():
        second_in.set()
        first_out.wait(10)
        assert root.level == logging.CRITICAL  # the first left, the second still loads
    thread.join(10)
    assert root.level == before


def _desk(db):
    from types import SimpleNamespace

    from mmsearch.ingest.handoff import JobDesk

    desk = JobDesk(SimpleNamespace(config=SimpleNamespace(db=str(db), chroma_url=None)))
    started = []
    desk.run = started.append  # what would run; nothing here should
    return desk, started


def test_the_server_drops_requests_mmsearch_did_not_write_without_blocking(tmp_path):
    import threading

    from mmsearch.ingest.handoff import REQUEST

    db = tmp_path / "db"
    db.mkdir()
    desk, started = _desk(db)
    os.mkfifo(db / REQUEST)  # opening it for reading would block the watcher for good
    done = threading.Event()
    threading.Thread(target=lambda: (desk.poll(), done.set()), daemon=True).start()
    assert done.wait(60), "poll blocked on a FIFO"
    assert not os.path.lexists(db / REQUEST)
    good = {"id": "ab12", "action": "reindex", "options": {}, "pid": os.getpid()}
    for bad in ({**good, "options": {"pad": "x" * 200_000}}, {**good, "id": ["x"]}, {**good, "action": "rm -rf"},
                {**good, "pid": "1"}, {**good, "options": 5}, [good]):
        (db / REQUEST).write_text(json.dumps(bad))
        desk.poll()
        assert not (db / REQUEST).exists()
    assert started == []
    (db / REQUEST).write_text(json.dumps(good))
    desk.poll()
    assert started == [good]


def test_a_request_cancelled_before_the_server_took_it_never_runs(tmp_path):
    from mmsearch.ingest.handoff import CANCEL, REQUEST

    db = tmp_path / "db"
    db.mkdir()
    desk, started = _desk(db)
    (db / REQUEST).write_text(json.dumps({"id": "cd34", "action": "reindex", "options": {}, "pid": os.getpid()}))
    (db / CANCEL).write_text(json.dumps({"id": "cd34"}))
    desk.poll()
    assert started == [] and not (db / REQUEST).exists() and not (db / CANCEL).exists()


def test_a_second_command_is_refused_in_a_sentence_and_never_overwrites_the_first(tmp_path):
    from mmsearch.errors import ReindexError
    from mmsearch.ingest.handoff import REQUEST, STATUS, hand_over

    db = tmp_path / "db"
    db.mkdir()
    first = {"id": "ef56", "action": "reindex", "options": {}, "pid": os.getpid()}  # a live command's request
    (db / REQUEST).write_text(json.dumps(first))
    with pytest.raises(ReindexError, match=rf"another command \(pid {os.getpid()}\) is waiting for the server"):
        hand_over(db, "reindex", {}, progress=False)
    assert json.loads((db / REQUEST).read_text()) == first
    (db / REQUEST).unlink()
    (db / STATUS).write_text(json.dumps({"id": "ef56", "state": "running", "pid": os.getpid(), "beat": time.time()}))
    with pytest.raises(ReindexError, match="is running a job another command handed it"):
        hand_over(db, "rollback", {}, progress=False)
    assert not (db / REQUEST).exists()


@pytest.mark.parametrize("changed", ["copy", "keeper"])
def test_a_file_changed_after_the_duplicates_were_found_stops_the_move(library, tmp_path, changed):
    engine = _offline(tmp_path / "db")
    engine.index([library])
    groups = engine.duplicates()
    assert len(groups) == 1 and len(groups[0].files) == 2
    keeper, copy = groups[0].files
    edited = Path(copy if changed == "copy" else keeper)
    shutil.copy(SAMPLES / "rocket.jpg", edited)  # another photo now, under the same name
    with pytest.raises(ConfigError, match=rf"nothing moved: 1 file\(s\) changed since .*{edited.name}"):
        engine.move_duplicates(groups, tmp_path / "moved")
    assert Path(keeper).is_file() and Path(copy).is_file() and not (tmp_path / "moved").exists()
    engine.index([library])  # indexed again, the group is stale all the same
    with pytest.raises(ConfigError, match="changed since"):
        engine.move_duplicates(groups, tmp_path / "moved")


def test_indexing_a_folder_that_holds_the_database_skips_the_database(library, tmp_path):
    db = library / "mmsearch-db"  # the database inside the photos
    engine = _offline(db)
    engine.index([library])
    thumbs = Path(engine.config.thumbnail_dir)
    thumbs.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "rocket.jpg", thumbs / "made-by-the-page.jpg")
    (tmp_path / "db-link").symlink_to(db)
    report = engine.index([library, tmp_path / "db-link"])
    indexed = {m["path"] for m in engine.store.image_metadata(
        [image_id(str(p)) for p in library.rglob("*") if p.is_file()]).values()}
    assert report.added == 0 and not any("mmsearch-db" in p for p in indexed)
    assert len(indexed) == 4


@pytest.mark.slow
@pytest.mark.server
def test_odd_marks_through_the_api_get_a_sentence_and_a_client_has_a_mark_budget(library, tmp_path, monkeypatch):
    from gradio_client import Client
    from helpers import served
    from mmsearch_web import guard

    monkeypatch.setattr(guard.MarkBudget.__init__, "__defaults__", (2, 3600.0, time.monotonic))
    engine = _offline(tmp_path / "db")
    engine.index([library])
    rocket, coffee, flower = (str(library / "sub" / n) for n in ("rocket.jpg", "coffee.png", "flower.jpg"))
    with served(engine) as url:
        client = Client(url, verbose=False)
        for odd in (5, [None], [[rocket]], [1, 2]):
            _, hits, status, *_ = (*client.predict("a rocket", like=odd, min_relevance=0, api_name="/search"),)
            assert hits == [] and status.startswith("⚠️ like is a list of indexed image paths"), (odd, status)
        _, hits, status, *_ = (*client.predict("a rocket", like=[rocket, rocket], min_relevance=0, api_name="/search"),)
        assert hits and not status.startswith("⚠️")  # one example, given twice
        with pytest.raises(Exception, match="unlike is a list of indexed image paths"):
            client.predict("a rocket", rocket, [], 5, True, api_name="/like")
        for path in (rocket, coffee, flower):  # the third is past this client's budget of 2
            client.predict("a rocket", path, [], [], True, api_name="/like")
    assert sorted(m.path for m in engine.feedback_marks()) == sorted([rocket, coffee])
