"""Cold start of every command on an offline-profile index, side by side in one run: the index as this
version writes it (one colour-layout vector per image) and the same index with the identical placeholder
vector that schema 1 stored for every image.

    .venv/bin/python benchmarks/cold_start_bench.py                  # 5,000 images, 3 runs per command
    .venv/bin/python benchmarks/cold_start_bench.py --images 20000 --runs 5

Each figure is the wall time of a fresh ``python -m mmsearch ...`` process (imports, opening Chroma and
its HNSW index, the command itself), the median of ``--runs``. Images are small generated PNGs with a
caption sidecar on every tenth. The placeholder index is written by the same indexer with its layout
vector replaced by schema 1's ``[1, 0, 0, ...]``, so both databases go through the same writes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "stats": ["stats"],
    "search": ["search", "a red square", "-k", "5"],
    "search --json": ["search", "red", "-k", "20", "--json"],
}


def make_images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / f"{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"img{i:06d}.png")
        if i % 10 == 0:
            (sub / f"img{i:06d}.png.txt").write_text(f"a red square number {i}\n")


PLACEHOLDER_RUN = """
import sys
import mmsearch.ingest.indexer as indexer
indexer.layout_vector = lambda image, dim: [1.0] + [0.0] * (dim - 1)  # what schema 1 stored for every image
from mmsearch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def index(images: Path, db: Path, placeholders: bool = False) -> float:
    """Seconds to index ``images`` into ``db`` in the offline profile, as this version does or, with
    ``placeholders``, writing schema 1's identical vector for every image through the same code path."""
    code = ["-c", PLACEHOLDER_RUN] if placeholders else ["-m", "mmsearch"]
    start = time.perf_counter()
    subprocess.run([sys.executable, *code, "index", str(images), "--db", str(db), "--offline"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def cold(db: Path, command: list[str], runs: int) -> float:
    times = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mmsearch", *command, "--db", str(db)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", help="keep the images and databases here (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mmsearch-cold-"))
    images, db, old = work / "images", work / "db", work / "db-placeholders"
    if not images.exists():
        make_images(images, args.images)
    for folder in (db, old):
        shutil.rmtree(folder, ignore_errors=True)
    new_s, old_s = index(images, db), index(images, old, placeholders=True)
    print(f"{args.images} images indexed (offline profile): {new_s:.1f} s with layout vectors, {old_s:.1f} s with "
          f"placeholders ({old_s / new_s:.1f}x)")
    print(f"{'command':<16} {'layout vectors':>15} {'placeholders':>13} {'ratio':>7}   (median of {args.runs} cold runs, s)")
    for name, command in COMMANDS.items():
        new_s, old_s = cold(db, command, args.runs), cold(old, command, args.runs)
        print(f"{name:<16} {new_s:>15.2f} {old_s:>13.2f} {old_s / new_s:>6.1f}x")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
