"""The store's HNSW settings give recall@10 >= 0.98 against exact search on embedding-like vectors."""

from __future__ import annotations

import numpy as np

from mmsearch.store.client import Store
from mmsearch.store.collections import HNSW


def embedding_like(n: int, dim: int = 512, latent: int = 64, seed: int = 0) -> np.ndarray:
    """A 64-d Gaussian latent projected to 512-d plus noise, normalised: shaped like CLIP embeddings."""
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((latent, dim)).astype(np.float32)
    vectors = rng.standard_normal((n, latent)).astype(np.float32) @ projection
    vectors += 0.5 * np.sqrt(latent) * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_recall_at_10_on_20k_embedding_like_vectors(tmp_path):
    data = embedding_like(20_100)
    base, queries = data[:20_000], data[20_000:]
    store = Store(tmp_path / "db")
    store.create({"image_model": "test", "text_model": "test"}, dim=512)
    assert store._images.configuration["hnsw"]["ef_search"] == HNSW["ef_search"]
    ids = [f"v{i}" for i in range(len(base))]
    for start in range(0, len(base), 5000):
        store._images.add(ids=ids[start:start + 5000], embeddings=base[start:start + 5000])
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    found = [store.query_images(q, 10, None) for q in queries]
    recall = np.mean([len({f"v{i}" for i in exact[n]} & set(found[n])) / 10 for n in range(len(queries))])
    print(f"recall@10 = {recall:.3f}")
    assert recall >= 0.98


def test_an_index_made_with_older_search_settings_is_upgraded_by_the_next_writer(tmp_path):
    import chromadb

    from mmsearch.store.collections import CAPTIONS, HNSW, HNSW_CAPTIONS, IMAGES

    client = chromadb.PersistentClient(str(tmp_path / "db"), settings=chromadb.Settings(anonymized_telemetry=False))
    meta = {"schema": 1, "image_model": "a", "text_model": "b", "dim": 8, "roots": "[]", "updated_at": 0}
    old = {**HNSW, "ef_search": 100}
    client.create_collection(IMAGES, metadata=meta, configuration={"hnsw": old}, embedding_function=None)
    client.create_collection(CAPTIONS, metadata={"schema": 1}, configuration={"hnsw": old}, embedding_function=None)
    store = Store(tmp_path / "db")
    store.create({"image_model": "a", "text_model": "b"}, 8)
    assert store._images.configuration["hnsw"]["ef_search"] == HNSW["ef_search"] == 256
    assert store._captions.configuration["hnsw"]["ef_search"] == HNSW_CAPTIONS["ef_search"] == 128
