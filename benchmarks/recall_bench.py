"""recall@10 and query time of the images' HNSW index for several ``ef_search`` values, each measured in a
fresh process, on an index that ``million_bench.py`` filled (a benchmark, not a test).

    nice .venv/bin/python benchmarks/million_bench.py --n 400000 --db /tmp/m400k --fill-only
    .venv/bin/python benchmarks/recall_bench.py --db /tmp/m400k --ef 256,384,512

Chroma reads a collection's ``ef_search`` when a process loads its HNSW index, so changing it on an open
collection changes nothing in that process: each value is set on the collection, then a new process loads the
index and answers the queries. The exact top 10 is computed from the vectors themselves, made again from the
fill's seeds (reading 653k vectors back from Chroma took 288 s), so every process answers the same queries
against the same truth. The collection's own value is set back at the end.

A query counts the exact top 10's ids that the index returned; ``tied`` also counts a returned id whose cosine
is within 1e-6 of the exact 10th (a tie the exact search happened to break the other way).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import mmsearch  # noqa: E402, F401, I001  first, before numpy: it sets OpenBLAS's thread timeout
import numpy as np  # noqa: E402

K = 10


def queries(n: int) -> np.ndarray:
    """The queries million_bench measures recall with (same seed), and more of them when asked."""
    from million_bench import basis
    from store_bench import embedding_like

    return embedding_like(n, np.random.default_rng(5), basis())


def exact(count: int, asked: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
    """The exact top ``K`` ids of each query over images 0..count as million_bench filled them, and the
    cosine of each query's ``K``-th."""
    from million_bench import BATCH, basis, batch_paths
    from store_bench import embedding_like

    from mmsearch.ids import image_id

    best_scores = np.full((len(asked), K), -np.inf, dtype=np.float32)
    best_index = np.zeros((len(asked), K), dtype=np.int64)
    for lo in range(0, count, BATCH):
        vectors = embedding_like(min(count, lo + BATCH) - lo, np.random.default_rng((1, lo)), basis())
        scores = np.concatenate([best_scores, asked @ vectors.T], axis=1)
        index = np.concatenate([best_index, np.broadcast_to(np.arange(lo, lo + len(vectors)), (len(asked), len(vectors)))],
                               axis=1)
        keep = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        best_scores, best_index = np.take_along_axis(scores, keep, 1), np.take_along_axis(index, keep, 1)
    ids = [[image_id(path) for path in batch_paths(row)] for row in best_index]
    return ids, best_scores.min(axis=1)


def set_ef(store, ef: int) -> int:
    """Set the images collection's ef_search; returns the value it had."""
    from mmsearch.store.collections import set_search_settings

    collection = store.client.get_collection(store.name("images"), embedding_function=None)
    had = int(((collection.configuration or {}).get("hnsw") or {}).get("ef_search", 0))
    set_search_settings(collection, {"ef_search": ef})
    return had


def probe(db: str, n: int, workdir: str = "") -> dict:
    """In a fresh process: load the index, answer the queries; the ids, cosines and milliseconds of each."""
    from mmsearch.store.client import Store

    store, asked = Store(db), queries(n)
    store.count()  # opens the collections
    store.query_images(asked[0], K, None)  # loads the HNSW index
    out: dict = {"ids": [], "ms": [], "ef": store.client.get_collection(store.name("images")).configuration["hnsw"]["ef_search"]}
    for q in asked:
        start = time.perf_counter()
        out["ids"].append(list(store.query_images(q, K, None)))
        out["ms"].append((time.perf_counter() - start) * 1000)
    vectors = store.image_vectors(sorted({i for row in out["ids"] for i in row}))
    out["cos"] = [[float(vectors[i] @ q) for i in row] for row, q in zip(out["ids"], asked)]
    if workdir:
        out["p50"], out["p99"] = end_to_end(db, workdir, n)
    return out


def end_to_end(db: str, workdir: str, n: int) -> tuple[float, float]:
    """Warm text queries through ``SearchEngine.search``, k=10, as million_bench measures them."""
    from index_bench import checkpoint
    from million_bench import WORDS, model_settings
    from store_bench import latency, multilingual_shaped_text_model

    from mmsearch import SearchEngine

    folder = Path(workdir)
    engine = SearchEngine(db, **model_settings(str(checkpoint(folder)), multilingual_shaped_text_model(folder)))
    return latency(engine, [f"{WORDS[i % len(WORDS)]} on day {i % 365}" for i in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="an index million_bench.py filled (--fill-only)")
    parser.add_argument("--ef", default="256,384,512", help="ef_search values, comma-separated")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", default="", help="million_bench's --workdir: also time warm text queries "
                        "end to end (SearchEngine.search, its stand-in models)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: one value, in a fresh process
    args = parser.parse_args()
    if args.probe:
        os.environ["HF_HUB_OFFLINE"] = "1"
        print(json.dumps(probe(args.probe, args.queries, args.workdir)))
        return
    from mmsearch.store.client import Store

    store = Store(args.db)
    count = store.count()
    start = time.perf_counter()
    truth, tenth = exact(count, queries(args.queries))
    print(f"{count:,} images; exact top {K} of {args.queries} queries in {time.perf_counter() - start:.1f} s")
    values, had = [int(v) for v in args.ef.split(",")], None
    try:
        for ef in values:
            previous = set_ef(store, ef)
            had = previous if had is None else had
            got = json.loads(subprocess.run([sys.executable, __file__, "--db", args.db, "--probe", args.db,
                                             "--queries", str(args.queries), "--workdir", args.workdir],
                                            check=True, capture_output=True,
                                            text=True).stdout.strip().splitlines()[-1])
            hits = sum(len(set(row) & set(want)) for row, want in zip(got["ids"], truth))
            tied = sum(sum(1 for i, c in zip(row, cos) if i in want or c >= floor - 1e-6)
                       for row, cos, want, floor in zip(got["ids"], got["cos"], truth, tenth))
            ms = np.asarray(got["ms"])
            print(f"  ef_search {ef} (loaded as {got['ef']}): recall@{K} {hits / (K * len(truth)):.4f}, "
                  f"with ties {tied / (K * len(truth)):.4f}; query p50 {np.percentile(ms, 50):.1f} ms, "
                  f"p99 {np.percentile(ms, 99):.1f} ms" + (f"; text query end to end p50 {got['p50']:.1f} ms, p99 "
                                                          f"{got['p99']:.1f} ms" if "p50" in got else ""))
    finally:
        if had is not None:
            set_ef(store, had)


if __name__ == "__main__":
    main()
