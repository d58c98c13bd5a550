"""The keyword index at a million photos: build, save, open, and queries that touch most of the library, each
against the way it was done before, side by side in one run (a benchmark, not a test).

    .venv/bin/python benchmarks/keywords_bench.py                # 1M images (~2 min to build on 2 cores)
    .venv/bin/python benchmarks/keywords_bench.py --n 200000

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


def before(index, query: str, n: int = 10) -> dict[str, float]:
    """The search as it was: every text checked for a quoted phrase, every tied id sorted."""
    from mmsearch.search.topk import top

    return top(index.ids, index.score_array(query), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    from mmsearch.search.keywords import KeywordIndex

    build_s, built = timed(lambda: KeywordIndex.from_metadata(records(args.n), through=1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keywords.npz"
        save_s, _ = timed(built.save, path, ("bench", 1))
        del built
        open_s, index = timed(KeywordIndex.load, path, ("bench", 1))
        changed = index.apply(list(records(1000)), through=2)  # 1,000 photos written again
        again_s, _ = timed(changed.save, path, ("bench", 2))
        size = path.stat().st_size
    print(f"\n{args.n:,} images: build {build_s:.1f} s, save {save_s:.1f} s ({size / 2**20:.0f} MB), open "
          f"{open_s:.2f} s, save after 1,000 changed {again_s:.2f} s")
    print(f"{'query':<20} {'now':>9} {'before':>9} {'ratio':>7}  same")
    for query in QUERIES:
        now_s, got = timed(index.search, query, 10)
        then_s, want = timed(before, index, query)
        print(f"{query:<20} {now_s * 1000:>7.1f}ms {then_s * 1000:>7.1f}ms {then_s / max(now_s, 1e-9):>6.1f}x  {got == want}")


if __name__ == "__main__":
    main()
