"""The web page: a real Gradio server on 127.0.0.1 (started by ``web.app.launch``), driven by gradio_client and HTTP."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import CAMERA, free_port, names, served
from mmsearch_web.app import folder_choices, indexing_allowed, is_loopback, launch
from mmsearch_web.views import SearchForm, hit_details, parse_auth, run_search
from PIL import Image

from mmsearch import SearchEngine
from mmsearch.ingest.indexer import image_id
from mmsearch.media.thumbnails import SIZES, ThumbnailCache

pytestmark = [pytest.mark.slow, pytest.mark.server]  # make test runs them


@pytest.fixture(scope="module")
def client(site):
    from gradio_client import Client

    return Client(site["url"], verbose=False)


def test_text_query_returns_thumbnails_scores_and_captions(client, site):
    gallery, hits, status = client.predict("a kitten napping on the couch", k=3, api_name="/search")
    assert status == "1 result" and names(hits) == ["black_cat.jpg"]  # by default the close matches only
    gallery, hits, status = client.predict("a kitten napping on the couch", k=3, min_relevance=0, api_name="/search")
    assert status == "3 results" and len(gallery) == 3 and names(hits)[0] == "black_cat.jpg"
    label = gallery[0]["caption"]
    assert label == "photos/black_cat.jpg · strong match 1.00 — a black cat sleeping on a sofa"  # scores: details
    assert " · weak " in gallery[1]["caption"] and hits[1]["relevance"] < 0.5
    assert hits[0]["scores"]["caption"] > 0.3 and hits[0]["metadata"]["width"] == 96
    # The 12 MP-class original never goes to the browser: its tile is a thumbnail.
    gallery, hits, _ = client.predict("boats in a harbour", k=1, api_name="/search")
    assert names(hits) == ["harbour.jpg"]
    with Image.open(gallery[0]["image"]) as tile:
        assert max(tile.size) == SIZES["thumb"] and tile.size == (384, 256)


def test_image_query_and_combined_query(client, site):
    from gradio_client import handle_file

    bike = handle_file(str(site["photos"] / "red_bicycle.png"))
    _, hits, status = client.predict("", bike, k=3, min_relevance=0, api_name="/search")
    assert names(hits)[0] == "red_bicycle.png" and hits[0]["scores"]["image"] == pytest.approx(1.0, abs=1e-4)
    # Both: one query vector; captions rank here (caption_weight 1), the image part shows in the image signal.
    _, hits, _ = client.predict("a black cat sleeping", bike, k=7, min_relevance=0, text_weight=0.5, api_name="/search")
    assert names(hits)[0] == "black_cat.jpg" and len(hits) == 7
    by_image = max(hits, key=lambda h: h["scores"]["image"])
    assert Path(by_image["file"]).name == "red_bicycle.png"
    vector = site["engine"].query_vector("a black cat sleeping", site["photos"] / "red_bicycle.png", 0.5)
    own = image_id(by_image["file"])
    stored = site["engine"].store.image_vectors([own])[own]
    assert by_image["scores"]["image"] == pytest.approx(float(stored @ vector), abs=1e-4)


def test_filters_and_the_relevance_floor(client, site):
    _, hits, _ = client.predict("a plate of spaghetti", k=10, min_relevance=0, folder=str(site["photos"] / "holidays"),
                                api_name="/search")
    assert hits and all("/holidays/" in h["file"] for h in hits)
    _, hits, status = client.predict("boats", k=10, camera=CAMERA, api_name="/search")
    assert names(hits) == ["harbour.jpg"]
    _, hits, _ = client.predict("boats", k=10, date_from="2021-07-14", date_to="2021-07-14", api_name="/search")
    assert names(hits) == ["harbour.jpg"]
    _, hits, status = client.predict("boats", k=10, date_to="1999-12-31", api_name="/search")
    assert hits == [] and status == "No close matches for 'boats'. Set “Relevance at least” to 0 to see the nearest."
    _, hits, status = client.predict("boats", k=10, min_relevance=0, date_to="1999-12-31", api_name="/search")
    assert hits == [] and status == "No results."
    _, everything, _ = client.predict("a sandy beach", k=10, min_relevance=0, api_name="/search")
    _, best, _ = client.predict("a sandy beach", k=10, api_name="/search")
    assert names(best) == ["beach.jpg"] and len(everything) == 7 and best[0]["relevance"] >= 0.5
    assert all(h["relevance"] < 0.5 for h in everything if h["file"] != best[0]["file"])
    _, _, status = client.predict("boats", date_from="14/07/2021", api_name="/search")
    assert status.startswith("⚠️ date '14/07/2021' is not YYYY-MM-DD")


def test_more_like_this_uses_the_stored_vector_and_leaves_the_image_out(client, site):
    bike = str(site["photos"] / "red_bicycle.png")
    _, hits, status = client.predict(bike, k=3, min_relevance=0, api_name="/more_like_this")
    assert status == "3 results like red_bicycle.png" and len(hits) == 3 and "red_bicycle.png" not in names(hits)
    expected = [h.path for h in site["engine"].search_image(bike, k=4)][1:]
    assert [h["file"] for h in hits] == expected
    _, hits, status = client.predict(str(site["base"] / "secret.txt"), api_name="/more_like_this")
    assert hits == [] and status.endswith("secret.txt is not in the index")


def test_stats_endpoint(client, site):
    stats = client.predict(api_name="/stats")
    assert stats["images"] == 7 and stats["roots"] == [str(site["photos"])]


def test_non_image_upload_gets_a_message(client, site):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    fake = site["base"] / "notes.png"
    fake.write_text("this is a text file with an image name")
    with pytest.raises(AppError, match="notes.png is not an image mmsearch can read"):
        client.predict("", handle_file(str(fake)), api_name="/search")


def http(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def test_oversize_upload_refused_with_a_message(site):
    boundary = "mmsearchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + os.urandom(400_000) + f"\r\n--{boundary}--\r\n".encode()
    code, text = http(site["url"] + "gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert code == 413 and "File size exceeded maximum allowed size" in text


@pytest.mark.parametrize("target", ["/etc/passwd", "{photos}/../secret.txt", "{photos}/%2E%2E/secret.txt",
                                    "{base}/db/chroma.sqlite3", "../../etc/passwd"])
def test_files_outside_the_indexed_folders_are_refused(site, target):
    path = target.format(photos=site["photos"], base=site["base"])
    code, _ = http(site["url"] + "gradio_api/file=" + path)
    assert code in (403, 404), (path, code)
    assert "not for the browser" not in http(site["url"] + "gradio_api/file=" + path)[1]


def test_originals_are_served_by_image_id_only_and_thumbnails_from_their_folder(site, client):
    cat = site["photos"] / "black_cat.jpg"
    assert http(site["url"] + "gradio_api/file=" + str(cat))[0] == 403  # no path route to originals at all
    request = urllib.request.Request(site["url"] + "mmsearch/original/" + image_id(str(cat)))
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200 and response.read() == cat.read_bytes()
        assert response.headers["Content-Type"] == "image/jpeg" and response.headers["X-Content-Type-Options"] == "nosniff"
    for forged in (image_id(str(site["base"] / "secret.txt")), "..%2F..%2Fetc%2Fpasswd", "x" * 24):
        assert http(site["url"] + "mmsearch/original/" + forged)[0] == 404
    thumb = ThumbnailCache(site["engine"].config.thumbnail_dir).get(cat)
    assert http(site["url"] + "gradio_api/file=" + urllib.parse.quote(str(thumb)))[0] == 200


def test_index_panel_indexes_a_new_folder_while_searches_go_on(client, site):
    from helpers import save_image

    extra = site["base"] / "extra"
    for i in range(5):
        save_image(extra / f"green_{i}.png", (30, 160 + 10 * i, 40))
    outcome, facts, _, _ = client.predict(str(extra), api_name="/index")
    assert outcome.startswith(f"Indexed `{extra}`: added 5, updated 0") and "**12 images**" in facts
    assert str(extra) in facts
    outcome, *_ = client.predict(str(site["base"] / "nope"), api_name="/index")
    assert outcome.endswith("is not a folder on the server.")


def test_login_required_with_auth(tiny_config, tiny_encoders, tmp_path, photos):
    from gradio_client import Client

    engine = SearchEngine(tmp_path / "db", config=tiny_config, encoders=tiny_encoders)
    engine.index([photos])
    port = free_port()
    demo = launch(engine, port=port, auth=[("ann", "s3cret")], prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert http(url + "config")[0] == 401
        assert http(url + "gradio_api/heartbeat/x")[0] == 401  # Gradio's own route streams to anyone
        assert http(url + "gradio_api/file=" + str(photos / "black_cat.jpg"))[0] in (401, 403)
        with pytest.raises(Exception):  # noqa: B017 - the client refuses to connect without a login
            Client(url, verbose=False)
        _, hits, _ = Client(url, auth=("ann", "s3cret"), verbose=False).predict("a cat", k=2, min_relevance=0, api_name="/search")
        assert len(hits) == 2
    finally:
        demo.close()


def test_run_search_messages(site):
    thumbs = ThumbnailCache(site["engine"].config.thumbnail_dir)
    assert run_search(site["engine"], thumbs, SearchForm()).status == "Type a query (any language) or add an image."
    result = run_search(site["engine"], thumbs, SearchForm(image=str(site["photos"] / "missing.jpg")))
    assert result.items == [] and result.status.startswith("⚠️ cannot read")


def test_hit_details_show_where_when_and_which_camera(site):
    result = run_search(site["engine"], ThumbnailCache(site["engine"].config.thumbnail_dir), SearchForm("harbour boats", k=1))
    details = hit_details(result.hits[0])
    assert "### harbour.jpg" in details and "3000 × 2000 px" in details and CAMERA in details
    assert "2021-07-14 18:30 (taken)" in details and "- fishing boats moored in a harbour" in details


def test_auth_parsing_and_exposure_rules(tmp_path):
    assert parse_auth(None) is None and parse_auth("ann:pw:with:colons") == [("ann", "pw:with:colons")]
    users = tmp_path / "users"
    users.write_text("# users\nann:one\n\nbob:two\n")
    assert parse_auth(str(users)) == [("ann", "one"), ("bob", "two")]
    from mmsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="user:password"):
        parse_auth("no-colon")
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert indexing_allowed("127.0.0.1", None, False) and not indexing_allowed("127.0.0.1", None, True)
    assert not indexing_allowed("0.0.0.0", None, False) and indexing_allowed("0.0.0.0", [("a", "b")], False)


def test_thumbnails_are_made_once_and_renewed_when_the_file_changes(tmp_path):
    from helpers import save_image

    photo = save_image(tmp_path / "p.jpg", (10, 20, 30), size=(2000, 1000))
    cache = ThumbnailCache(tmp_path / "thumbs")
    first = cache.get(photo)
    stamp = first.stat().st_mtime_ns
    assert cache.get(photo) == first and first.stat().st_mtime_ns == stamp
    with Image.open(first) as tile:
        assert tile.size == (384, 192)
    with Image.open(cache.get(photo, "preview")) as large:
        assert large.size == (1280, 640)
    os.utime(photo, ns=(stamp + 10**9, stamp + 10**9))
    assert cache.get(photo) != first
    renewed = cache.get(photo)
    renewed.write_bytes(renewed.read_bytes()[:500])  # damaged on disk: made again, never served half
    with Image.open(cache.get(photo)) as tile:
        tile.load()
        assert tile.size == (384, 192)


def _gradio_event(url: str, trigger: str, elem_id: str, data: list, event_data: dict | None = None) -> dict:
    """Fire one page event as a browser would (queue/join, then read the event stream); the final message."""
    import json
    import uuid

    config = json.loads(http(url + "config")[1])
    component = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    fn_index = next(n for n, dep in enumerate(config["dependencies"])
                    if [component, trigger] in [list(t) for t in dep["targets"]])
    session = uuid.uuid4().hex[:10]
    body = json.dumps({"data": data, "event_data": event_data, "fn_index": fn_index, "trigger_id": component,
                       "session_hash": session}).encode()
    code, _ = http(url + "gradio_api/queue/join", body, {"Content-Type": "application/json"})
    assert code == 200
    with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={session}", timeout=30) as stream:
        for line in stream:
            if line.startswith(b"data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("no process_completed message")


def test_a_forged_gallery_click_cannot_name_a_file(site):
    """The click handler reads the hits the server itself kept for the session, never a hit sent by the client."""
    from helpers import save_image

    secret = save_image(site["base"] / "private" / "secret.png", (1, 2, 3))
    fifo = site["base"] / "private" / "pipe.png"
    os.mkfifo(fifo)
    for path in (secret, fifo):
        forged = [{"file": str(path), "score": 1, "scores": {}, "caption": "", "metadata": {}}]
        message = _gradio_event(site["url"], "select", "gallery", [forged, "a query", True],
                                {"index": 0, "value": None, "selected": True})
        text = str(message["output"])
        assert message["success"] and str(path) not in text and "gradio_api/file=" not in text


@pytest.fixture(scope="module")
def home_site(tmp_path_factory, tiny_config, tiny_encoders):
    """A careless setup: the database inside the indexed folder, beside hidden files, HTML and SVG."""
    home = tmp_path_factory.mktemp("home")
    from helpers import make_photos

    photos = make_photos(home)
    (home / ".git").mkdir()
    (home / ".git" / "config").write_text("[remote] url = secret")
    (home / "page.html").write_text("<script>alert(1)</script>")
    (home / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")
    engine = SearchEngine(home / ".local" / "db", config=tiny_config, encoders=tiny_encoders)
    engine.index([home], captions=photos / "captions.csv")
    with served(engine) as url:
        yield {"url": url, "home": home, "engine": engine, "port": int(url.rstrip("/").rsplit(":", 1)[1])}


@pytest.mark.parametrize("rel", [".local/db/chroma.sqlite3", ".git/config", "captions.csv", "page.html", "logo.svg",
                                 "black_cat.jpg"])
def test_nothing_but_thumbnails_comes_through_the_file_route(home_site, rel):
    code, body = http(home_site["url"] + "gradio_api/file=" + str(home_site["home"] / rel))
    assert code == 403 and "SQLite" not in body and "secret" not in body


def test_a_folder_indexed_from_the_page_can_be_opened_full_size_at_once(home_site):
    from gradio_client import Client

    extra = home_site["home"].parent / f"{home_site['home'].name}-extra"
    save = __import__("helpers").save_image
    save(extra / "late.png", (200, 100, 50))
    Client(home_site["url"], verbose=False).predict(str(extra), api_name="/index")
    code, _ = http(home_site["url"] + "mmsearch/original/" + image_id(str(extra / "late.png")))
    assert code == 200


def test_host_header_must_name_this_server(home_site):
    port = home_site["port"]
    assert http(home_site["url"] + "config", headers={"Host": f"evil.example:{port}"})[0] == 400
    assert http(home_site["url"] + "config", headers={"Host": f"localhost:{port}"})[0] == 200


def test_failed_logins_slow_down_that_client(tiny_config, tiny_encoders, tmp_path, photos, monkeypatch):
    import time

    from mmsearch_web.guard import LoginThrottle

    asked: list[float] = []  # the waits the throttle imposed, login by login (behaviour, not a stopwatch)
    real_delay = LoginThrottle.delay
    monkeypatch.setattr(LoginThrottle, "delay", lambda self, failures: asked.append(real_delay(self, failures)) or asked[-1])
    engine = SearchEngine(tmp_path / "db", config=tiny_config, encoders=tiny_encoders)
    engine.index([photos])
    port = free_port()
    demo = launch(engine, port=port, auth=[("ann", "s3cret")], prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/login"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        times = []
        for _ in range(3):
            start = time.monotonic()
            assert http(url, b"username=ann&password=wrong", form)[0] == 400
            times.append(time.monotonic() - start)
        assert times[1] >= 1.0 and times[2] >= 2.0  # 1 s, then 2 s: guessing gets slower
        assert http(url, b"username=ann&password=s3cret", form)[0] == 200  # the right password still works
        assert asked == [1.0, 2.0, 4.0]  # 1 s, 2 s, then 4 s before the right password
        http(url, b"username=ann&password=wrong", form)
        assert asked == [1.0, 2.0, 4.0]  # a success cleared the delay: the next failure waited for nothing
    finally:
        demo.close()
    assert LoginThrottle(None).delay(10) == 30.0


def test_a_decompression_bomb_upload_gets_a_sentence(site, client):
    import struct
    import zlib

    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = site["base"] / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(AppError, match="too many pixels|exceeds the"):
        client.predict("", handle_file(str(bomb)), api_name="/search")


def test_a_library_with_more_folders_than_the_page_lists_offers_its_largest():
    """At a million photos, listing every folder made each search on the page take seconds: past the limit the
    page lists the folders holding the most photos (the years before the days), still in path order."""
    years = ["/p/2019", "/p/2020"]
    days = [f"{year}/{day:03d}" for year in years for day in range(300)]
    counts = {**dict.fromkeys(years, 300), **{day: 2 if day.endswith("7") else 1 for day in days}}
    facets = {"folders": sorted(years + days), "folder_counts": counts}
    assert [value for _, value in folder_choices(facets, limit=1000)] == sorted(years + days)
    shown = [value for _, value in folder_choices(facets, limit=50)]
    assert len(shown) == 50 and shown == sorted(shown) and set(years) <= set(shown)
    assert all(counts[folder] == 2 for folder in shown if folder not in years)
    assert folder_choices(facets, limit=50)[0] == ("/p/2019 (300)", "/p/2019")
