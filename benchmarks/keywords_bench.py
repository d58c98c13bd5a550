"""The keyword index at a million photos: build, save, open, and queries that touch most of the library, each
against the way it was done before, side by side in one run (a benchmark, not a test).

    .venv/bin/python benchmarks/keywords_bench.py                # 1M images (~2 min to build on 2 cores)
    .venv/bin/python benchmarks/keywords_bench.py --n 200000

It also builds the index as a new library's first index run now does, fed the run's writes as they are made
(``mmsearch.search.keyword_feed``), beside the build from every record that the run's end made before.

Records are million_bench's (file names ``IMG_0000042.jpg`` in folders of 250 under ten years, a caption for
30 %). The file is what ``mmsearch index`` leaves for the first search (``keywords.npz``); opening it keeps
the strings, postings and file names packed (``mmsearch.packed``). The queries:

- a word in every file name ("img"), and a file name: every document ties, and ties go in id order;
  before, every tied id was sorted in Python (``top`` without keys);
- a common caption word ("day"), a whole caption, a folder;
- quoted phrases: before, every text holding the phrase's words was read (``score_array`` with the phrase
  check); now the best-ranked first, then the packed bytes at once when they do not settle it.

"before" shares today's cut (the top values peeled before numpy's partition); it sorts every tied id and
reads every text as the search did.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import mmsearch  # noqa: E402, F401, I001  first, before numpy: it sets OpenBLAS's thread timeout
import numpy as np  # noqa: E402

RUN_BATCH = 32  # images per put of an index run on the CPU
QUERIES = ["img", "IMG_0000042.jpg", "day", "a cat on day 3", "pictures 2019", '"on day"', '"pictures"',
           '"img_0000042"', '"day 3" cat']


def records(n: int):
    """million_bench's image records, a batch at a time."""
    from million_bench import BATCH, batch_records

    for lo in range(0, n, BATCH):
        ids, _, metas, _, _ = batch_records(lo, min(n, lo + BATCH), np.random.default_rng((1, lo)), 0.3)
        yield from zip(ids, metas)


def timed(call, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = call(*args)
    return time.perf_counter() - start, result


def feed(pairs) -> tuple[float, float, object]:
    """The keyword index fed a first run's writes as the store makes them (``KeywordFeed``): the seconds over
    the whole run (making the records included), the seconds left for its end, and the index."""
    from mmsearch.search.keyword_feed import KeywordFeed

    fed, seq, batch, start = KeywordFeed(1), 1, [], time.perf_counter()
    for pair in pairs:
        batch.append(pair)
        if len(batch) == RUN_BATCH:
            fed.written(seq, [i for i, _ in batch], [m for _, m in batch])
            seq, batch = seq + 1, []
    if batch:
        fed.written(seq, [i for i, _ in batch], [m for _, m in batch])
    run_s = time.perf_counter() - start
    end_s, index = timed(fed.index)
    return run_s + end_s, end_s, index


def before(index, query: str, n: int = 10) -> dict[str, float]:
    """The search as it was: every text checked for a quoted phrase, every tied id sorted."""
    from mmsearch.search.topk import top

    return top(index.ids, index.score_array(query), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    from mmsearch.search.keywords import CHUNK, KeywordIndex

    make_s, _ = timed(lambda: sum(1 for _ in records(args.n)))
    build_s, built = timed(lambda: KeywordIndex.from_metadata(records(args.n), through=1))
    fed_s, end_s, fed = feed(records(args.n))
    same = sorted(fed.live_ids()) == sorted(built.live_ids()) and all(
        fed.search(q, 10) == built.search(q, 10) for q in QUERIES) and fed.folder_counts == built.folder_counts
    print(f"\n{args.n:,} images (making the records alone: {make_s:.1f} s, in both builds below)")
    print(f"  built from every record at the end of the first run: {build_s:.1f} s, after Chroma handed every "
          f"record back (96.6 s more at 653k)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keywords.npz"
        fed_save_s, _ = timed(fed.save, path, ("bench", 1))  # what the run's end then does
        del fed
        print(f"  fed from the run's own writes (batches of {RUN_BATCH}, chunks of {CHUNK:,}): {fed_s:.1f} s spread "
              f"over the run; at its end {end_s:.2f} s (joining its chunks), then {fed_save_s:.2f} s saving it; "
              f"same index {same}")
        save_s, _ = timed(built.save, path, ("bench", 1))
        del built
        open_s, index = timed(KeywordIndex.load, path, ("bench", 1))
        changed = index.apply(list(records(1000)), through=2)  # 1,000 photos written again
        again_s, _ = timed(changed.save, path, ("bench", 2))
        size = path.stat().st_size
    print(f"  build {build_s:.1f} s, save {save_s:.1f} s ({size / 2**20:.0f} MB), open "
          f"{open_s:.2f} s, save after 1,000 changed {again_s:.2f} s")
    print(f"{'query':<20} {'now':>9} {'before':>9} {'ratio':>7}  same")
    for query in QUERIES:
        now_s, got = timed(index.search, query, 10)
        then_s, want = timed(before, index, query)
        print(f"{query:<20} {now_s * 1000:>7.1f}ms {then_s * 1000:>7.1f}ms {then_s / max(now_s, 1e-9):>6.1f}x  {got == want}")


if __name__ == "__main__":
    main()
