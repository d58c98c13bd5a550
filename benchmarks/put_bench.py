"""The store against its own limit: ``Store.put`` beside raw ``chromadb`` ``add`` of the same records (512-d
image vectors with the metadata an index run writes, one 512-d caption each), into embedded Chroma with the
same HNSW settings, side by side in one run.

    .venv/bin/python benchmarks/put_bench.py                    # 4,000 images, batches of 32 and 256
    .venv/bin/python benchmarks/put_bench.py --n 20000 --batch 256

Raw ``add`` is what Chroma itself costs: vectors, metadata, documents, the HNSW insert. What ``Store.put``
adds beside it (the deletes that replace an image's old captions, text and frames; the filter fields copied
onto each caption) is the ratio's gap. Rates are records (images) per second.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import mmsearch  # noqa: E402, F401, I001  first, before numpy: it sets OpenBLAS's thread timeout
import numpy as np  # noqa: E402

DIM = 512


def records(n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray, list[dict], list[list[tuple[str, str]]],
                                                    np.ndarray]:
    """Images as an index run stores them: ids, vectors, metadata, one caption each and its vector."""
    from mmsearch.ids import image_id

    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    captions = vectors + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    metas, texts = [], []
    for i in range(n):
        folder = f"/home/me/Pictures/{2015 + i % 10}/{i // 250:04d}"
        path = f"{folder}/IMG_{i:06d}.jpg"
        metas.append({"path": path, "folder": folder, "name": Path(path).name, "size": 2_000_000 + i,
                      "mtime_ns": str(1_700_000_000_000_000_000 + i), "caption_sig": "da39a3ee5e6b4b0d",
                      "sha256": f"{i:064x}", "phash": f"{i:016x}", "look": "A" * 400, "width": 4032, "height": 3024,
                      "date": 1_600_000_000 + i * 60, "date_source": "exif", "kind": "jpeg",
                      "folders": ["/", "/home", "/home/me", "/home/me/Pictures", folder.rsplit("/", 1)[0], folder],
                      "captions": [f"a photo number {i} of a day out"]})
        texts.append([(metas[-1]["captions"][0], "sidecar")])
    return [image_id(m["path"]) for m in metas], vectors, metas, texts, captions


def raw_add(folder: str, data: tuple, batch: int, lean: bool = False) -> float:
    """Raw ``add`` of the same records; ``lean``: with only the path as metadata (what metadata costs)."""
    import chromadb

    from mmsearch.ids import caption_id
    from mmsearch.store.collections import FILTER_FIELDS, HNSW, HNSW_CAPTIONS, collection_name

    client = chromadb.PersistentClient(folder, settings=chromadb.Settings(anonymized_telemetry=False))
    images = client.create_collection(collection_name("images", "first"), configuration={"hnsw": HNSW},
                                      embedding_function=None)
    captions = client.create_collection(collection_name("captions", "first"), configuration={"hnsw": HNSW_CAPTIONS},
                                        embedding_function=None)
    ids, vectors, metas, texts, caption_vectors = data
    if lean:
        metas = [{"path": m["path"]} for m in metas]
    started = time.perf_counter()
    for s in range(0, len(ids), batch):
        e = s + batch
        captions.add(ids=[caption_id(i, 0) for i in ids[s:e]], embeddings=caption_vectors[s:e],
                     documents=[t[0][0] for t in texts[s:e]],
                     metadatas=[{"image_id": i, "source": t[0][1], **{k: m[k] for k in FILTER_FIELDS if k in m}}
                                for i, m, t in zip(ids[s:e], metas[s:e], texts[s:e])])
        images.add(ids=ids[s:e], embeddings=vectors[s:e], metadatas=metas[s:e], documents=[m["path"] for m in metas[s:e]])
    return len(ids) / (time.perf_counter() - started)


def store_put(folder: str, data: tuple, batch: int) -> float:
    from mmsearch.store.client import Store

    store = Store(folder)
    ids, vectors, metas, texts, caption_vectors = data
    store.create({"image_model": "bench", "text_model": "bench", "caption_model": "bench"}, DIM)
    started = time.perf_counter()
    for s in range(0, len(ids), batch):
        e = s + batch
        store.put(ids[s:e], vectors[s:e], metas[s:e], texts[s:e], caption_vectors[s:e])
    return len(ids) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--batch", type=int, action="append", help="images per put (repeatable; default 32 and 256)")
    args = parser.parse_args()
    data = records(args.n, np.random.default_rng(0))
    print(f"{args.n} images of {DIM}-d with one caption each, embedded Chroma")
    for batch in args.batch or [32, 256]:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, \
                tempfile.TemporaryDirectory() as c:
            raw = raw_add(a, data, batch)
            put = store_put(b, data, batch)
            lean = raw_add(c, data, batch, lean=True)
        print(f"  batch {batch:>4}: raw chromadb add {raw:6.0f} img/s   Store.put {put:6.0f} img/s   "
              f"ratio {put / raw:.2f}   (raw add with the path as the only metadata {lean:6.0f} img/s)")


if __name__ == "__main__":
    main()
