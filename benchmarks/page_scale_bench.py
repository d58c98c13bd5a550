"""The web page on a large index, in headless Chromium: how long the page takes to open, a text query to show
its answer, and the folder filter (the library's largest folders: ``web.app.FOLDER_CHOICES``) to open and
narrow as one types; screenshots at 1280 and 390 px (a benchmark, not a test). Warm query latency is
million_bench's (the engine, end to end).

    .venv/bin/python benchmarks/page_scale_bench.py --db /tmp/m1m --workdir /tmp/mb --shots /tmp/page

The index is one ``million_bench.py`` filled, served by ``mmsearch serve`` in its own process with the
benchmark's stand-in models. Its photos do not exist on this disk: the page checks its hits' files and says
"No results" (with how many indexed files are gone), after doing the whole search. The folder filter lists only
folders that exist, so their folders are made for the run (empty) and removed after it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu"]
TIMEOUT = 120_000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(db: str, workdir: Path, port: int) -> subprocess.Popen:
    """``mmsearch serve`` on ``db``, once it answers."""
    from index_bench import checkpoint
    from store_bench import model_env, multilingual_shaped_text_model

    env = {**os.environ, "HF_HUB_OFFLINE": "1", **model_env(str(checkpoint(workdir)), multilingual_shaped_text_model(workdir))}
    server = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--db", db, "--port", str(port), "--read-only"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in server.stdout:  # the server says when it listens
        if f"127.0.0.1:{port}" in line:
            return server
    raise RuntimeError("mmsearch serve ended before it listened")


def make_folders(count: int) -> list[Path]:
    """The folders of million_bench's first ``count`` images that are not on this disk, made (empty)."""
    from million_bench import path_of

    wanted = {Path(path_of(i)).parent for i in range(count)}
    made = sorted({p for folder in wanted for p in (folder, *folder.parents) if not p.exists()}, key=lambda p: len(p.parts))
    for folder in made:
        folder.mkdir()
    return made


def timed(step: str, call) -> None:
    begin = time.perf_counter()
    call()
    print(f"  {step}: {time.perf_counter() - begin:.2f} s")


def visit(browser, port: int, width: int, shots: Path) -> None:
    """One visit of the page at ``width`` px: open it, query, open and narrow the folder filter, query with it."""
    print(f"{width} px:")
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    box, options = page.locator("#folder-filter input"), page.locator("#folder-filter ul.option-list li")

    def query(text: str) -> None:
        """Until the status line has the answer (here "No results": the indexed files are not on this disk,
        which the page checks for its hits after the search)."""
        page.locator("#query textarea").fill(text)
        busy = "/processing|^[0-9.]+s/.test(document.querySelector('#status').innerText.trim())"
        page.locator("#search-button").click()
        page.wait_for_function(f"() => {busy}")  # Gradio shows the query running (a timer) from the click on ...
        page.wait_for_function(f"() => !{busy}")  # ... until its answer replaces it
        print(f"    status: {page.locator('#status').inner_text().strip()[:100]}")

    timed("page open", lambda: (page.goto(f"http://127.0.0.1:{port}"), page.locator("#query textarea").wait_for()))
    timed("a text query to its answer (the first of a visit)", lambda: query("a cat on day 3"))
    page.screenshot(path=str(shots / f"results-{width}.png"))
    if not box.is_visible():  # a narrow screen: the filters start folded
        page.get_by_text("Results and filters").click()
    timed("folder filter opened", lambda: (box.click(), options.first.wait_for()))
    print(f"  folder entries rendered: {options.count():,}")
    typed = "Pictures/2019"  # a year's folder: among the largest, which the page lists
    box.press_sequentially(typed, delay=50)  # as a person types (Gradio filters on key events)
    timed(f"the list narrowed after typing '{typed}'", lambda: page.wait_for_function(
        "([typed]) => { const o = document.querySelectorAll('#folder-filter ul.option-list li');"
        " return o.length > 0 && [...o].every(e => e.innerText.includes(typed)); }", arg=[typed]))
    print(f"  folder entries shown after typing: {options.count():,}")
    page.screenshot(path=str(shots / f"folders-{width}.png"))
    options.first.click()  # picking a folder runs the query again, filtered (not timed: the page chains events)
    page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--workdir", required=True, help="million_bench's --workdir (its stand-in models)")
    parser.add_argument("--shots", default="page-shots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    shots, port = Path(args.shots), free_port()
    shots.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from mmsearch.store.client import Store

    made = make_folders(Store(args.db).count())
    print(f"{len(made):,} folders made for the run")
    begin = time.perf_counter()
    server = start(args.db, Path(args.workdir), port)
    print(f"  mmsearch serve listening: {time.perf_counter() - begin:.1f} s")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            for width in (1280, 390):
                visit(browser, port, width, shots)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
        for folder in reversed(made):
            folder.rmdir()


if __name__ == "__main__":
    main()
