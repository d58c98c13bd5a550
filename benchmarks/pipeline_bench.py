"""Is indexing as fast as the hardware? Ratios measured side by side in one run, each path in its own process.

    .venv/bin/python benchmarks/pipeline_bench.py                 # 150 photos, one in three a 12 MP JPEG
    .venv/bin/python benchmarks/pipeline_bench.py --vit            # also the real ViT-B-32 on the CPU
    .venv/bin/python benchmarks/pipeline_bench.py --device cuda --images 1200 --vit   # on a GPU machine

Paths (model loading excluded everywhere; weights random, as speed does not depend on their values):

- ``cpu-limit``: the per-file CPU work of indexing alone, on all cores (the indexer's own worker function:
  read, sha256, EXIF orientation, JPEG draft decode, shrink, perceptual hash, the model's preprocessing),
  in a thread pool of one worker per core. Nothing can index faster than this.
- ``decode-only``: the same without the hash and preprocessing (the issue's narrower definition).
- ``cpu-limit-processes``: the same per-file work in a process pool over all cores (each file read, hashed,
  decoded and prepared in a worker process; the model's input comes back): the issue 33 floor.
- ``standin-model``: a near-free stand-in model (224 px input, one tiny layer: a GPU's speed on a CPU)
  encoding ready arrays; ``standin-index``: ``engine.index`` with it at default settings;
  ``standin-index-threads`` / ``standin-index-processes``: with ``MMSEARCH_DECODE=thread`` / ``process``.
- ``--workers 1,2``: ``standin-index`` with each number of decode workers, threads and processes.
- ``vit-model`` / ``vit-index`` (``--vit``): the same with the real ViT-B-32 architecture.

Goals (issue 21): standin-index >= 0.85 x cpu-limit; vit-index >= 0.9 x vit-model; on CUDA,
vit-index >= 0.8 x min(cpu-limit, vit-model in fp16).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

STANDIN = {"embed_dim": 64,
           "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1}}


def model_files(workdir: Path, which: str) -> tuple[str, str]:
    """(open_clip model name or JSON config, checkpoint with fixed random weights)."""
    import open_clip
    import torch

    if which == "standin":
        config = workdir / "mmsearch-standin.json"
        config.write_text(json.dumps(STANDIN))
        open_clip.add_model_config(config)
        name, model = str(config), "mmsearch-standin"
    else:
        name = model = "ViT-B-32"
    ckpt = workdir / f"{model}-random.pt"
    if not ckpt.exists():
        torch.manual_seed(0)
        torch.save(open_clip.create_model(model).state_dict(), ckpt)
    return name, str(ckpt)


def engine_for(db: str, which: str, workdir: Path, device: str):
    from mmsearch import SearchEngine

    name, ckpt = model_files(workdir, which)
    engine = SearchEngine(db, clip_model=name, clip_pretrained=ckpt, text_model="clip", device=device)
    engine.encoders  # noqa: B018 - load the model and open the database (chromadb's import: 1.3 s)
    engine.store  # noqa: B018   before the clock starts
    from PIL import Image

    from mmsearch.media.images import perceptual_hash

    perceptual_hash(Image.new("RGB", (32, 32)))  # imports scipy (0.3-0.5 s, once per process) before the clock
    return engine


def candidates(folder: Path) -> list:
    from mmsearch.ingest.indexer import Candidate

    paths = sorted(folder.glob("*.jpg"))
    return [Candidate(str(p), p.stat().st_size, p.stat().st_mtime_ns, [], "") for p in paths]


def run_limit(folder: Path, workdir: Path, device: str, full: bool) -> float:
    from mmsearch.config import available_cores
    from mmsearch.ingest.indexer import _prepare
    from mmsearch.media.images import read_capped, read_image

    todo = candidates(folder)
    encoder = engine_for(tempfile.mkdtemp(), "standin", workdir, "cpu").encoders.image

    def decode_only(c) -> object:
        return read_image(read_capped(c.path)[0], encoder.input_size)

    def work(c) -> object:
        return _prepare(c, None, encoder.input_size, encoder.prepare)

    work(todo[0])  # imports (scipy for the hash) before the clock, as in a warm indexer
    start = time.perf_counter()
    with ThreadPoolExecutor(available_cores()) as pool:
        list(pool.map(work if full else decode_only, todo))
    return len(todo) / (time.perf_counter() - start)


def run_limit_processes(folder: Path, workdir: Path) -> float:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from mmsearch.config import available_cores
    from mmsearch.ingest.decoders import decode_photo

    todo = candidates(folder)
    encoder = engine_for(tempfile.mkdtemp(), "standin", workdir, "cpu").encoders.image
    with ProcessPoolExecutor(available_cores(), mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(decode_photo, [todo[0].path] * available_cores(), [encoder.input_size] * available_cores(),
                      [encoder.portable_prepare] * available_cores()))  # the processes started and warm
        start = time.perf_counter()
        list(pool.map(decode_photo, [c.path for c in todo], [encoder.input_size] * len(todo),
                      [encoder.portable_prepare] * len(todo)))
    return len(todo) / (time.perf_counter() - start)


def run_model(folder: Path, workdir: Path, device: str, which: str) -> float:
    import numpy as np

    todo = candidates(folder)
    engine = engine_for(tempfile.mkdtemp(), which, workdir, device)
    encoder, batch = engine.encoders.image, engine.config.index_batch_size
    from PIL import Image

    arrays = [encoder.prepare(Image.open(c.path).convert("RGB")) for c in todo[:batch]]
    arrays = (arrays * (len(todo) // len(arrays) + 1))[:len(todo)]
    encoder.encode_prepared(np.stack(arrays[:batch]))  # warm-up (CUDA kernels, allocator)
    start = time.perf_counter()
    for i in range(0, len(arrays), batch):
        encoder.encode_prepared(np.stack(arrays[i:i + batch]))
    return len(arrays) / (time.perf_counter() - start)


def run_index(folder: Path, workdir: Path, device: str, which: str) -> float:
    with tempfile.TemporaryDirectory() as db:
        engine = engine_for(db, which, workdir, device)
        start = time.perf_counter()
        report = engine.index([folder])
        elapsed = time.perf_counter() - start
    assert report.added == len(list(folder.glob("*.jpg"))), report.summary()
    return report.added / elapsed


CHILDREN = {
    "cpu-limit": lambda f, w, d: run_limit(f, w, d, True),
    "decode-only": lambda f, w, d: run_limit(f, w, d, False),
    "cpu-limit-processes": lambda f, w, d: run_limit_processes(f, w),
    "standin-model": lambda f, w, d: run_model(f, w, d, "standin"),
    "standin-index": lambda f, w, d: run_index(f, w, d, "standin"),
    "standin-index-threads": lambda f, w, d: run_index(f, w, d, "standin"),
    "standin-index-processes": lambda f, w, d: run_index(f, w, d, "standin"),
    "vit-model": lambda f, w, d: run_model(f, w, d, "vit"),
    "vit-index": lambda f, w, d: run_index(f, w, d, "vit"),
}


def measure(name: str, folder: Path, workdir: Path, device: str, workers: int | None = None) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if name.endswith(("-threads", "-processes")):
        env["MMSEARCH_DECODE"] = "thread" if name.endswith("-threads") else "process"
    if workers:
        env["MMSEARCH_WORKERS"] = str(workers)
    child = name.split("@")[0]
    out = subprocess.run([sys.executable, __file__, "--child", child, "--folder", str(folder), "--workdir", str(workdir),
                          "--device", device], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2, help="measure every path this many times, keep the best")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vit", action="store_true", help="also measure the real ViT-B-32 architecture")
    parser.add_argument("--workers", help="also standin-index with these numbers of decode workers, e.g. 1,2,16")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mmsearch-bench"))
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(CHILDREN[args.child](Path(args.folder), workdir, args.device))
        return
    from index_bench import make_images

    folder = workdir / f"images-{args.images}"
    make_images(folder, args.images)
    names = ["cpu-limit", "cpu-limit-processes", "decode-only", "standin-model", "standin-index-threads",
             "standin-index-processes"] + (["vit-model", "vit-index"] if args.vit else [])
    sweep = [int(n) for n in args.workers.split(",")] if args.workers else []
    names += [f"standin-index-{kind}@{n}" for n in sweep for kind in ("threads", "processes")]
    best: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved, so a busy moment hits every path alike
        for name in names:
            workers = int(name.split("@")[1]) if "@" in name else None
            best[name] = max(best.get(name, 0.0), measure(name, folder, workdir, args.device, workers))
    from mmsearch.config import available_cores

    print(f"{args.images} photos ({(args.images + 2) // 3} of them 4032x3024 JPEGs), {available_cores()} cores, "
          f"device {args.device}, best of {args.rounds}\n")
    for name in names:
        print(f"{name:<26} {best[name]:9.1f} images/s")
    print()
    floor = best["cpu-limit-processes"]
    for kind in ("threads", "processes"):
        print(f"standin-index-{kind} / cpu-limit-processes  {best[f'standin-index-{kind}'] / floor:.2f}  (goal >= 0.85)")
    for n in sweep:
        print(f"{n} workers: threads {best[f'standin-index-threads@{n}']:.1f}, processes "
              f"{best[f'standin-index-processes@{n}']:.1f} images/s")
    if args.vit:
        print(f"vit-index / vit-model       {best['vit-index'] / best['vit-model']:.2f}  (goal >= 0.90)")
        bound = min(best["cpu-limit"], best["vit-model"])
        print(f"vit-index / min(cpu-limit, vit-model)  {best['vit-index'] / bound:.2f}  (goal on CUDA >= 0.80)")


if __name__ == "__main__":
    main()
