"""Memory while indexing many files: resident memory (RSS) as an index of N image files grows (default 100k).

    .venv/bin/python benchmarks/memory_bench.py                  # 100k files (~10 min to generate and index)
    .venv/bin/python benchmarks/memory_bench.py --files 20000

The files are small JPEGs (160x120, one in 1,000 a 12 MP phone photo), in folders of 1,000. The model is a
tiny open_clip architecture with random weights and the real output width (512), so the run measures
mmsearch's pipeline and the store rather than the model: decoded images must not pile up, and per-file
memory must stay a small bookkeeping cost. Printed: RSS at each tenth of the run, the growth per 10k files
over the second half, and the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TINY_512 = {
    "embed_dim": 512,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_files(folder: Path, n: int) -> Path:
    """``n`` JPEGs in folders of 1,000 (reused when already there)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    small = [Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in range(16)]
    phone = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).resize((4032, 3024))
    for i in range(n):
        path = folder / f"{i // 1000:03d}" / f"img{i:06d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            (phone if i % 1000 == 999 else small[i % 16]).save(path, "JPEG", quality=85)
    return folder


def rss_mb() -> float:
    """Current resident set size of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mmsearch-bench"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    start = time.perf_counter()
    folder = make_files(workdir / f"files-{args.files}", args.files)
    print(f"{args.files} files ready in {time.perf_counter() - start:.0f} s", flush=True)

    import open_clip

    from mmsearch import SearchEngine

    config_path = workdir / "tiny-512.json"
    config_path.write_text(json.dumps(TINY_512))
    open_clip.add_model_config(config_path)
    samples: list[tuple[int, float]] = []
    tenth = max(args.files // 10, 1)

    def on_progress(done: int, total: int) -> None:
        if not samples or done // tenth > samples[-1][0] // tenth:
            samples.append((done, rss_mb()))
            print(f"  {done:>7} files  RSS {samples[-1][1]:7.0f} MB", flush=True)

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        engine = SearchEngine(Path(tmp) / "db", clip_model=str(config_path), clip_pretrained="", text_model="clip")
        assert engine.encoders.image is not None  # load the model before the baseline
        baseline = rss_mb()
        start = time.perf_counter()
        report = engine.index(folder, on_progress=on_progress)
        seconds = time.perf_counter() - start
        db_mb = sum(p.stat().st_size for p in Path(tmp, "db").rglob("*") if p.is_file()) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    half = [s for s in samples if s[0] >= args.files // 2]
    growth = (half[-1][1] - half[0][1]) / max(half[-1][0] - half[0][0], 1) * 10_000 if len(half) > 1 else float("nan")
    print(f"\nindexed {report.added} of {args.files} files in {seconds:.0f} s ({report.added / seconds:.0f} files/s), "
          f"{len(report.failed)} failed; database {db_mb:.0f} MB on disk")
    print(f"RSS after loading the model: {baseline:.0f} MB; at the end: {samples[-1][1]:.0f} MB; peak {peak:.0f} MB")
    print(f"growth over the second half: {growth:.1f} MB per 10k files "
          f"(the 512-d float32 vectors Chroma's HNSW index keeps in memory alone: {10_000 * 512 * 4 / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
