"""Indexing throughput, side by side on the same files in one run: mmsearch vs Chroma's own multimodal path
vs the model alone.

    .venv/bin/python benchmarks/index_bench.py            # 60 images, one in three a 12 MP JPEG
    .venv/bin/python benchmarks/index_bench.py --images 150 --threads 2

Paths (each in its own process, so peak RSS is its own; model loading is excluded from every figure):

- ``model``: open_clip ViT-B-32 fp32 encoding already-prepared tensors in batches of 32 (the ceiling);
- ``mmsearch``: ``SearchEngine.index`` on the folder (decode, hash, EXIF, encode, store);
- ``chroma``: Chroma's ``OpenCLIPEmbeddingFunction`` + ``ImageLoader``, ``collection.add(uris=...)`` in chunks of 16.

Weights are random (no model hub here): speed does not depend on weight values. Images are sample photos
scaled to phone size (4032x3024 JPEG) or kept small (640x480), generated once into ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host import machine

ROOT = Path(__file__).resolve().parent.parent
PHONE, SMALL = (4032, 3024), (640, 480)


def make_images(folder: Path, n: int) -> list[Path]:
    """``n`` JPEGs from the sample photos; every third one phone-sized."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in (ROOT / "sample_images").iterdir() if p.suffix in (".jpg", ".png"))
    paths = []
    for i in range(n):
        path = folder / f"img{i:04d}.jpg"
        if not path.exists():
            size = PHONE if i % 3 == 0 else SMALL
            with Image.open(sources[i % len(sources)]) as im:
                im.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def checkpoint(workdir: Path) -> Path:
    """A ViT-B-32 checkpoint with fixed random weights."""
    path = workdir / "vit-b-32-random.pt"
    if not path.exists():
        import open_clip
        import torch

        torch.manual_seed(0)
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), path)
    return path


def run_model(paths: list[Path], ckpt: Path) -> float:
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(ckpt))
    model.eval()
    tensors = [preprocess(Image.open(p).convert("RGB")) for p in paths]
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(tensors), 32):
            model.encode_image(torch.stack(tensors[i:i + 32]))
    return len(paths) / (time.perf_counter() - start)


def run_mmsearch(paths: list[Path], ckpt: Path) -> float:
    sys.path.insert(0, str(ROOT))
    from mmsearch import SearchEngine

    with tempfile.TemporaryDirectory() as db:
        engine = SearchEngine(db, clip_model="ViT-B-32", clip_pretrained=str(ckpt), text_model="clip")
        engine.encoders  # noqa: B018 - load the model before the clock starts
        start = time.perf_counter()
        report = engine.index([paths[0].parent])
        elapsed = time.perf_counter() - start
    assert report.added == len(paths), report.summary()
    return len(paths) / elapsed


def run_chroma(paths: list[Path], ckpt: Path) -> float:
    import chromadb
    from chromadb.utils.data_loaders import ImageLoader
    from chromadb.utils.embedding_functions import OpenCLIPEmbeddingFunction

    with tempfile.TemporaryDirectory() as db:
        client = chromadb.PersistentClient(db, settings=chromadb.Settings(anonymized_telemetry=False))
        function = OpenCLIPEmbeddingFunction("ViT-B-32", str(ckpt), "cpu")
        collection = client.create_collection("bench", embedding_function=function, data_loader=ImageLoader())
        start = time.perf_counter()
        for i in range(0, len(paths), 16):
            chunk = paths[i:i + 16]
            collection.add(ids=[p.name for p in chunk], uris=[str(p) for p in chunk])
        elapsed = time.perf_counter() - start
        assert collection.count() == len(paths)
    return len(paths) / elapsed


RUNNERS = {"model": run_model, "mmsearch": run_mmsearch, "chroma": run_chroma}


def child(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    paths = sorted(Path(args.folder).glob("*.jpg"))
    rate = RUNNERS[args.child](paths, Path(args.checkpoint))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rate": rate, "peak_rss_mb": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mmsearch-bench"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    parser.add_argument("--paths", default="model,mmsearch,chroma")
    parser.add_argument("--child", choices=list(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    workdir = Path(args.workdir)
    folder = workdir / f"images-{args.images}"
    make_images(folder, args.images)
    ckpt = checkpoint(workdir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    results = {}
    for name in args.paths.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", name, "--folder", str(folder), "--checkpoint",
                              str(ckpt), "--threads", str(args.threads)], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.images} images ({args.images // 3 + (args.images % 3 > 0)} of them 4032x3024 JPEGs), "
          f"ViT-B-32 fp32, {machine()}, torch threads {args.threads or 'default'}\n")
    print(f"{'path':<10} {'images/s':>9} {'vs chroma':>10} {'vs model':>9} {'peak RSS MB':>12}")
    for name, r in results.items():
        vs_chroma = r["rate"] / results["chroma"]["rate"] if "chroma" in results else float("nan")
        vs_model = r["rate"] / results["model"]["rate"] if "model" in results else float("nan")
        print(f"{name:<10} {r['rate']:9.2f} {vs_chroma:9.2f}x {vs_model:8.2f}x {r['peak_rss_mb']:12.0f}")


if __name__ == "__main__":
    main()
