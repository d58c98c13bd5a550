"""Every real-world kind of image file is read correctly; every bad one is skipped with a reason.

The corpus is generated here rather than committed as binaries.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmsearch.media.images import read_image

RED, BLUE, GREEN, WHITE = (220, 20, 20), (20, 20, 220), (20, 200, 20), (255, 255, 255)


def _bytes(image: Image.Image, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def _close(pixel: tuple[int, ...], want: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, want))


def _upright() -> Image.Image:
    """40x20, red everywhere but a blue top-left square: every rotation or flip of it looks different."""
    image = Image.new("RGB", (40, 20), RED)
    image.paste(BLUE, (0, 0, 10, 10))
    return image


# EXIF orientation -> the transpose that shows the stored pixels upright (EXIF 2.32, as Pillow applies it)
SHOW = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90}
INVERSE = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_shown_upright(orientation):
    stored = _upright()
    if orientation > 1:
        show = SHOW[orientation]
        stored = stored.transpose(INVERSE.get(show, show))
    exif = Image.Exif()
    exif[0x0112] = orientation
    rgb, info = read_image(_bytes(stored, "JPEG", exif=exif, quality=95))
    assert rgb.size == (40, 20) and (info.width, info.height) == (40, 20)
    assert _close(rgb.getpixel((3, 3)), BLUE) and _close(rgb.getpixel((36, 16)), RED)


@pytest.mark.parametrize(("name", "data", "colour"), [
    ("baseline jpeg", lambda: _bytes(Image.new("RGB", (32, 32), RED), "JPEG"), RED),
    ("progressive jpeg", lambda: _bytes(Image.new("RGB", (32, 32), GREEN), "JPEG", progressive=True), GREEN),
    ("cmyk jpeg", lambda: _bytes(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"), (255, 0, 0)),
    ("palette png", lambda: _bytes(Image.new("RGB", (32, 32), BLUE).convert("P"), "PNG"), BLUE),
    ("grey png", lambda: _bytes(Image.new("L", (32, 32), 128), "PNG"), (128, 128, 128)),
    ("16-bit png", lambda: _bytes(Image.new("I;16", (32, 32), 65535), "PNG"), WHITE),
    ("transparent png", lambda: _bytes(Image.new("RGBA", (32, 32), (0, 0, 0, 0)), "PNG"), WHITE),
    ("transparent palette gif", lambda: _bytes(Image.new("P", (32, 32), 0), "GIF", transparency=0), WHITE),
    ("animated gif: first frame", lambda: _bytes(Image.new("RGB", (32, 32), RED), "GIF", save_all=True,
                                                  append_images=[Image.new("RGB", (32, 32), BLUE)]), RED),
    ("webp", lambda: _bytes(Image.new("RGB", (32, 32), GREEN), "WEBP", quality=95), GREEN),
    ("bmp", lambda: _bytes(Image.new("RGB", (32, 32), BLUE), "BMP"), BLUE),
    ("multi-page tiff: first page", lambda: _bytes(Image.new("RGB", (32, 32), GREEN), "TIFF", save_all=True,
                                                   append_images=[Image.new("RGB", (32, 32), RED)]), GREEN),
    ("1x1 png", lambda: _bytes(Image.new("RGB", (1, 1), RED), "PNG"), RED),
])
def test_formats_are_prepared_as_upright_rgb(name, data, colour):
    rgb, info = read_image(data())
    assert rgb.mode == "RGB"
    assert _close(rgb.getpixel((0, 0)), colour), (name, rgb.getpixel((0, 0)))


def _declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares a huge size but holds almost no data (a decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[str], dict[str, str]]:
    """A messy photo folder: (root, files that must be indexed, bad file -> start of its reason)."""
    root = tmp_path / "messy photos"
    (root / "2019 trip").mkdir(parents=True)
    good = {
        "phone.jpg": _bytes(Image.new("RGB", (4032, 3024), RED), "JPEG", quality=85),
        "2019 trip/écran ünïcode 猫.png": _bytes(Image.new("RGB", (64, 48), BLUE), "PNG"),
        "2019 trip/scan.tif": _bytes(Image.new("CMYK", (64, 64), (0, 0, 0, 40)), "TIFF"),
        "anim.gif": _bytes(Image.new("RGB", (8, 8), RED), "GIF", save_all=True, append_images=[Image.new("RGB", (8, 8))]),
        "tiny.webp": _bytes(Image.new("RGB", (1, 1), GREEN), "WEBP"),
        "old.BMP": _bytes(Image.new("RGB", (16, 16), GREEN), "BMP"),
    }
    jpeg = _bytes(Image.new("RGB", (300, 200), GREEN), "JPEG")
    bad = {
        "half-copied.jpg": (jpeg[: len(jpeg) // 2], "cannot decode: image file is truncated"),
        "empty.png": (b"", "empty file (0 bytes)"),
        "notes.jpg": (b"shopping list: milk, eggs", "not an image Pillow can identify"),
        "bomb.png": (_declared_png(30000, 30000), "refused"),
        "secret.jpg": (jpeg, "cannot read: Permission denied"),
    }
    for rel, data in good.items():
        (root / rel).write_bytes(data)
    for rel, (data, _) in bad.items():
        (root / rel).write_bytes(data)
    reasons = {str(root / rel): reason for rel, (_, reason) in bad.items()}
    (root / "broken link.jpg").symlink_to(root / "deleted.jpg")
    reasons[str(root / "broken link.jpg")] = "broken symbolic link"
    os.mkfifo(root / "pipe.jpg")  # reading a FIFO would block forever
    reasons[str(root / "pipe.jpg")] = "not a regular file"
    (root / "2019 trip" / "loop").symlink_to(root)  # a symlink loop
    (root / ".thumbnails").mkdir()
    (root / ".thumbnails" / "t.jpg").write_bytes(jpeg)  # hidden: skipped by default
    bad_name = os.fsencode(str(root)) + b"/caf\xe9-latin1.jpg"
    with open(bad_name, "wb") as handle:
        handle.write(jpeg)
    reasons[os.fsdecode(bad_name)] = "file name is not valid UTF-8"
    return root, [str(root / rel) for rel in good], reasons


@pytest.mark.parametrize("ocr", [False, True], ids=["", "ocr"])
def test_a_messy_folder_is_indexed_with_every_skip_explained(make_engine, corpus, monkeypatch, ocr):
    root, good, reasons = corpus
    import builtins

    def fake_open(path, *args, **kwargs):  # tests run as root, which chmod cannot lock out
        if str(path).endswith("secret.jpg"):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr("mmsearch.media.images.open", fake_open, raising=False)
    engine = make_engine(ocr=ocr)
    report = engine.index([root])
    assert report.added == len(good) and report.removed == 0
    assert report.ocr_read == (len(good) if ocr else 0) and report.ocr_failed == []
    failed = dict(report.failed)
    assert sorted(failed) == sorted(reasons)
    for path, reason in reasons.items():
        assert failed[path].startswith(reason), (path, failed[path])
    hits = engine.search("anything", k=50)
    assert sorted(h.path for h in hits) == sorted(good)  # the loop added no second copy; hidden stayed out
    phone = next(h for h in hits if h.path.endswith("phone.jpg"))
    assert (phone.metadata["width"], phone.metadata["height"]) == (4032, 3024)

    again = engine.index([root], hidden=True)
    assert again.unchanged == len(good) and again.added == 1  # .thumbnails/t.jpg
    assert not np.isnan([h.score for h in engine.search("anything", k=50)]).any()
