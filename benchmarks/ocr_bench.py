"""OCR accuracy against time: character error rate per language and seconds per photo, for each engine and
recognition size, on photos rendered here (signs on plain or busy backgrounds, slightly rotated, JPEG
compressed). All engines read the same photos in one run.

    .venv/bin/python benchmarks/ocr_bench.py                       # rapidocr at 640/960/1280/1600 px, tesseract
    .venv/bin/python benchmarks/ocr_bench.py --sides 1280 --engines rapidocr
    .venv/bin/python benchmarks/ocr_bench.py --speed     # indexing images/s with OCR off and on

``--speed`` indexes sample_images/ and 100 generated 12 MP photos with signs (ViT-B-32, random weights,
the default settings) into fresh databases, with OCR off and on; model loading is outside the clock.

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
sys.path.insert(0, str(ROOT / "benchmarks"))

from PIL import Image  # noqa: E402

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


def big_photos(folder: Path, n: int) -> Path:
    """``n`` 4032x3024 JPEGs with a sign each (text 120 px high), like phone photos of signs."""
    from helpers import render_text_photo

    lines = [line for samples in TEXTS.values() for sample in samples for line in sample]
    for i in range(n):
        path = folder / f"photo{i:03d}.jpg"
        if not path.exists():
            render_text_photo(path, [lines[i % len(lines)]], size=(4032, 3024), font_size=120, busy=i % 2 == 0,
                              angle=(i % 5) - 2, seed=i, quality=88)
    return folder


def speed(workdir: Path) -> None:
    """Indexing images/s with OCR off and on, same folders, same model, fresh databases."""
    from pipeline_bench import model_files

    from mmsearch import SearchEngine
    from mmsearch.media.ocr import load_ocr

    name, ckpt = model_files(workdir, "vit")
    folders = {"sample_images": ROOT / "sample_images", "100 photos of 12 MP": big_photos(workdir / "ocr-12mp", 100)}
    print(f"{'folder':<20} {'OCR off':>9} {'OCR on':>9}  images/s (ViT-B-32 fp32, CPU, default settings)")
    for label, folder in folders.items():
        rates = []
        for ocr in (False, True):
            with tempfile.TemporaryDirectory() as db:
                engine = SearchEngine(db, clip_model=name, clip_pretrained=ckpt, text_model="clip", ocr=ocr)
                engine.encoders  # noqa: B018 - load the model and open the database before the clock
                engine.store  # noqa: B018
                if ocr:  # imports (onnxruntime, opencv) before the clock; each worker's session loads in the run
                    load_ocr("rapidocr").read(Image.new("RGB", (64, 64)))
                start = time.perf_counter()
                report = engine.index([folder])
                rates.append(report.added / (time.perf_counter() - start))
        print(f"{label:<20} {rates[0]:9.2f} {rates[1]:9.2f}")


def main() -> None:
    from helpers import edit_distance

    from mmsearch.media.ocr import load_ocr

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", default="640,960,1280,1600")
    parser.add_argument("--engines", default="rapidocr,tesseract")
    parser.add_argument("--speed", action="store_true", help="indexing images/s with OCR off and on")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "mmsearch-bench"))
    args = parser.parse_args()
    if args.speed:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        return speed(Path(args.workdir))
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
            errors[language][0] += edit_distance(truth.replace(" ", ""), got)
            errors[language][1] += len(truth.replace(" ", ""))
        seconds = (time.perf_counter() - start) / len(samples)
        print(f"{name:<11} {side:>5} " + " ".join(f"{e / n:12.3f}" for e, n in errors.values()) + f" {seconds:8.2f}")


if __name__ == "__main__":
    main()
