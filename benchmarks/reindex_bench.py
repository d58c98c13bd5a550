"""What a model change costs: ``reindex`` against a fresh ``index`` of the same photos, measured side by
side in one run, and search latency while the reindex runs (the index never stops answering).

    .venv/bin/python benchmarks/reindex_bench.py               # 150 photos (every third 12 MP), ViT-B-32
    .venv/bin/python benchmarks/reindex_bench.py --images 600

Models (weights random: speed does not depend on their values): the offline profile (MiniLM captions,
no image model) as the starting index; ViT-B-32 with its own text tower as the new models; then only a
caption model (the packaged MiniLM) added on top.

- ``index``: a fresh ``mmsearch index`` of the photos with ViT-B-32 (the cost of rebuilding from scratch).
- ``reindex (image model)``: offline -> ViT-B-32: every image encoded again from its file, captions
  embedded again, final pass, switch.
- ``reindex (caption model)``: ViT-B-32 -> + MiniLM caption model: image vectors copied, captions only.
- ``searched meanwhile``: the image-model reindex again, with text queries in a loop on the old models
  (one thread, no pause: on 2 cores they take a share of the CPU from the reindex).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUERIES = ["a cat on a sofa", "the sea at sunset", "a red bicycle", "mountains", "a plate of food"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mmsearch-reindex-bench"))
    args = parser.parse_args()
    from index_bench import make_images
    from pipeline_bench import model_files

    from mmsearch import Config, SearchEngine
    from mmsearch.config import PACKAGED_MINILM

    work = Path(args.workdir)
    folder = work / f"images-{args.images}"
    make_images(folder, args.images)
    manifest = folder / "captions.csv"
    manifest.write_text("path,caption\n" + "".join(f"img{i:04d}.jpg,{QUERIES[i % len(QUERIES)]} number {i}\n"
                                                   for i in range(args.images)))
    for db in ("db-old", "db-alone", "db-fresh"):
        shutil.rmtree(work / db, ignore_errors=True)
    vit, checkpoint = model_files(work, "vit")
    vit_models = {"clip_model": vit, "clip_pretrained": checkpoint, "text_model": "clip"}

    for db in ("db-alone", "db-old"):
        old = SearchEngine(config=Config.offline_profile(Config.from_env(db=str(work / db))))
        old.index([folder], captions=manifest)
    old.search(QUERIES[0])  # models loaded before the clock starts

    fresh = SearchEngine(work / "db-fresh", **vit_models)
    fresh.encoders  # noqa: B018 - loading is outside every clock
    started = time.perf_counter()
    fresh.index([folder], captions=manifest)
    index_s = time.perf_counter() - started

    latencies, failures, stop = [], [], threading.Event()

    def search_loop() -> None:
        n = 0
        while not stop.is_set():
            t = time.perf_counter()
            try:
                if not old.search(QUERIES[n % len(QUERIES)], k=10):
                    failures.append("empty")
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append(repr(exc))
            latencies.append(time.perf_counter() - t)
            n += 1

    idle = []
    for n in range(20):
        t = time.perf_counter()
        old.search(QUERIES[n % len(QUERIES)], k=10)
        idle.append(time.perf_counter() - t)
    alone = SearchEngine(work / "db-alone", caption_model="", **vit_models)  # all models given: none read from the index
    alone.encoders  # noqa: B018
    started = time.perf_counter()
    alone_report = alone.reindex()
    reindex_alone_s = time.perf_counter() - started

    new = SearchEngine(work / "db-old", caption_model="", **vit_models)
    new.encoders  # noqa: B018
    searching = threading.Thread(target=search_loop)
    searching.start()
    started = time.perf_counter()
    image_report = new.reindex()
    reindex_image_s = time.perf_counter() - started
    stop.set()
    searching.join()

    captioned = SearchEngine(work / "db-fresh", caption_model=PACKAGED_MINILM, **vit_models)
    captioned.encoders  # noqa: B018
    started = time.perf_counter()
    caption_report = captioned.reindex()
    reindex_caption_s = time.perf_counter() - started

    print(f"{args.images} photos ({(args.images + 2) // 3} of them 4032x3024 JPEGs), ViT-B-32 on the CPU, model loading "
          f"outside the clocks\n")
    print(f"{'index (fresh, ViT-B-32)':<34} {index_s:7.1f} s")
    print(f"{'reindex (image model changed)':<34} {reindex_alone_s:7.1f} s   {reindex_alone_s / index_s:.2f} x index"
          f"   ({alone_report.images_encoded} encoded, switched={alone_report.switched})")
    print(f"{'  the same, searched meanwhile':<34} {reindex_image_s:7.1f} s   {reindex_image_s / index_s:.2f} x index"
          f"   ({image_report.images_encoded} encoded, switched={image_report.switched})")
    print(f"{'reindex (caption model only)':<34} {reindex_caption_s:7.1f} s   {reindex_caption_s / index_s:.2f} x index"
          f"   ({caption_report.images_copied} copied, {caption_report.texts_embedded} texts embedded)")
    print(f"\nsearch on the old models: idle p50 {statistics.median(idle) * 1000:.0f} ms; during the reindex "
          f"p50 {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms, "
          f"{len(latencies)} searches, {len(failures)} failed or empty")


if __name__ == "__main__":
    main()
