"""Near-duplicate groups: quality on generated variants of real photos, and grouping time at scale.

    .venv/bin/python benchmarks/duplicates_bench.py                    # quality on sample_images + 100k timing
    .venv/bin/python benchmarks/duplicates_bench.py --scale 20000

**Quality** (offline profile, so the perceptual hash alone decides, as the real pixels are what is
tested; CLIP weights cannot be loaded here). From every photo in ``sample_images/``:

- variants that must join the photo's group: a byte copy, half size, JPEG quality 30, PNG export,
  brightness +8 %, a 2 % crop, an EXIF-rotated copy with its pixels rotated to match;
- pairs that must stay apart: every two different photos, the left and right halves of a photo, and a
  burst-like shot (the scene shifted by 15 %).

Pair precision and recall over all pairs of files at the default thresholds.

**Scale**: ``find_groups`` on N synthetic records (random 64-bit hashes, one in 20 with a near copy 0-6
bits away) and unit vectors, timed end to end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ("copy", "half", "q30", "png", "bright", "crop", "rotated")


def make_set(folder: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Writes the files; returns file -> family (photo) for variants, and the pairs that must stay apart."""
    import shutil

    from PIL import Image, ImageEnhance

    family, apart = {}, []
    sources = sorted(p for p in (ROOT / "sample_images").iterdir() if p.suffix in (".jpg", ".png"))
    for src in sources:
        name = src.stem
        base = Image.open(src).convert("RGB")
        out = folder / name
        out.mkdir(parents=True, exist_ok=True)
        original = out / f"{name}{src.suffix}"
        shutil.copy(src, original)
        files = {"original": original}
        files["copy"] = out / f"copy-{name}{src.suffix}"
        shutil.copy(src, files["copy"])
        files.update({v: out / f"{name}-{v}.{'png' if v == 'png' else 'jpg'}" for v in VARIANTS[1:]})
        base.resize((max(1, base.width // 2), max(1, base.height // 2))).save(files["half"], quality=90)
        base.save(files["q30"], quality=30)
        base.save(files["png"])
        ImageEnhance.Brightness(base).enhance(1.08).save(files["bright"], quality=92)
        dx, dy = base.width // 50, base.height // 50
        base.crop((dx, dy, base.width - dx, base.height - dy)).save(files["crop"], quality=92)
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 CW to display: store the pixels turned the other way
        base.rotate(90, expand=True).save(files["rotated"], quality=92, exif=exif)
        for path in files.values():
            family[str(path)] = name
        half = base.width // 2
        left, right = out.parent / f"{name}-left.png", out.parent / f"{name}-right.png"
        base.crop((0, 0, half, base.height)).save(left)
        base.crop((half, 0, base.width, base.height)).save(right)
        shift = int(base.width * 0.15)
        burst = out.parent / f"{name}-burst.jpg"
        moved = Image.new("RGB", base.size)
        moved.paste(base.crop((shift, 0, base.width, base.height)), (0, 0))
        moved.paste(base.crop((0, 0, shift, base.height)).transpose(Image.Transpose.FLIP_LEFT_RIGHT), (base.width - shift, 0))
        moved.save(burst, quality=92)
        apart += [(str(left), str(right)), (str(original), str(burst))]
    return family, apart


def quality(workdir: Path) -> dict[str, float]:
    from mmsearch import Config, SearchEngine

    family, apart = make_set(workdir / "photos")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(workdir / "db"))))
    engine.index([workdir / "photos"])
    groups = engine.duplicates()
    grouped = {p: n for n, g in enumerate(groups) for p in g.files}
    found = {frozenset(pair) for g in groups for pair in itertools.combinations(g.files, 2)}
    truth = {frozenset(pair) for pair in itertools.combinations(family, 2) if family[pair[0]] == family[pair[1]]}
    true_positive = len(found & truth)
    precision = true_positive / len(found) if found else 1.0
    recall = true_positive / len(truth) if truth else 1.0
    apart_broken = sum(1 for a, b in apart if a in grouped and grouped.get(a) == grouped.get(b))
    return {"groups": len(groups), "pairs found": len(found), "true pairs": len(truth), "precision": precision,
            "recall": recall, "must-stay-apart pairs grouped": apart_broken, "must-stay-apart pairs": len(apart)}


def scale(n: int) -> float:
    import numpy as np

    from mmsearch.duplicates import find_groups

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    hashes += rng.integers(0, 2, n).astype(np.uint64)
    for i in range(0, n, 20):  # a near copy
        flips = rng.choice(64, rng.integers(0, 7), replace=False)
        hashes[(i + 1) % n] = hashes[i] ^ np.uint64(sum(1 << int(f) for f in flips))
    vectors = rng.standard_normal((n, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [(f"id{i}", {"path": f"/p/{i}.jpg", "phash": f"{int(h):016x}", "sha256": f"s{i}", "width": 100,
                           "height": 100, "size": 1000 + i, "date": i}) for i, h in enumerate(hashes)]
    index = {f"id{i}": vectors[i] for i in range(n)}
    start = time.perf_counter()
    groups = find_groups(records, lambda ids: {i: index[i] for i in ids}, min_cosine=-1.0)
    seconds = time.perf_counter() - start
    print(f"{n:,} images: {len(groups):,} groups in {seconds:.1f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for key, value in quality(Path(tmp)).items():
            print(f"{key:<32} {value:.3f}" if isinstance(value, float) else f"{key:<32} {value}")
    scale(args.scale)


if __name__ == "__main__":
    main()
