"""Calibrated relevance on constructed data: does the default cut (relevance >= 0.5) keep the right images
and only them, and does a query with no right image get an empty answer?

    .venv/bin/python benchmarks/relevance_bench.py
    .venv/bin/python benchmarks/relevance_bench.py --library 20000 --queries 200

A library of N images scores a query with background noise: cosines around 0.20 with spread 0.03 (CLIP
text-image cosines), Gaussian or heavy-tailed (Student t, 4 degrees of freedom, scaled to the same spread).
A planted set of 1, 10 or 100 right images scores ``separation`` spreads higher on average, with the same
noise. The calibration (``mmsearch.search.relevance.tail``) sees only what the engine sees: the scores of
a fixed sample of ``SAMPLE`` library images (which may hold right ones) and the library's size.

Per setting, over many queries: R@10 of the plain ranking (what ``engine.search`` returns without a floor),
and precision and recall of the default cut; and, for queries with no right image (the same library), how
often the cut returns nothing. Printed side by side in one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmsearch.config import MIN_RELEVANCE  # noqa: E402
from mmsearch.search.relevance import SAMPLE, tail  # noqa: E402

CENTRE, SPREAD = 0.20, 0.03


def noise(rng: np.random.Generator, n: int, heavy: bool) -> np.ndarray:
    if not heavy:
        return rng.normal(CENTRE, SPREAD, n)
    df = 4
    return CENTRE + SPREAD * rng.standard_t(df, n) / np.sqrt(df / (df - 2))


def one_query(rng: np.random.Generator, library: int, right: int, separation: float, heavy: bool
              ) -> tuple[float, int, int, int]:
    """(R@10, hits kept by the cut, right ones among them, right ones) of one constructed query."""
    scores = noise(rng, library, heavy)
    scores[:right] += separation * SPREAD
    sample = rng.choice(library, min(SAMPLE, library), replace=False)
    relevance = tail(dict(enumerate(scores.tolist())), scores[sample], library) or {}
    order = np.argsort(-scores)
    top = order[:10]
    recall10 = float(np.sum(top < right)) / min(10, right) if right else 1.0
    kept = [i for i, r in relevance.items() if r >= MIN_RELEVANCE]
    return recall10, len(kept), sum(1 for i in kept if i < right), right


def run(library: int, queries: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    print(f"library {library:,} images, background sample {min(SAMPLE, library)}, {queries} queries per row, "
          f"cut at relevance {MIN_RELEVANCE}")
    print(f"{'noise':<7} {'right':>5} {'sep':>4}   {'R@10':>5}  {'cut P':>6}  {'cut R':>6}  {'kept':>6}")
    for heavy in (False, True):
        for right in (1, 10, 100):
            for separation in (3.0, 4.0, 5.0, 6.0, 8.0):
                rows = [one_query(rng, library, right, separation, heavy) for _ in range(queries)]
                recall10 = np.mean([r[0] for r in rows])
                kept, good, total = (sum(r[i] for r in rows) for i in (1, 2, 3))
                precision = good / kept if kept else 1.0
                print(f"{'t4' if heavy else 'normal':<7} {right:>5} {separation:>4.0f}   {recall10:5.2f}  "
                      f"{precision:6.3f}  {good / total:6.3f}  {kept / queries:6.1f}")
        empty = sum(one_query(rng, library, 0, 0.0, heavy)[1] == 0 for _ in range(queries))
        print(f"{'t4' if heavy else 'normal':<7} no right image: the cut returned nothing for {empty / queries:.0%} "
              f"of queries\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.library, args.queries, args.seed)


if __name__ == "__main__":
    main()
