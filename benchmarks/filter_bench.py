"""Filtered vector queries at scale: how long does the images' query take under a filter, by how many images
the filter keeps? Four ways side by side in one run, on an index ``million_bench.py`` filled (its paths and
dates), in embedded Chroma:

- ``where``: ``query(where=...)``, as ``Store.query_images`` asks today (Chroma evaluates the filter, then
  searches its HNSW graph for the images that pass);
- ``listed``: ``get(where=..., include=[])``, the filter alone (the ids it keeps);
- ``ids``: ``query(ids=...)`` over those ids, as if the filter had been evaluated elsewhere (in memory);
- ``exact``: those ids' vectors read by id and scored in numpy (only where the filter keeps at most
  ``--exact-max`` images), which is also the truth that recall@k is measured against.

    .venv/bin/python benchmarks/filter_bench.py --db /tmp/m1m          # ~5 min at a million, 2 cores

Measured at a million (2026-12-07, 2-core AMD EPYC, AVX2, nothing else running), medians of 3 queries, against
19 ms unfiltered:

| filter | kept | where | listed | ids | exact |
|---|---|---|---|---|---|
| a folder of 25 | 25 | 8,862 ms | 140 ms | 8,736 ms | 3 ms |
| a month (a date range) | 9,000 | 7,930 ms | 7,845 ms | 729 ms | 564 ms |
| a year's folder | 100,000 | 1,211 ms | 1,101 ms | 232 ms | |
| every photo | 1,000,000 | 10,212 ms | 9,754 ms | 1,157 ms | |
| a camera never seen | 0 | 155 ms | 140 ms | | |

Two costs: Chroma evaluates a filter by materialising every image that passes (a range on a number by
scanning), and its graph search under a filter that keeps few images walks most of the graph before k pass.
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
    print(f"{'filter':32} {'kept':>9} {'where':>9} {'listed':>9} {'ids':>9} {'exact':>9}  recall@{args.k} where / ids")
    for name, where in filters().items():
        listed, got = timed(lambda w=where: images.get(where=w, include=[]))
        ids = got["ids"]
        rows: dict[str, list[float]] = {"where": [], "ids": [], "exact": []}
        recall: dict[str, list[float]] = {"where": [], "ids": []}
        for vector in vectors:
            seconds, hits = timed(lambda v=vector, w=where: store.query_images(v, args.k, w))
            rows["where"].append(seconds)
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
                    recall["where"].append(len(set(hits) & set(truth)) / len(truth))
                    recall["ids"].append(len(set(by_ids) & set(truth)) / len(truth))
        cells = [f"{statistics.median(v) * 1000:8.0f}ms" if v else f"{'-':>10}" for v in rows.values()]
        shown = " / ".join(f"{statistics.mean(v):.3f}" for v in recall.values()) if recall["where"] else "-"
        print(f"{name:32} {len(ids):>9,} {cells[0]} {listed * 1000:8.0f}ms {cells[1]} {cells[2]}  {shown}", flush=True)


if __name__ == "__main__":
    main()
