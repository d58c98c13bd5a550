"""Text in photos: OCR engines behind one interface (queries are matched against what they read in
``mmsearch.search.ocr_matcher``, and scored by the ``ocr`` signal).

Engines (``ocr_engine`` / ``MMSEARCH_OCR_ENGINE``):

- ``rapidocr`` (default): ``rapidocr-onnxruntime`` 1.4.x. Its wheel ships PP-OCRv4 detection and
  recognition models (~15 MB) that read Chinese and English, and runs them on ONNX Runtime, offline.
  (The 2.x/3.x releases download models at run time, so the 1.4 line is pinned.)
- ``tesseract``: the ``tesseract`` command (Debian ``tesseract-ocr`` plus ``tesseract-ocr-chi-sim``), for
  users who already have it. It splits Chinese characters with spaces; those are removed between CJK
  characters.

Lines read with a confidence under ``MIN_CONFIDENCE`` are dropped. Each worker thread gets its own
engine, with one ONNX Runtime thread, so OCR runs beside decoding on every core without oversubscribing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..config import OCR_ENGINES
from ..errors import ConfigError
from ..text import CJK

if TYPE_CHECKING:
    from PIL import Image

MIN_CONFIDENCE = 0.5  # lines read with less (0..1) are dropped
# A line needs this many letters, digits or CJK characters: on 4,867 icons of /usr/share/icons, 339 of the
# 351 "texts" read were one or two glyphs ("?", "+", "a", "口") that only added noise to the ocr signal.
MIN_LINE_CHARS = 2
# Photos are read at most this many pixels on the long side. benchmarks/ocr_bench.py: 640 lost small text
# (CER 0.18-0.37), 1280 and 1600 read no more than 960 at 1.7x and 2.8x its time.
OCR_SIDE = 960
_CJK_GAP = re.compile(rf"(?<=[{CJK}]) +(?=[{CJK}])")


@dataclass(frozen=True)
class OcrText:
    """What an engine read in one photo: its lines (top to bottom) and their mean confidence."""

    lines: tuple[str, ...]
    confidence: float

    @property
    def text(self) -> str:
        """The lines, one per row."""
        return "\n".join(self.lines)


class OcrEngine(Protocol):
    """Reads text in an RGB image. ``signature`` names the engine and its settings (recorded per photo);
    ``side`` is the long side, in pixels, it reads photos at (they are decoded at least that large)."""

    signature: str
    side: int

    def read(self, image: Image.Image) -> OcrText | None:
        """The text found (None when none), lines under ``MIN_CONFIDENCE`` already dropped."""
        ...


def load_ocr(name: str, side: int = OCR_SIDE) -> OcrEngine:
    """The named engine, checked to be installed (a clear message says what to install when not).

    Raises:
        ConfigError: unknown engine, or it is not installed.
    """
    if name == "rapidocr":
        return RapidOcr(side)
    if name == "tesseract":
        return Tesseract(side)
    raise ConfigError(f"unknown OCR engine {name!r}; known: {', '.join(OCR_ENGINES)}")


def word_chars(text: str) -> int:
    """Letters, digits and CJK characters in a text (what is left without punctuation and symbols)."""
    return len(re.findall(r"[^\W_]", text))


def _lines(pairs: Iterable[tuple[str, float]]) -> OcrText | None:
    kept = [(_CJK_GAP.sub("", text.strip()), score) for text, score in pairs
            if score >= MIN_CONFIDENCE and word_chars(text) >= MIN_LINE_CHARS]
    if not kept:
        return None
    return OcrText(tuple(t for t, _ in kept), round(float(np.mean([s for _, s in kept])), 4))


def _fit(image: Image.Image, side: int) -> Image.Image:
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    from PIL import Image as PILImage

    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        PILImage.Resampling.BILINEAR)


class RapidOcr:
    """PP-OCRv4 (Chinese and English) through ``rapidocr-onnxruntime`` 1.4.x, one instance per thread."""

    def __init__(self, side: int = OCR_SIDE):
        try:
            import rapidocr_onnxruntime  # noqa: F401
        except ImportError:
            raise ConfigError("OCR needs rapidocr-onnxruntime 1.4.x: pip install 'mmsearch[ocr]' "
                              "(or set MMSEARCH_OCR_ENGINE=tesseract with Debian's tesseract-ocr installed)") from None
        from importlib.metadata import version

        self.side = side
        self.signature = f"rapidocr-{version('rapidocr-onnxruntime')}/{side}"
        self._local = threading.local()

    def _engine(self) -> object:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            from rapidocr_onnxruntime import RapidOCR

            # Text at the photo's size (fitted to ``side``), not PP-OCR's default 736 px short-side upscale.
            engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, det_limit_side_len=self.side,
                              det_limit_type="max", text_score=MIN_CONFIDENCE)
            self._local.engine = engine
        return engine

    def read(self, image: Image.Image) -> OcrText | None:
        """Text lines of an RGB image."""
        pixels = np.asarray(_fit(image.convert("RGB"), self.side))[:, :, ::-1]  # RapidOCR takes BGR, as OpenCV
        result, _ = self._engine()(np.ascontiguousarray(pixels))  # type: ignore[operator]
        return _lines((str(text), float(score)) for _, text, score in (result or []))


class Tesseract:
    """The ``tesseract`` command with Simplified Chinese and English (``chi_sim+eng``)."""

    LANGUAGES = "chi_sim+eng"

    def __init__(self, side: int = OCR_SIDE, languages: str = LANGUAGES):
        binary = shutil.which("tesseract")
        if binary is None:
            raise ConfigError("the tesseract OCR engine needs the tesseract command: "
                              "apt-get install tesseract-ocr tesseract-ocr-chi-sim (or use the default rapidocr)")
        listed = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=30).stdout.split()
        missing = [lang for lang in languages.split("+") if lang not in listed]
        if missing:
            raise ConfigError(f"tesseract lacks the language data {', '.join(missing)}: "
                              f"apt-get install {' '.join('tesseract-ocr-' + m.replace('_', '-') for m in missing)}")
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.split()
        self.binary, self.languages, self.side = binary, languages, side
        self.signature = f"tesseract-{version[1] if len(version) > 1 else '?'}/{languages}/{side}"

    def read(self, image: Image.Image) -> OcrText | None:
        """Text lines of an RGB image (tesseract's TSV output: words with confidences, grouped in lines)."""
        import io

        buffer = io.BytesIO()
        _fit(image.convert("RGB"), self.side).save(buffer, "PNG")
        out = subprocess.run([self.binary, "stdin", "stdout", "-l", self.languages, "--psm", "3", "tsv"],
                             input=buffer.getvalue(), capture_output=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or "tesseract failed")
        lines: dict[tuple[str, ...], list[tuple[str, float]]] = {}
        for row in out.stdout.decode("utf-8", "replace").splitlines()[1:]:
            cells = row.split("\t")
            if len(cells) == 12 and cells[11].strip() and float(cells[10]) >= 0:
                lines.setdefault(tuple(cells[2:5]), []).append((cells[11], float(cells[10]) / 100))
        return _lines((" ".join(w for w, _ in words), float(np.mean([c for _, c in words])))
                      for words in lines.values())
