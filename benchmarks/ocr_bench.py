"""OCR accuracy against time: character error rate per language and seconds per photo, for each engine and
recognition size, on photos rendered here (signs on plain or busy backgrounds, slightly rotated, JPEG
compressed). All engines read the same photos in one run.

    .venv/bin/python benchmarks/ocr_bench.py                       # rapidocr at 640/960/1280/1600 px, tesseract
    .venv/bin/python benchmarks/ocr_bench.py --sides 1280 --engines rapidocr

CER = edit distance / length of the true text, whitespace removed (engines differ in where they put
spaces, and search ignores them), case kept. Needs fonts-dejavu-core and fonts-noto-cjk.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TEXTS = {
    "English": [["GATE B42 BOARDING"], ["ROOM 1208", "NO SMOKING"], ["EMERGENCY EXIT"], ["Opening hours 9:00-21:00"],
                ["Platform 7 to Cambridge"], ["SALE 50% OFF"]],
    "German": [["Bäckerei Müller"], ["Größe 42", "Straße"], ["Ausgang links"], ["Öffnungszeiten 8-18 Uhr"],
               ["Fußgängerzone"], ["Nicht betreten"]],
    "Chinese": [["北京欢迎你"], ["营业时间9:00-21:00"], ["出口"], ["禁止吸烟"], ["会议室1208"], ["欢迎光临 本店"]],
}


def photos(folder: Path) -> list[tuple[str, Path, str]]:
    """(language, photo, true text) for every sample: plain, busy, rotated and compressed variants."""
    from helpers import render_text_photo

    out = []
    for language, samples in TEXTS.items():
        for n, lines in enumerate(samples):
            path = render_text_photo(folder / f"{language}-{n}.jpg", lines, size=(2000, 1333),
                                     font_size=(72, 36, 24, 48, 18, 14)[n],
                                     angle=(-3, 0, 2, 4, -1, 0)[n], busy=n % 2 == 1, quality=(90, 60, 75, 50, 85, 70)[n],
                                     seed=n)
            out.append((language, path, "".join(lines)))
    return out


def distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def main() -> None:
    from PIL import Image

    from mmsearch.ocr import load_ocr

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", default="640,960,1280,1600")
    parser.add_argument("--engines", default="rapidocr,tesseract")
    args = parser.parse_args()
    samples = photos(Path(tempfile.mkdtemp()))
    configs = [(e, int(s)) for e in args.engines.split(",") for s in (args.sides.split(",") if e == "rapidocr" else ["1280"])]
    print(f"{len(samples)} photos of 2000x1333 (text 14-72 px high), {len(TEXTS)} languages\n")
    print(f"{'engine':<11} {'side':>5} " + " ".join(f"{lang + ' CER':>12}" for lang in TEXTS) + f" {'s/photo':>8}")
    for name, side in configs:
        engine = load_ocr(name, side)
        engine.read(Image.new("RGB", (64, 64)))  # load the models before the clock
        errors = {lang: [0, 0] for lang in TEXTS}
        start = time.perf_counter()
        for language, path, truth in samples:
            with Image.open(path) as image:
                found = engine.read(image.convert("RGB"))
            got = "".join((found.text if found else "").split())
            errors[language][0] += distance(truth.replace(" ", ""), got)
            errors[language][1] += len(truth.replace(" ", ""))
        seconds = (time.perf_counter() - start) / len(samples)
        print(f"{name:<11} {side:>5} " + " ".join(f"{e / n:12.3f}" for e, n in errors.values()) + f" {seconds:8.2f}")


if __name__ == "__main__":
    main()
