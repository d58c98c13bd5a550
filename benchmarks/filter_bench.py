"""Filtered vector queries at scale: how long does the images' query take under a filter, by how many images
the filter keeps? Five ways side by side in one run, on an index ``million_bench.py`` filled (its paths and
dates), in embedded Chroma:

- ``chroma``: ``query(where=...)``, as ``Store.query_images`` asked before 2026-12-07 (Chroma evaluates the
  filter, then searches its HNSW graph for the images that pass);
- ``store``: ``Store.query_images`` as it asks now (``Store._query``: the kept ids listed first, then few of
  many scored exactly, the rest searched among the listed ids);
- ``listed``: ``get(where=..., include=[])``, the filter alone (the ids it keeps);
- ``ids``: ``query(ids=...)`` over those ids, as if the filter had been evaluated elsewhere;
- ``exact``: those ids' vectors read by id and scored in numpy (only where the filter keeps at most
  ``--exact-max`` images), which is also the truth that recall@k is measured against.

    .venv/bin/python benchmarks/filter_bench.py --db /tmp/m1m          # ~5 min at a million, 2 cores

Measured at a million (2026-12-07, 2-core AMD EPYC, AVX2, nothing else running), one run, medians of 3
queries, against 19 ms unfiltered:

| filter | kept | chroma | store | listed | ids | exact |
|---|---|---|---|---|---|---|
| a folder of 25 | 25 | 9,024 ms | **155 ms** | 151 ms | 8,724 ms | 3 ms |
| a month (a date range) | 9,000 | 8,646 ms | 8,482 ms | 9,850 ms | 722 ms | 577 ms |
| a year's folder | 100,000 | 1,332 ms | 1,321 ms | 1,348 ms | 220 ms | |
| every photo | 1,000,000 | 10,799 ms | 11,167 ms | 10,342 ms | 1,085 ms | |
| a camera never seen | 0 | 171 ms | 166 ms | 179 ms | | |

recall@50 was 1.000 for every way where the exact truth was computed.

Two costs: Chroma evaluates a filter by materialising every image that passes (a range on a number by
scanning), and its graph search under a filter that keeps few images walks most of the graph before k pass.
Listing first removes the second. The first is gone from searches since filters are evaluated in the keyword
index (``mmsearch.search.selection``; ``filtered_search_bench.py`` measures searches end to end, both ways).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmsearch import Config  # noqa: E402
from mmsearch.store.client import Store  # noqa: E402

YEAR = 31_536_000
FIRST = 1_420_070_400  # million_bench's first date (2015-01-01); image i is of year 2015 + i % 10


def filters() -> dict[str, dict[str, Any]]:
    """Filters over million_bench's records, from a folder of 25 photos to every photo."""
    y2019 = FIRST + 4 * YEAR
    return {"a folder of 25": {"folders": {"$contains": "/home/me/Pictures/2019/00009"}},
            "a month (date range)": {"$and": [{"date": {"$gte": y2019}}, {"date": {"$lt": y2019 + 2_600_000}}]},
            "a year's folder": {"folders": {"$contains": "/home/me/Pictures/2019"}},
            "every photo": {"folders": {"$contains": "/home/me/Pictures"}},
            "a camera never seen": {"camera": "no such camera"}}


def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def exact(collection: Any, ids: list[str], vector: np.ndarray, k: int) -> list[str]:
    """The ``k`` ids whose vectors are nearest ``vector`` (cosine), read by id a page at a time."""
    found, scores = [], []
    for start in range(0, len(ids), 5000):
        got = collection.get(ids=ids[start:start + 5000], include=["embeddings"])
        found.extend(got["ids"])
        matrix = np.asarray(got["embeddings"], dtype=np.float32)
        scores.append(matrix @ vector / np.maximum(np.linalg.norm(matrix, axis=1), 1e-12))
    if not found:
        return []
    order = np.argsort(-np.concatenate(scores))[:k]
    return [found[n] for n in order.tolist()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="/tmp/m1m", help="an index million_bench.py filled")
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--exact-max", type=int, default=20_000)
    args = parser.parse_args()
    store = Store.from_config(Config(db=args.db))
    print(f"{store.count():,} images in {args.db}")
    images = store.client.get_collection(store.name("images"), embedding_function=None)
    rng = np.random.default_rng(0)
    vectors = [v / np.linalg.norm(v) for v in rng.standard_normal((args.queries, 512)).astype(np.float32)]
    plain = statistics.median(timed(lambda v=v: store.query_images(v, args.k, None))[0] for v in vectors)
    print(f"unfiltered: {plain * 1000:.0f} ms")
    print(f"{'filter':24} {'kept':>9} {'chroma':>9} {'store':>9} {'listed':>9} {'ids':>9} {'exact':>9}  "
          f"recall@{args.k} chroma / store / ids")
    for name, where in filters().items():
        listed, got = timed(lambda w=where: images.get(where=w, include=[]))
        ids = got["ids"]
        rows: dict[str, list[float]] = {"chroma": [], "store": [], "ids": [], "exact": []}
        recall: dict[str, list[float]] = {"chroma": [], "store": [], "ids": []}
        for vector in vectors:
            seconds, result = timed(lambda v=vector, w=where: images.query(query_embeddings=[v], where=w,
                                                                           n_results=args.k, include=["distances"]))
            rows["chroma"].append(seconds)
            raw = result["ids"][0]
            seconds, hits = timed(lambda v=vector, w=where: store.query_images(v, args.k, w))
            rows["store"].append(seconds)
            by_ids = []
            if ids:
                seconds, result = timed(lambda v=vector, kept=ids: images.query(query_embeddings=[v], ids=kept,
                                                                      n_results=args.k, include=["distances"]))
                rows["ids"].append(seconds)
                by_ids = result["ids"][0]
            if len(ids) <= args.exact_max:
                seconds, truth = timed(lambda v=vector, kept=ids: exact(images, kept, v, args.k))
                rows["exact"].append(seconds)
                if truth:
                    for way, got in (("chroma", raw), ("store", hits), ("ids", by_ids)):
                        recall[way].append(len(set(got) & set(truth)) / len(truth))
        cells = [f"{statistics.median(v) * 1000:8.0f}ms" if v else f"{'-':>10}" for v in rows.values()]
        shown = " / ".join(f"{statistics.mean(v):.3f}" for v in recall.values()) if recall["store"] else "-"
        print(f"{name:24} {len(ids):>9,} {cells[0]} {cells[1]} {listed * 1000:8.0f}ms {cells[2]} {cells[3]}  {shown}",
              flush=True)


if __name__ == "__main__":
    main()
