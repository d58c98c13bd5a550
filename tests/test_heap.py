"""``mmsearch.heap.trim`` gives the C heap's free holes back to the system, and a keyword build from every
record ends with it."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A child process, so that this process's heap is not the one measured: it fills 300 MB of 4 KiB blocks (above
# pymalloc's size, so glibc's), frees all but every 16th (whose blocks pin the heap's top), and prints its
# resident anonymous memory before and after ``trim``.
FRAGMENTED = """
from mmsearch import heap
def anon():
    return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("RssAnon"))) * 1024
blocks = [bytes(4096) for _ in range(75_000)]
kept = blocks[::16]
del blocks
before = anon()
trimmed = heap.trim()
print(trimmed, before, anon())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_trim_gives_the_free_holes_between_live_blocks_back():
    out = subprocess.run([sys.executable, "-c", FRAGMENTED], capture_output=True, text=True, check=True).stdout
    trimmed, before, after = out.split()
    if trimmed != "True":
        pytest.skip("not glibc: no malloc_trim")
    assert int(before) - int(after) > 200 * 2**20  # of the ~280 MB freed, held until the trim


def test_a_keyword_build_from_every_record_ends_with_a_trim(tmp_path, monkeypatch):
    from PIL import Image

    import mmsearch.session as session
    from mmsearch import Config, SearchEngine

    for n in range(3):
        Image.new("RGB", (64, 48), (80 * n, 10, 10)).save(tmp_path / f"p{n}.jpg")
    config = Config.offline_profile(Config(db=str(tmp_path / "db")))
    SearchEngine(config=config).index([tmp_path])
    trims: list[int] = []
    monkeypatch.setattr(session, "trim", lambda: trims.append(1) or True)
    SearchEngine(config=config).session.keyword_index()  # a new process reads keywords.npz
    assert trims == []
    engine = SearchEngine(config=config)
    engine.session.keywords_path().unlink()
    assert len(engine.session.keyword_index()) == 3 and trims == [1]
