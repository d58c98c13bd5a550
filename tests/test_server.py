"""Server mode against a real ``chroma run``: shard workers, creation races, restarts, auth headers, export/import."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import folder_of_images, free_port, index_photos

from mmsearch import SearchEngine
from mmsearch.cli import main
from mmsearch.errors import ConfigError, IndexMismatchError, StoreError
from mmsearch.ingest.indexer import Shard
from mmsearch.store.client import Store

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.subprocess]  # make test runs them


@pytest.fixture
def worker_env(tiny_clip, minilm, tmp_path) -> dict[str, str]:
    """Environment of an ``mmsearch`` worker process using the tiny models."""
    return {**os.environ, "MMSEARCH_CLIP_MODEL": tiny_clip[0], "MMSEARCH_CLIP_PRETRAINED": tiny_clip[1],
            "MMSEARCH_TEXT_MODEL": minilm, "MMSEARCH_DB": str(tmp_path / "unused-db")}


def worker(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mmsearch", "index", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=400)
    return proc.returncode, out, err


def stored_paths(url: str) -> list[str]:
    store = Store("unused", url=url)
    return [meta["path"] for _, metas in store._pages(store.client.get_collection("mmsearch_images")) for meta in metas]


def test_shards_split_every_path_exactly_once():
    paths = [f"/photos/{year}/img_{i:05d}.jpg" for year in (2019, 2020) for i in range(1500)]
    shards = [Shard.parse(f"{i}/3") for i in range(3)]
    owners = [[s for s in shards if s.owns(p)] for p in paths]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(o[0] is s for o in owners) for s in shards]
    assert all(900 < size < 1100 for size in sizes)  # a hash spreads them evenly
    assert Shard.parse("1/3").owns(paths[0]) == Shard(1, 3).owns(paths[0])  # deterministic
    for bad in ("3/3", "-1/2", "x", "1/0"):
        with pytest.raises(ConfigError, match="--shard"):
            Shard.parse(bad)


def test_two_shard_workers_index_one_server_at_once_without_duplicates_or_gaps(chroma_server, worker_env, tmp_path):
    folder = folder_of_images(tmp_path / "photos", 160)
    args = [str(folder), "--chroma-url", chroma_server.url, "--batch-size", "8", "--json"]
    workers = [worker(worker_env, *args, "--shard", f"{i}/2") for i in range(2)]
    results = [finish(w) for w in workers]
    assert [rc for rc, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    reports = [json.loads(out) for _, out, _ in results]
    assert all(r["added"] > 40 for r in reports) and sum(r["added"] for r in reports) == 160
    paths = stored_paths(chroma_server.url)
    assert len(paths) == 160 and sorted(paths) == sorted(str(p) for p in folder.iterdir())
    # Re-running a shard is idempotent: it must not prune the other shard's images either.
    rc, out, err = finish(worker(worker_env, *args, "--shard", "0/2"))
    again = json.loads(out)
    assert rc == 0 and again["added"] == 0 and again["removed"] == 0 and again["unchanged"] == reports[0]["added"]
    assert len(stored_paths(chroma_server.url)) == 160


def test_workers_starting_at_once_create_the_collections_safely(chroma_server):
    mine = {"image_model": "open_clip:a/b", "text_model": "st:c"}
    other = {"image_model": "open_clip:x/y", "text_model": "st:z"}
    barrier, outcomes = threading.Barrier(6), []

    def start(signature: dict) -> None:
        store = Store("unused", url=chroma_server.url)
        barrier.wait()
        try:
            store.create(signature, 384)
            outcomes.append((signature["image_model"], "ok"))
        except IndexMismatchError:
            outcomes.append((signature["image_model"], "mismatch"))
        except Exception as exc:  # noqa: BLE001 - any other error fails the test below
            outcomes.append((signature["image_model"], repr(exc)))

    threads = [threading.Thread(target=start, args=(mine if i % 2 else other,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = Store("unused", url=chroma_server.url).signature()["image_model"]
    assert sorted(outcomes) == sorted((m, "ok" if m == winner else "mismatch") for m in ("open_clip:a/b", "open_clip:x/y") * 3)
    # images, captions and the pointer to the active models (mmsearch reindex): one each
    assert Store("unused", url=chroma_server.url).collection_names() == {"mmsearch_images", "mmsearch_captions",
                                                                         "mmsearch_index"}
    assert len(Store("unused", url=chroma_server.url).client.list_collections()) == 3


def wait_for_count(url: str, at_least: int, proc: subprocess.Popen) -> int:
    store = Store("unused", url=url)
    for _ in range(600):
        if store.signature() is not None and store.count() >= at_least:
            return store.count()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the index run made no progress")


def test_a_server_restart_mid_run_is_retried_and_the_run_finishes(chroma_server, worker_env, tmp_path):
    from mmsearch.ingest.progress import HOLD_VARIABLE, RELEASE_VARIABLE

    folder, release = folder_of_images(tmp_path / "photos", 240), tmp_path / "release"
    # The run holds after 40 images until ``release`` exists, so the server goes away mid-run on any machine.
    env = {**worker_env, HOLD_VARIABLE: "40", RELEASE_VARIABLE: str(release)}
    proc = worker(env, str(folder), "--chroma-url", chroma_server.url, "--batch-size", "4", "--json")
    wait_for_count(chroma_server.url, 40, proc)
    chroma_server.stop()
    lines, retrying = [], threading.Event()

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "cannot reach the Chroma server" in line:
                retrying.set()

    reader = threading.Thread(target=read)
    reader.start()
    release.touch()
    assert retrying.wait(120), "".join(lines)[-2000:]  # the run met the stopped server and is retrying
    chroma_server.start()
    out = proc.stdout.read()  # type: ignore[union-attr]
    rc = proc.wait(timeout=400)
    reader.join()
    err = "".join(lines)
    assert rc == 0, err[-2000:]
    assert f"cannot reach the Chroma server at {chroma_server.url}" in err and "retrying for up to 60 s" in err
    assert "is back after" in err
    assert json.loads(out)["added"] == 240 and len(stored_paths(chroma_server.url)) == 240


def test_a_server_that_stays_down_gives_a_clear_error_and_the_next_run_resumes(chroma_server, worker_env, tmp_path):
    folder = folder_of_images(tmp_path / "photos", 240)
    env = {**worker_env, "MMSEARCH_CHROMA_RETRY_SECONDS": "3"}
    args = [str(folder), "--chroma-url", chroma_server.url, "--batch-size", "4", "--json"]
    proc = worker(env, *args)
    wait_for_count(chroma_server.url, 40, proc)
    chroma_server.stop()
    rc, _, err = finish(proc)
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith(f"mmsearch: error: cannot reach the Chroma server at {chroma_server.url}")
    assert "gave up after" in last and "run the same command again once the server is back to resume" in last
    chroma_server.start()
    kept = len(stored_paths(chroma_server.url))
    assert 40 <= kept < 240
    rc, out, err = finish(worker(env, *args))
    report = json.loads(out)
    assert rc == 0 and report["unchanged"] == kept and report["added"] == 240 - kept
    assert len(stored_paths(chroma_server.url)) == 240


class TokenProxy(ThreadingHTTPServer):
    """A reverse proxy that requires a bearer token and a team header, like one put in front of ``chroma run``."""

    def __init__(self, upstream: str, token: str):
        host, port = upstream.removeprefix("http://").split(":")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                proxy.seen.append(dict(self.headers))
                if self.headers.get("Authorization") != f"Bearer {token}" or self.headers.get("X-Team") != "photos":
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815 - http.server's naming

        self.seen: list[dict] = []
        super().__init__(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


def test_token_and_headers_reach_the_server(chroma_server, tiny_config, tiny_encoders, photos):
    proxy = TokenProxy(chroma_server.url, "s3cret")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        engine = SearchEngine(config=tiny_config, encoders=tiny_encoders, chroma_url=proxy.url, chroma_token="s3cret",
                              chroma_headers="X-Team: photos", caption_weight=1.0)
        assert index_photos(engine, photos).added == 6
        assert Path(engine.search("a kitten napping on the couch", k=1)[0].path).name == "black_cat.jpg"
        assert all(h.get("Authorization") == "Bearer s3cret" for h in proxy.seen)
        assert "s3cret" not in repr(engine.config)
        anonymous = SearchEngine(config=tiny_config, encoders=tiny_encoders, chroma_url=proxy.url)
        with pytest.raises(StoreError, match=r"refused the request: HTTP 401 Unauthorized \(check MMSEARCH_CHROMA_TOKEN"):
            anonymous.stats()
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_export_from_embedded_import_into_a_server_and_back(chroma_server, make_engine, photos, tmp_path, capsys,
                                                            tiny_config, tiny_encoders):
    local = make_engine(caption_weight=1.0)
    index_photos(local, photos)
    assert main(["export", str(tmp_path / "dump"), "--db", local.config.db]) == 0
    assert "exported 6 images and 5 captions" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "dump"), "--chroma-url", chroma_server.url]) == 0
    served = SearchEngine(config=tiny_config, encoders=tiny_encoders, chroma_url=chroma_server.url, caption_weight=1.0)
    for query in ("a kitten napping on the couch", "mountains"):
        expected = [(h.path, h.score, h.scores) for h in local.search(query, k=6)]
        assert [(h.path, h.score, h.scores) for h in served.search(query, k=6)] == expected
    assert served.stats()["roots"] == [str(photos)] and served.stats()["captions"] == 5
    # Importing twice changes nothing; and back from the server into a new embedded database.
    assert main(["import", str(tmp_path / "dump"), "--chroma-url", chroma_server.url]) == 0
    assert served.stats()["images"] == 6
    assert main(["export", str(tmp_path / "dump2"), "--chroma-url", chroma_server.url]) == 0
    assert main(["import", str(tmp_path / "dump2"), "--db", str(tmp_path / "copy")]) == 0
    copy = make_engine(db=tmp_path / "copy", caption_weight=1.0)
    assert index_photos(copy, photos).unchanged == 6  # nothing to re-encode
    capsys.readouterr()


def test_import_refuses_other_models_and_broken_exports(make_engine, photos, tmp_path, capsys):
    local = make_engine()
    local.index([photos])
    assert main(["export", str(tmp_path / "dump"), "--db", local.config.db]) == 0
    other = Store(tmp_path / "other")
    other.create({"image_model": "open_clip:ViT-B-32/openai", "text_model": "st:x"}, 384)
    assert main(["import", str(tmp_path / "dump"), "--db", str(tmp_path / "other")]) == 1
    assert "was built with image model open_clip:ViT-B-32/openai" in capsys.readouterr().err
    with open(tmp_path / "dump" / "images.f32", "r+b") as f:
        f.truncate(100)
    assert main(["import", str(tmp_path / "dump"), "--db", str(tmp_path / "fresh")]) == 1
    assert "images.f32 is truncated" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "dump"), "--db", local.config.db]) == 1
    assert "is not empty" in capsys.readouterr().err
