"""How should the store read every record of a large collection? Three ways side by side in one run, on a
synthetic embedded Chroma collection with metadata shaped like an image record's:

- ``offset``: ``get(limit=PAGE, offset=k)`` pages, as ``store.collections.pages`` reads today; each page
  costs its offset, so a full read grows faster than the collection;
- ``seq-ranges``: ``get(where={"seq": [lo, lo + step)})``, the write sequence as a key;
- ``id-batches``: ``get(ids=batch)`` over ids already known (e.g. from the keyword index's id list).

    .venv/bin/python benchmarks/paging_bench.py --n 200000          # ~1 min to fill on 2 cores
    .venv/bin/python benchmarks/paging_bench.py --n 500000 --db /tmp/pg   # keep the filled database

Measured here (2 cores, one run) at 500k: ids by offset 8.1 s, by seq ranges 38.2 s (4.71x), by id batches
1.7 s (0.21x); metadata by offset 21.3 s, by seq ranges 51.2 s (2.41x), by id batches 16.1 s (0.76x). At 200k
ids by offset took 1.8 s and metadata 7.2 s. Chroma evaluates a range filter by scanning, so the sequence is no
key for paging; reads by known ids grow linearly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsearch.store.collections import PAGE  # noqa: E402 - the store's own page size, the one measured


def fill(collection, n: int) -> None:
    """Add records up to ``n``, each write of ``PAGE`` records one sequence number (as the store writes)."""
    rng = np.random.default_rng(0)
    for start in range(collection.count(), n, PAGE):
        ids = [f"id{i:08d}" for i in range(start, min(n, start + PAGE))]
        metas = [{"seq": start // PAGE + 1, "path": f"/photos/folder{i % 300}/IMG_{i}.jpg", "mtime": 1.5e9 + i,
                  "width": 4032, "height": 3024, "phash": "abcdef0123456789", "sha": "f" * 40} for i in
                 range(start, start + len(ids))]
        collection.add(ids=ids, embeddings=rng.standard_normal((len(ids), 8)).astype(np.float32), metadatas=metas)


def by_offset(collection, include: list[str], page_size: int = PAGE) -> int:
    offset = 0
    while page := collection.get(include=include, limit=page_size, offset=offset)["ids"]:
        offset += len(page)
    return offset


def by_seq(collection, include: list[str], top: int) -> int:
    return sum(len(collection.get(include=include, where={"$and": [{"seq": {"$gte": lo}}, {"seq": {"$lt": lo + 1}}]})
                   ["ids"]) for lo in range(1, top + 1))


def by_ids(collection, include: list[str], ids: list[str]) -> int:
    return sum(len(collection.get(ids=ids[s:s + PAGE], include=include)["ids"]) for s in range(0, len(ids), PAGE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--db", default=None, help="keep the database here (default: a temporary folder)")
    args = parser.parse_args()
    import chromadb

    db = args.db or tempfile.mkdtemp(prefix="mmsearch-paging-")
    collection = chromadb.PersistentClient(db).get_or_create_collection(
        "paging-bench", configuration={"hnsw": {"space": "ip"}}, embedding_function=None)
    started = time.perf_counter()
    fill(collection, args.n)
    print(f"{collection.count()} records in {db} (fill {time.perf_counter() - started:.1f} s)")
    ids = [f"id{i:08d}" for i in range(collection.count())]
    top = (collection.count() + PAGE - 1) // PAGE
    for include in ([], ["metadatas"]):
        times = {}
        for name, read, extra in (("offset", by_offset, ()), ("seq-ranges", by_seq, (top,)),
                                  ("id-batches", by_ids, (ids,)), ("offset-30k", by_offset, (30000,))):
            started = time.perf_counter()
            count = read(collection, include, *extra)
            times[name] = time.perf_counter() - started
            print(f"{'+'.join(include) or 'ids'}  {name:<11} {count} records in {times[name]:.1f} s")
        print(f"    seq-ranges / offset {times['seq-ranges'] / times['offset']:.2f},"
              f" id-batches / offset {times['id-batches'] / times['offset']:.2f},"
              f" offset-30k / offset {times['offset-30k'] / times['offset']:.2f}")


if __name__ == "__main__":
    main()
