"""How fast a watched folder's new photo becomes searchable, and what watching costs when nothing happens.

    .venv/bin/python benchmarks/watch_bench.py               # 20 photos, 100k files under watch
    .venv/bin/python benchmarks/watch_bench.py --files 20000

- Latency: 20 photos, one at a time, each written beside the folder and renamed in (as a sync client
  finishes a file); the time from the rename to the end of the run that indexed it (offline profile).
  The watcher waits ``QUIET`` (1 s) for a burst to end and ``SETTLE`` (1 s) for a file to stop changing.
- Idle: the watcher over N empty files in 100 folders for 10 s with nothing changing: its process's CPU
  seconds in that time and its resident memory (VmRSS) before and after the watch started.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from memory_bench import rss_mb  # noqa: E402


def latency(folder: Path) -> list[float]:
    from helpers import scene_picture

    from mmsearch import Config, SearchEngine

    library = folder / "library"
    library.mkdir()
    scene_picture(0, (96, 72)).save(library / "seed.jpg")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(folder / "db"))))
    engine.index([library])
    done = threading.Condition()
    runs: list[float] = []

    def on_run(report: object) -> None:
        with done:
            runs.append(time.monotonic())
            done.notify_all()

    watcher = engine.watcher([library], on_run=on_run)
    stop = threading.Event()
    threading.Thread(target=watcher.run, args=(stop,), daemon=True).start()
    while watcher.status.state != "watching":
        time.sleep(0.01)
    took = []
    for n in range(20):
        scene_picture(n + 1, (96, 72)).save(folder / f"new{n}.jpg")
        before = len(runs)
        start = time.monotonic()
        os.rename(folder / f"new{n}.jpg", library / f"new{n}.jpg")
        with done:
            done.wait_for(lambda before=before, n=n: len(runs) > before and engine.store.count() == n + 2, 60)
        took.append(runs[-1] - start)
    stop.set()
    return took


def idle(folder: Path, files: int) -> tuple[float, float, float]:
    from mmsearch.ingest.watch import LibraryWatcher
    from mmsearch.records import IndexReport

    root = folder / "many"
    for n in range(files):
        sub = root / f"d{n % 100:02d}"
        if n < 100:
            sub.mkdir(parents=True)
        (sub / f"f{n:06d}.jpg").touch()
    before = rss_mb()
    watcher = LibraryWatcher(lambda folders: IndexReport(), [str(root)])
    stop = threading.Event()
    threading.Thread(target=watcher.run, args=(stop,), daemon=True).start()
    while watcher.status.state != "watching":
        time.sleep(0.01)
    time.sleep(1.0)  # settled into watching
    cpu = time.process_time()
    time.sleep(10.0)  # nothing changes: what does waiting cost?
    used = time.process_time() - cpu
    after = rss_mb()
    stop.set()
    return used, before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000, help="files under watch for the idle measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        took = latency(Path(tmp))
        print(f"close -> searchable, 20 photos: median {statistics.median(took):.2f} s, worst {max(took):.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        used, before, after = idle(Path(tmp), args.files)
        print(f"idle with {args.files:,} files under watch: {used:.3f} CPU s in 10 s ({used / 10 * 100:.2f} % of a core), "
              f"RSS {before:.0f} MB -> {after:.0f} MB")


if __name__ == "__main__":
    main()
