"""Text searches end to end with the text model's layers in numpy and in ONNX Runtime, side by side on one
index (a benchmark, not a test). The index is one ``million_bench.py`` filled:

    .venv/bin/python benchmarks/million_bench.py --n 200000 --db /tmp/m200k --workdir /tmp/mb --fill-only
    .venv/bin/python benchmarks/search_runtime_bench.py --db /tmp/m200k --workdir /tmp/mb --rounds 3

Each run is a fresh process (``SearchEngine(db, text_runtime=...)``, the keyword index read, one search),
the runtimes interleaved round by round. A run times ``--queries`` new texts after 20 warm-up searches (p50,
p99), the same texts again (their vectors kept: no encoding), then twice as many new texts from two threads
at once (searches per second), and reports the process's RSS. The last lines give each runtime's median
over the rounds and its ratio to numpy's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIMES = ("numpy", "auto")

RUN = r"""
import json, os, sys, threading, time
from pathlib import Path
sys.path[:0] = [sys.argv[4], os.path.join(sys.argv[4], "benchmarks")]
import mmsearch  # first, before numpy: it sets OpenBLAS's thread timeout
from index_bench import checkpoint
from memory_bench import rss_mb
from million_bench import WORDS, model_settings
from store_bench import again, latency, multilingual_shaped_text_model
db, runtime, n, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[5])
settings = model_settings(str(checkpoint(workdir)), multilingual_shaped_text_model(workdir))
engine = mmsearch.SearchEngine(db, text_runtime=runtime, **settings)
engine.session.keyword_index()
engine.search("a cat on day 3", k=10)
texts = [f"{WORDS[i % len(WORDS)]} on day {i % 365} {runtime}" for i in range(n)]
p50, p99 = latency(engine, texts)
again50, _ = again(engine, texts)
more = [f"{WORDS[i % len(WORDS)]} in year {i} {runtime}" for i in range(2 * n)]
threads = [threading.Thread(target=lambda part: [engine.search(q, k=10) for q in part], args=(more[i::2],))
           for i in range(2)]
start = time.perf_counter()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
rate = len(more) / (time.perf_counter() - start)
print(json.dumps({"p50": p50, "p99": p99, "again": again50, "two_threads": rate, "rss_mb": rss_mb()}))
"""


def run(db: str, runtime: str, queries: int, workdir: str) -> dict:
    """One fresh process's numbers."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", RUN, db, runtime, str(queries), str(ROOT), workdir], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--workdir", default="/tmp/mmsearch-bench", help="million_bench.py's: the stand-in models")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {runtime: [] for runtime in RUNTIMES}
    print(f"{'runtime':<8} {'p50 ms':>7} {'p99 ms':>7} {'again ms':>9} {'2 threads/s':>12} {'RSS MB':>7}")
    for _ in range(args.rounds):
        for runtime in RUNTIMES:
            r = run(args.db, runtime, args.queries, args.workdir)
            results[runtime].append(r)
            print(f"{runtime:<8} {r['p50']:>7.1f} {r['p99']:>7.1f} {r['again']:>9.1f} {r['two_threads']:>12.1f} "
                  f"{r['rss_mb']:>7.0f}", flush=True)
    medians = {rt: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for rt, runs in results.items()}
    base = medians["numpy"]
    for runtime, m in medians.items():
        ratios = ", ".join(f"{k} {m[k] / base[k]:.2f}x" for k in ("p50", "p99", "again", "two_threads", "rss_mb"))
        print(f"median {runtime:<6} p50 {m['p50']:.1f} ms, p99 {m['p99']:.1f} ms, again {m['again']:.1f} ms, "
              f"{m['two_threads']:.1f} searches/s from two threads, RSS {m['rss_mb']:.0f} MB; against numpy: {ratios}")


if __name__ == "__main__":
    main()
