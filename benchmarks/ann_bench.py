"""The images' HNSW query on one graph, in Chroma and in hnswlib builds: what Chroma's own path and the CPU's
vector units cost per query (a benchmark, not a test). The index is one ``million_bench.py`` filled.

    pip install --no-deps --target /tmp/hnsw-native hnswlib==0.8.0          # pip compiles it for this CPU
    HNSWLIB_NO_NATIVE=1 pip install --no-deps --no-cache-dir --target /tmp/hnsw-sse hnswlib==0.8.0
    .venv/bin/python benchmarks/ann_bench.py --db /tmp/m1m --workdir /tmp/ann \\
        --hnswlib native=/tmp/hnsw-native --hnswlib sse=/tmp/hnsw-sse

Chroma 1.x keeps a collection's HNSW index as files in its vector segment's folder, and its bundled hnswlib
computes distances with SSE. The files are joined into hnswlib's own format (the header without Chroma's
4-byte version, ``data_level0.bin``, then ``link_lists.bin``; Chroma's ``length.bin`` holds norms) and loaded
by each build, so every engine searches the same graph; each prints the first query's top similarities to
show it. Chroma writes the files every ``sync_threshold`` records, so its newest records may be missing from
them. Each build runs in a process of its own (one process cannot import two builds of one module).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import mmsearch  # noqa: E402, F401, I001  first, before numpy: it sets OpenBLAS's thread timeout
import numpy as np  # noqa: E402

K, POOL, WARM = 10, 30, 20  # a search for 10 hits asks the images' index for its pool of 30 (fusion.pool_size)


def segment_folder(db: str, collection: str = "mmsearch_images") -> Path:
    """The folder of a collection's HNSW files: its vector segment's id, under the database folder."""
    with sqlite3.connect(f"file:{db}/chroma.sqlite3?mode=ro", uri=True) as connection:
        row = connection.execute("SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id "
                                 "WHERE c.name = ? AND s.scope = 'VECTOR'", (collection,)).fetchone()
    if row is None:
        raise SystemExit(f"no collection {collection} in {db}")
    return Path(db) / row[0]


def join(folder: Path, out: Path) -> Path:
    """Chroma's HNSW files as one hnswlib index file."""
    with out.open("wb") as target:
        target.write((folder / "header.bin").read_bytes()[4:])
        for name in ("data_level0.bin", "link_lists.bin"):
            with (folder / name).open("rb") as part:
                while chunk := part.read(1 << 26):
                    target.write(chunk)
    return out


def timed(search, queries: np.ndarray) -> dict:
    """Median and p99 ms per query, after ``WARM`` queries; the first query's top similarities."""
    for q in queries[:WARM]:
        search(q)
    spent = []
    for q in queries[WARM:]:
        begin = time.perf_counter()
        search(q)
        spent.append(time.perf_counter() - begin)
    top = sorted(search(queries[0]), reverse=True)[:3]
    return {"p50": statistics.median(spent) * 1e3, "p99": float(np.percentile(spent, 99)) * 1e3,
            "top": [round(float(s), 5) for s in top]}


def chroma(db: str, queries: np.ndarray) -> dict:
    """Chroma's own query (``Store.query_images``), as a search asks it, at the collection's ``ef_search``."""
    from mmsearch.store.client import Store

    store = Store(db)
    count = store.count()  # loads the images' index
    images = store.client.get_collection(store.name("images"), embedding_function=None)
    ef = (images.configuration or {}).get("hnsw", {}).get("ef_search")
    return {"count": count, "ef": ef, **timed(lambda q: store.query_images(q, POOL, None).values(), queries)}


def hnswlib_build(path: str, index_file: str, ef: int, queries: np.ndarray) -> dict:
    """One hnswlib build, imported from ``path``, searching the joined file on one thread."""
    sys.path.insert(0, path)
    import hnswlib

    begin = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=queries.shape[1])  # Chroma's cosine: inner products of unit vectors
    index.load_index(index_file)
    loaded = time.perf_counter() - begin
    index.set_ef(ef)
    index.set_num_threads(1)
    return {"module": hnswlib.__file__, "load_s": loaded, "count": index.get_current_count(),
            **timed(lambda q: 1.0 - index.knn_query(q, k=POOL)[1][0], queries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="a database million_bench.py filled")
    parser.add_argument("--workdir", required=True, help="where the joined index file is written (as large as the index)")
    parser.add_argument("--hnswlib", action="append", default=[], metavar="LABEL=PATH",
                        help="an hnswlib build installed with pip --target PATH (repeat for several)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--build", help=argparse.SUPPRESS)  # internal: LABEL=PATH,INDEX_FILE,EF in a fresh process
    args = parser.parse_args()
    from recall_bench import queries

    asked = queries(WARM + args.queries)
    if args.build:
        path, index_file, ef = args.build.split(",")
        print(json.dumps(hnswlib_build(path, index_file, int(ef), asked)))
        return
    from host import machine

    print(f"ann_bench on {machine()}")
    own = chroma(args.db, asked)
    print(f"{own['count']:,} images, ef_search {own['ef']}, {args.queries} queries for {POOL} neighbours, one thread")
    print(f"  Chroma (query_images): p50 {own['p50']:.2f} ms, p99 {own['p99']:.2f} ms; top {own['top']}")
    if not args.hnswlib:
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    index_file = join(segment_folder(args.db), workdir / "images.hnsw")
    try:
        for label, path in (spec.split("=", 1) for spec in args.hnswlib):
            out = subprocess.run([sys.executable, __file__, "--db", args.db, "--workdir", args.workdir, "--queries",
                                  str(args.queries), "--build", f"{path},{index_file},{own['ef']}"],
                                 capture_output=True, text=True, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  hnswlib {label} ({got['module']}; {got['count']:,} loaded in {got['load_s']:.1f} s): "
                  f"p50 {got['p50']:.2f} ms, p99 {got['p99']:.2f} ms, {got['p50'] / own['p50']:.2f}x Chroma's; "
                  f"top {got['top']}")
    finally:
        index_file.unlink()


if __name__ == "__main__":
    main()
