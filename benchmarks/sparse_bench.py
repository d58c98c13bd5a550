"""The sparse signal at scale: BGE-M3 lexical weights of 100k captions (and 20k photo texts), searched by
``mmsearch.search.lexical.LexicalIndex``, beside BM25 (``KeywordIndex``) over the same texts, in one run.

    .venv/bin/python benchmarks/sparse_bench.py              # 100k images
    .venv/bin/python benchmarks/sparse_bench.py --images 20000

Texts are synthetic: token ids drawn from a Zipf law over XLM-R's 250k vocabulary, 8-20 tokens a caption,
weights 0.01-0.35 (BGE-M3's typical range); queries have 3-8 tokens from the same law, so common tokens
with long posting lists ("a", "the") are in most queries, as in real ones. The BM25 side indexes the same
tokens as words. Query encoding is not included (see caption_model_bench.py: the lexical head is one
matrix-vector product on the hidden states the dense vector already needs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VOCAB = 250_002


def tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.unique(np.minimum(rng.zipf(1.3, n), VOCAB - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    from mmsearch.encoders.sparse import pack
    from mmsearch.search.keywords import KeywordIndex

    rng = np.random.default_rng(0)
    records = []
    for n in range(args.images):
        caption = tokens(rng, int(rng.integers(8, 21)))
        meta = {"path": f"/photos/img{n:06d}.jpg", "captions": [" ".join(f"w{t}" for t in caption)],
                "lexical": [pack(dict(zip(caption.tolist(), rng.uniform(0.01, 0.35, len(caption)).tolist())))]}
        if n % 5 == 0:
            text = tokens(rng, int(rng.integers(3, 10)))
            meta["ocr_lexical"] = pack(dict(zip(text.tolist(), rng.uniform(0.01, 0.35, len(text)).tolist())))
        records.append((f"id{n}", meta))
    started = time.perf_counter()
    index = KeywordIndex.from_metadata(records)
    built = time.perf_counter() - started
    lexical = index.lexical
    assert lexical is not None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "keywords.npz"
        index.save(path, (1, 2))
        started = time.perf_counter()
        loaded = KeywordIndex.load(path, (1, 2))
        load_s = time.perf_counter() - started
        size = path.stat().st_size
    assert loaded is not None and loaded.lexical is not None
    queries = [tokens(rng, int(rng.integers(3, 9))) for _ in range(args.queries)]
    sparse, bm25 = [], []
    for query in queries:  # interleaved, so a busy moment hits both alike
        weights = dict(zip(query.tolist(), rng.uniform(0.05, 0.35, len(query)).tolist()))
        started = time.perf_counter()
        loaded.lexical.search(weights, 60)
        sparse.append(time.perf_counter() - started)
        started = time.perf_counter()
        loaded.search(" ".join(f"w{t}" for t in query), 60)
        bm25.append(time.perf_counter() - started)
    postings = len(lexical.texts)
    print(f"{args.images:,} images, {len(lexical.text_image):,} texts with lexical weights, {postings:,} postings")
    print(f"keyword index with lexical postings: built from metadata in {built:.1f} s; cached file {size / 1e6:.0f} MB, "
          f"loaded in {load_s * 1000:.0f} ms")
    p50_s, p50_b = statistics.median(sparse) * 1000, statistics.median(bm25) * 1000
    print(f"sparse query p50 {p50_s:.2f} ms, p95 {np.percentile(sparse, 95) * 1000:.2f} ms")
    print(f"BM25 query   p50 {p50_b:.2f} ms, p95 {np.percentile(bm25, 95) * 1000:.2f} ms   (sparse / BM25 {p50_s / p50_b:.2f})")


if __name__ == "__main__":
    main()
