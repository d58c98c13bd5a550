"""A text query with two text models at scale: N indexed images (default 100k) whose captions live in a
BGE-M3-shaped caption space (1024-d, with a lexical head), end to end through ``SearchEngine.search``,
warm and from a cold process. Measured side by side in one run: the sparse signal on and off.

    .venv/bin/python benchmarks/caption_space_bench.py             # 100k images, 200 queries
    .venv/bin/python benchmarks/caption_space_bench.py --n 20000

Models have random weights (speed does not depend on their values): the text model shaped like
clip-ViT-B-32-multilingual-v1 (DistilBERT, into the 512-d image space), the caption model shaped like
BGE-M3 (XLM-R large, 24 layers, 1024-d) with ``sparse_linear.pt``; both run on the numpy path. Vectors
are synthetic and embedding-like (as in store_bench.py); each image has one caption with 8-20 lexical
weights drawn like XLM-R token ids.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import mmsearch  # noqa: E402, F401, I001  first, before numpy (OpenBLAS thread timeout)
import numpy as np  # noqa: E402
from host import machine  # noqa: E402

QUERIES = ["a red bicycle", "一只在沙发上睡觉的猫", "ein Hund am Strand", "receipt from the bakery", "出口",
           "snowy mountains at dawn", "a plate of pasta", "the gate for boarding"]
BATCH = 1000


def fill(engine, n: int, rng: np.random.Generator) -> float:
    """N images with one caption each, straight through ``Store.put``; returns seconds."""
    from sparse_bench import tokens
    from store_bench import LATENT, embedding_like

    from mmsearch.encoders.sparse import pack

    store = engine.store
    store.create(engine.signature, 512, engine.config.models())
    image_basis = rng.standard_normal((LATENT, 512)).astype(np.float32) / np.sqrt(LATENT)
    caption_basis = rng.standard_normal((LATENT, 1024)).astype(np.float32) / np.sqrt(LATENT)
    start = time.perf_counter()
    for lo in range(0, n, BATCH):
        hi = min(lo + BATCH, n)
        ids = [f"{i:024x}" for i in range(lo, hi)]
        metas = []
        for i in range(lo, hi):
            ids_ = tokens(rng, int(rng.integers(8, 21)))
            metas.append({"path": f"/photos/{i // 1000:03d}/img{i:06d}.jpg", "folder": f"/photos/{i // 1000:03d}",
                          "folders": ["/", "/photos", f"/photos/{i // 1000:03d}"], "size": 1000 + i,
                          "mtime_ns": str(i), "caption_sig": "x", "sha256": f"{i:064x}", "date": 1_600_000_000 + i,
                          "captions": [f"caption of image {i}"],
                          "lexical": [pack(dict(zip(ids_.tolist(), rng.uniform(0.01, 0.35, len(ids_)).tolist())))]})
        store.put(ids, embedding_like(hi - lo, rng, image_basis), metas,
                  [[(f"caption of image {i}", "manifest")] for i in range(lo, hi)],
                  embedding_like(hi - lo, rng, caption_basis))
    store.add_roots(["/photos"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mmsearch-bench"))
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from caption_model_bench import shaped
    from index_bench import checkpoint
    from store_bench import cold_search, latency, multilingual_shaped_text_model

    from mmsearch import SearchEngine

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    caption_model = shaped(work, "bge-m3-shaped", "xlmr", 1024, 24, 16, 250002, "cls")
    if not (Path(caption_model) / "sparse_linear.pt").exists():
        import torch

        torch.manual_seed(0)
        torch.save(torch.nn.Linear(1024, 1).state_dict(), Path(caption_model) / "sparse_linear.pt")
    models = {"clip_model": "ViT-B-32", "clip_pretrained": str(checkpoint(work)),
              "text_model": multilingual_shaped_text_model(work), "caption_model": caption_model}
    rng = np.random.default_rng(0)
    queries = [f"{QUERIES[i % len(QUERIES)]} {i}" for i in range(args.queries)]
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        db = str(Path(tmp) / "db")
        filled = fill(SearchEngine(db, **models), args.n, rng)
        results = {}
        for weight in (0.25, 0.0):  # the sparse signal on (default weight), then off
            engine = SearchEngine(db, sparse_weight=weight)
            engine.keyword_index()  # built once (and cached in keywords.npz) before the clock
            results[weight] = latency(engine, queries), cold_search(db, {"MMSEARCH_SPARSE_WEIGHT": str(weight)})
    print(f"{args.n:,} images, one caption each; filled in {filled:.0f} s; {len(queries)} queries, "
          f"{machine()}\n")
    print(f"{'text query':<44} {'warm p50 ms':>12} {'p99 ms':>8} {'cold start s':>13}")
    for weight, label in ((0.25, "text model + BGE-M3 dense + sparse"), (0.0, "text model + BGE-M3 dense only")):
        (p50, p99), start = results[weight]
        print(f"{label:<44} {p50:12.1f} {p99:8.1f} {start:13.1f}")


if __name__ == "__main__":
    main()
