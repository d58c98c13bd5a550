"""Where a search on the page spends its time: the engine, the page's handler, the API and a browser,
side by side in one run, on real icons (offline profile, k=24, thumbnails already made).

    .venv/bin/python benchmarks/page_bench.py                 # 2,500 icons from /usr/share/icons
    .venv/bin/python benchmarks/page_bench.py --images 10000 --runs 5
    .venv/bin/python benchmarks/page_bench.py --images 100000 --work /tmp/page100k   # kept for the next run

Past the icons there are (about 4,900 here), the library is filled with hard links to them under other
names: each icon then has copies, which the page folds (``collapse``) as it does a camera roll's.

- engine: ``SearchEngine.search`` with the page's arguments (copies folded, no relevance floor).
- handler: ``web.views.run_search`` (the engine, what the query was understood as, tile labels, the
  check that each file is still the one indexed, thumbnail paths).
- API: ``/gradio_api/call/search`` over HTTP, from the POST to the last byte of the event stream (Gradio's
  queue, pre- and post-processing, serialisation); and through ``gradio_client`` without downloading files.
- browser: headless Chromium (Debian's, no download), from pressing Enter to the answer's tiles in place and
  the images of those in the window loaded (images below it load lazily, when scrolled to).

Each figure is the median over ``--runs`` passes of 10 queries. The server runs in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

QUERIES = ["folder", "document", "network", "audio", "user", "calendar", "printer", "edit", "camera", "mail"]
K = 24


def library(folder: Path, n: int) -> Path:
    """``n`` PNG icons in folders of 200, named apart: copied, then hard links to them past the icons there are."""
    src = folder / "icons"
    icons = sorted(Path("/usr/share/icons").rglob("*.png"))
    made: list[Path] = []
    for i in range(n):
        target = src / f"{i // 200:03d}" / f"{i}_{icons[i % len(icons)].name}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            if i < len(icons):
                shutil.copyfile(icons[i], target)
            else:
                os.link(made[i % len(icons)], target)
        if i < len(icons):
            made.append(target)
    return src


def p50(call, runs: int) -> float:
    took = []
    for _ in range(runs):
        for query in QUERIES:
            start = time.perf_counter()
            call(query)
            took.append(time.perf_counter() - start)
    return statistics.median(took) * 1000


def api_call(url: str, query: str) -> bytes:
    body = json.dumps({"data": [query, None, K, 0, 0.5, None, "", "", None, [], [], None, "best match"]}).encode()
    request = urllib.request.Request(url + "gradio_api/call/search", body, {"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(request).read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/search/{event}") as stream:
        return stream.read()


def browser_p50(url: str, runs: int) -> float | None:
    if not shutil.which("/usr/bin/chromium"):
        return None
    from playwright.sync_api import sync_playwright

    took = []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                              args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        box = page.locator("#min-relevance input[type=number]")
        box.fill("0")
        box.press("Enter")
        page.locator("#filters input[type=number]").first.fill(str(K))
        page.locator("#filters input[type=number]").first.press("Enter")
        for _ in range(runs):
            for query in QUERIES:
                page.locator("#query textarea").fill(query)
                start = time.perf_counter()
                page.locator("#query textarea").press("Enter")
                page.wait_for_function(  # this query's answer, its images in the window loaded
                    "(q) => { const s = document.querySelector('#status'); const m = /^(\\d+) results?/.exec("
                    "s ? s.innerText : ''); const imgs = [...document.querySelectorAll('#gallery img')];"
                    " if (!m || window.__seen === q + s.innerText) return false;"
                    " const seen = imgs.filter(i => i.getBoundingClientRect().top < innerHeight);"
                    " const ready = imgs.length === +m[1] && seen.every(i => i.complete && i.naturalWidth > 0);"
                    " if (ready) window.__seen = q + s.innerText; return ready; }", arg=query, timeout=30_000)
                took.append(time.perf_counter() - start)
        chromium.close()
    return statistics.median(took) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", help="folder for the library and its index, kept and reused (default: a temporary one)")
    args = parser.parse_args()
    from gradio_client import Client
    from helpers import served
    from mmsearch_web.views import SearchForm, run_search

    from mmsearch import Config, SearchEngine
    from mmsearch.media.thumbnails import ThumbnailCache

    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work or scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        engine = SearchEngine(config=Config.offline_profile(Config(db=f"{tmp}/db")))
        started = time.perf_counter()
        print(engine.index([library(Path(tmp), args.images)], progress=True).summary(),
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        thumbs = ThumbnailCache(engine.config.thumbnail_dir)
        form = lambda q: SearchForm(q, k=K, min_relevance=0)  # noqa: E731
        for query in QUERIES:  # thumbnails made, models warm
            run_search(engine, thumbs, form(query))
        rows = {"engine.search": p50(lambda q: engine.search(q, k=K, min_relevance=None, collapse=True), args.runs),
                "views.run_search": p50(lambda q: run_search(engine, thumbs, form(q)), args.runs)}
        with served(engine) as url:
            api_call(url, "warm up")
            rows["API, HTTP"] = p50(lambda q: api_call(url, q), args.runs)
            client = Client(url, verbose=False, download_files=False)
            rows["API, gradio_client"] = p50(lambda q: client.predict(q, k=K, min_relevance=0, api_name="/search"),
                                             args.runs)
            shown = browser_p50(url, args.runs)
            if shown is not None:
                rows["browser, Enter to images"] = shown
        print(f"{engine.store.count()} images, k={K}, p50 of {args.runs * len(QUERIES)} searches")
        base = rows["engine.search"]
        for name, value in rows.items():
            print(f"  {name:<26} {value:8.1f} ms  {value / base:5.1f}x engine")


if __name__ == "__main__":
    main()
