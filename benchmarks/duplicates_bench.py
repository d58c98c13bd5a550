"""Near-duplicate groups: quality on generated variants of real photos, and grouping time at scale.

    .venv/bin/python benchmarks/duplicates_bench.py                    # quality on sample_images + 100k timing
    .venv/bin/python benchmarks/duplicates_bench.py --scale 20000

**Quality** (offline profile, so the perceptual hash alone decides, as the real pixels are what is
tested; CLIP weights cannot be loaded here). From every photo in ``sample_images/``:

- variants that must join the photo's group: a byte copy, half size, JPEG quality 30, PNG export,
  brightness +8 %, a 2 % crop, an EXIF-rotated copy with its pixels rotated to match;
- pairs that must stay apart: every two different photos, the left and right halves of a photo, and a
  burst-like shot (the scene shifted by 15 %);
- pictures that hash alike but are different (each its own photo): flat colours (red, blue, white, black,
  grey) and a blank graph, one generated battery icon at 20/40/60/80 % charge, one volume icon at four
  levels; and, where this machine has them, Adwaita's 64 px symbolic battery, volume and signal icons
  (their own row: a 10 % step moves a few pixels of a 64 px icon).

Pair precision and recall over all pairs of files at the default thresholds, and how many pairs of the
look-alike sets were grouped.

**Scale**: ``find_groups`` on N synthetic records (random 64-bit hashes, one in 20 with a near copy 0-6
bits away) and unit vectors, timed end to end; then the hash pairs alone, by lookup and (up to
``--compare-limit`` images) by comparing every pair, side by side.
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


def lookalikes(folder: Path) -> dict[str, list[str]]:
    """Writes the look-alike sets (module docstring); returns set name -> its files."""
    import glob
    import shutil

    from PIL import Image, ImageDraw

    sets: dict[str, list[str]] = {"flat colours and a blank graph": [], "generated icon states": []}
    (folder / "flat").mkdir(parents=True, exist_ok=True)
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 40, 220)), ("white", (255, 255, 255)),
                         ("black", (0, 0, 0)), ("grey", (128, 128, 128))):
        Image.new("RGB", (64, 64), colour).save(folder / "flat" / f"{name}.png")
        sets["flat colours and a blank graph"].append(str(folder / "flat" / f"{name}.png"))
    graph = Image.new("RGB", (400, 300), "white")
    for x in range(0, 400, 40):
        ImageDraw.Draw(graph).line((x, 0, x, 300), fill=(225, 225, 225))
    graph.save(folder / "flat" / "blank-graph.png")
    sets["flat colours and a blank graph"].append(str(folder / "flat" / "blank-graph.png"))
    (folder / "icons").mkdir(exist_ok=True)
    for level in (20, 40, 60, 80):
        icon = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
        draw = ImageDraw.Draw(icon)
        draw.rectangle((14, 8, 34, 44), outline=(60, 60, 60, 255), width=2)
        draw.rectangle((17, 42 - int(32 * level / 100), 31, 41), fill=(40, 200, 40, 255))
        icon.save(folder / "icons" / f"battery-{level}.png")
        sets["generated icon states"].append(str(folder / "icons" / f"battery-{level}.png"))
    for bars in range(4):
        icon = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
        draw = ImageDraw.Draw(icon)
        draw.polygon([(6, 18), (14, 18), (22, 10), (22, 38), (14, 30), (6, 30)], fill=(50, 50, 50, 255))
        for n in range(bars):
            draw.arc((14 - 5 * n, 8 - 5 * n, 34 + 5 * n, 40 + 5 * n), -45, 45, fill=(50, 50, 50, 255), width=3)
        icon.save(folder / "icons" / f"volume-{bars}.png")
        sets["generated icon states"].append(str(folder / "icons" / f"volume-{bars}.png"))
    adwaita = sorted(glob.glob("/usr/share/icons/Adwaita/64x64/status/battery-level-*0-symbolic.symbolic.png")
                     + glob.glob("/usr/share/icons/Adwaita/64x64/status/audio-volume-*-symbolic.symbolic.png")
                     + glob.glob("/usr/share/icons/Adwaita/64x64/status/network-wireless-signal-*-symbolic.symbolic.png"))
    if adwaita:
        (folder / "adwaita").mkdir(exist_ok=True)
        seen: set[bytes] = set()
        sets["Adwaita symbolic states (this machine)"] = []
        for path in adwaita:
            data = Path(path).read_bytes()
            if data in seen:  # byte-identical files (50 % and 60 %) are one picture: left out
                continue
            seen.add(data)
            shutil.copy(path, folder / "adwaita" / Path(path).name)
            sets["Adwaita symbolic states (this machine)"].append(str(folder / "adwaita" / Path(path).name))
    return sets


def quality(workdir: Path) -> dict[str, float]:
    from mmsearch import Config, SearchEngine

    family, apart = make_set(workdir / "photos")
    alike = lookalikes(workdir / "photos" / "lookalikes")
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
    result = {"groups": len(groups), "pairs found": len(found), "true pairs": len(truth), "precision": precision,
              "recall": recall, "must-stay-apart pairs grouped": apart_broken, "must-stay-apart pairs": len(apart)}
    for name, files in alike.items():
        pairs = list(itertools.combinations(files, 2))
        grouped_pairs = sum(1 for a, b in pairs if a in grouped and grouped.get(a) == grouped.get(b))
        result[f"{name}: pairs grouped"] = f"{grouped_pairs} of {len(pairs)}"
    return result


def scale(n: int, compare_limit: int = 200_000) -> float:
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
    pairs(hashes, compare_every=n <= compare_limit)
    return seconds


def pairs(hashes, compare_every: bool) -> None:
    """The hash pairs within 8 bits, by lookup (multi-index hashing, what ``find_groups`` uses at this size)
    and, side by side in this run, by comparing every pair (what it did before)."""
    import numpy as np

    from mmsearch.hamming import every_pair, indexed_pairs

    has = np.ones(len(hashes), bool)
    start = time.perf_counter()
    found = indexed_pairs(hashes, has, 8)
    indexed = time.perf_counter() - start
    line = f"  hash pairs within 8 bits: by lookup {indexed:.1f} s"
    if compare_every:
        start = time.perf_counter()
        same = every_pair(hashes, has, 8) == found
        brute = time.perf_counter() - start
        line += f", comparing every pair {brute:.1f} s ({brute / indexed:.0f}x), the same pairs: {same}"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--compare-limit", type=int, default=200_000,
                        help="compare every pair too up to this many images (n²: 4 min at 200k)")
    parser.add_argument("--scale-only", action="store_true", help="skip the quality half")
    args = parser.parse_args()
    if not args.scale_only:
        with tempfile.TemporaryDirectory() as tmp:
            for key, value in quality(Path(tmp)).items():
                print(f"{key:<32} {value:.3f}" if isinstance(value, float) else f"{key:<32} {value}")
    scale(args.scale, args.compare_limit)


if __name__ == "__main__":
    main()
