"""Filtered searches end to end (``SearchEngine``), the filter evaluated by Chroma or in memory, side by side in
one process, on an index ``million_bench.py`` filled:

- ``chroma``: the planned query served with ``kept=None``, as before 2026-12-07: each filtered read (the
  images', captions' and text queries, the vectors of the keyword finds) has Chroma evaluate the filter;
- ``read``: the filter evaluated once in the keyword index (``mmsearch.search.selection``, its time shown as
  ``select``), the reads handed the kept ids, and the kept images' vectors read from Chroma by id (or
  searched there among the listed ids), as from 2026-12-07 (f73af43);
- ``rows``: as ``search`` serves it now: the same, with the kept images and captions scored from the keyword
  index's own copy of their vectors (``KeywordIndex.vectors``, ``caption_vectors``), as are the other finds'
  vectors (``same``: the hits of ``read`` and ``rows`` agree, scores within 2e-6);
- ``browse``: a query of filters only ("2019"), newest first: every record the filter keeps read from Chroma
  (``store.find``), against the kept images put in date order in memory and the first ``k`` read.

The two ways of a text search need not give the same hits: the keyword, lexical and text-in-photo finds now
rank among the images the filter keeps, where before they ranked the whole library and the filter dropped what
was outside it (a folder's own matches crowded out). The run shows how many of the ten hits have a keyword score
each way, and checks every hit of the new way against Chroma's own evaluation of the filter (``in``). A
filter-only query must give the same list both ways (``same``).

    .venv/bin/python benchmarks/filtered_search_bench.py --db /tmp/m200             # all three ways
    .venv/bin/python benchmarks/filtered_search_bench.py --db /tmp/m200 --no-chroma # read and rows only

Measured at 200,000 and 500,000 images (2026-12-07, 2-core AMD EPYC family 25 model 17, nothing else running),
one run each, medians of 3 texts, k 10: see the README's "Filters evaluated in memory".
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import mmsearch  # noqa: E402, F401, I001  first, before numpy: it sets OpenBLAS's thread timeout
from host import machine  # noqa: E402

YEAR = 31_536_000
FIRST = 1_420_070_400  # million_bench's first date (2015-01-01); image i is of year 2015 + i % 10
TEXTS = ["a cat on day 3", "the sea on day 40", "a red car on day 200"]
MEMORY = ("nearest", "caption_nearest", "vectors_of", "captions_of")  # ``Kept``'s reads of the keyword index's vectors


def filters() -> dict[str, dict[str, Any]]:
    """``search`` filters over million_bench's records, from a folder of 25 photos to every photo."""
    y2019 = FIRST + 4 * YEAR
    return {"a folder of 25": {"folder": "/home/me/Pictures/2019/00009"},
            "a month (date range)": {"date_from": datetime.fromtimestamp(y2019),
                                     "date_to": datetime.fromtimestamp(y2019 + 2_600_000)},
            "a year's folder": {"folder": "/home/me/Pictures/2019"},
            "every photo": {"folder": "/home/me/Pictures"},
            "a camera never seen": {"camera": "no such camera"}}


def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


class Timings:
    """Seconds of each text's search each way, of its ``select``; the hits with a keyword score (chroma/rows);
    whether Chroma's evaluation of the filter keeps every hit of the new way; whether ``read`` and ``rows`` agree."""

    def __init__(self) -> None:
        self.ways: dict[str, list[float]] = {"chroma": [], "read": [], "rows": []}
        self.selecting: list[float] = []
        self.scored, self.inside, self.same = [0, 0], True, True


def searches(engine: Any, wanted: dict[str, Any], chroma: bool) -> Timings:
    """Each text searched every way (``chroma`` or not) under these filters."""
    from mmsearch.ids import image_id
    from mmsearch.search import selection
    from mmsearch.search.planner import selected

    where, out = filtered(engine, wanted), Timings()
    for text in TEXTS:
        query = engine.plan(text, k=10, **wanted)
        if chroma:
            seconds, old = timed(lambda q=query: engine.serve(dataclasses.replace(q, where=where, kept=None)))
            out.ways["chroma"].append(seconds)
            out.scored[0] += sum(1 for h in old if h.scores.get("keyword"))
        out.selecting.append(timed(lambda: selected(engine.session, where))[0])
        memory = {name: getattr(selection.Kept, name) for name in MEMORY}
        for name in MEMORY:  # the kept records' vectors read from Chroma, as before
            setattr(selection.Kept, name, lambda self, *args: None)
        try:
            seconds, read = timed(lambda q=query: engine.serve(q))
        finally:
            for name, method in memory.items():
                setattr(selection.Kept, name, method)
        out.ways["read"].append(seconds + out.selecting[-1])
        seconds, new = timed(lambda q=query: engine.serve(q))
        out.ways["rows"].append(seconds + out.selecting[-1])
        out.scored[1] += sum(1 for h in new if h.scores.get("keyword"))
        ids = [image_id(h.path) for h in new]
        out.inside &= len(engine.store.image_records(ids, where)) == len(ids)
        out.same &= [h.path for h in read] == [h.path for h in new] and all(
            abs((a.scores.get(s) or 0) - (b.scores.get(s) or 0)) <= 2e-6 for a, b in zip(read, new) for s in a.scores)
    return out


def filtered(engine: Any, wanted: dict[str, Any]) -> dict:
    """The ``where`` of these filters, as Chroma evaluates it."""
    from mmsearch.search.filters import build_where

    return build_where(roots=engine.store.roots(), **wanted)  # type: ignore[return-value]


def browsing(engine: Any, wanted: dict[str, Any], k: int) -> tuple[float, float, bool]:
    """Seconds of a filter-only query read from Chroma and listed from memory, and whether both agree."""
    from mmsearch.search.ranking import browse

    where = filtered(engine, wanted)
    old_s, old = timed(lambda: browse(engine.store, where, None, (), k, "date"))
    new_s, new = timed(lambda: browse(engine.store, where, None, (), k, "date", engine.keyword_index()))
    return old_s, new_s, [h.path for h in old] == [h.path for h in new]


def resident() -> str:
    """This process's resident memory: all of it, and of it the pages mapped from files (the keyword index's
    vector bases among them: the page cache's, given back under memory pressure)."""
    with open("/proc/self/status") as status:
        gb = {k: int(v.split()[0]) / 2**20 for k, v in (line.split(":", 1) for line in status)
              if k.startswith(("VmRSS", "Rss"))}
    return (f"RSS {gb['VmRSS']:.2f} GiB (anonymous {gb['RssAnon']:.2f}, files {gb['RssFile']:.2f}, "
            f"shared {gb['RssShmem']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="/tmp/m200", help="an index million_bench.py filled")
    parser.add_argument("--k", type=int, default=50, help="hits of a filter-only query")
    parser.add_argument("--no-chroma", action="store_true", help="leave out the way of Chroma evaluating filters")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mmsearch-bench"))
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from index_bench import checkpoint
    from million_bench import model_settings
    from store_bench import multilingual_shaped_text_model

    from mmsearch import SearchEngine

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    engine = SearchEngine(args.db, **model_settings(str(checkpoint(workdir)), multilingual_shaped_text_model(workdir)))
    seconds, index = timed(engine.keyword_index)
    print(f"{engine.store.count():,} images in {args.db}, {machine()}; keyword index {seconds:.1f} s; {resident()}")
    engine.search(TEXTS[0], k=10)  # the models and the vector index loaded
    print(f"unfiltered: {statistics.median(timed(lambda t=t: engine.search(t, k=10))[0] for t in TEXTS) * 1000:.0f} ms; "
          f"{resident()}")
    print(f"{'filter':22} {'kept':>9} {'chroma':>10} {'read':>10} {'rows':>10} {'select':>8}  keyword  in   same  "
          f"{'browse: chroma':>14} {'memory':>8}  same")
    from mmsearch.search.selection import select

    for name, wanted in filters().items():
        kept = select(index, filtered(engine, wanted))
        got = searches(engine, wanted, not args.no_chroma)
        old_s, new_s, agree = browsing(engine, wanted, args.k) if not args.no_chroma else (0.0, 0.0, True)
        ms = lambda values: f"{statistics.median(values) * 1000:8.0f}ms" if values else f"{'-':>10}"  # noqa: E731
        count = f"{len(kept.rows):,}" if kept else "?"
        yes = lambda flag: "yes" if flag else "NO"  # noqa: E731
        print(f"{name:22} {count:>9} {ms(got.ways['chroma'])} {ms(got.ways['read'])} {ms(got.ways['rows'])} "
              f"{ms(got.selecting)[2:]}  {got.scored[0]:>3}/{got.scored[1]:<3}  {yes(got.inside):4} {yes(got.same):4}  "
              f"{old_s * 1000:12.0f}ms {new_s * 1000:6.0f}ms  {yes(agree)}", flush=True)
    print(resident())


if __name__ == "__main__":
    main()
