"""Caption sources outside the image: sidecar text files and csv/jsonl manifests.

Captions inside the image (EXIF, PNG text chunks) are read by ``mmsearch.media.images``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..paths import within_any

Manifest = dict[str, list[str]]  # absolute image path -> captions
SIDECAR_MAX_BYTES = 64 * 1024  # a caption file larger than this is not a caption file


def sidecar_paths(image: Path) -> list[Path]:
    """Where a sidecar caption for ``image`` may live: ``cat.jpg.txt``, then ``cat.txt``."""
    return [image.with_name(image.name + ".txt"), image.with_suffix(".txt")]


def sidecar_captions(image: Path, roots: Sequence[str] = (), problems: list[tuple[str, str]] | None = None) -> list[str]:
    """Captions from sidecar files next to the image, one per non-empty line.

    A sidecar is read only when it is a regular file of at most ``SIDECAR_MAX_BYTES``, in UTF-8 (or
    UTF-16 with a byte-order mark), and, if it is a symbolic link, one that stays inside the indexed
    ``roots``. Anything else is left out, and ``(sidecar path, reason)`` is added to ``problems``.
    """
    captions: list[str] = []
    for path in sidecar_paths(image):
        try:
            text = read_sidecar(path, roots)
        except ConfigError as exc:
            if problems is not None:
                problems.append((str(path), str(exc)))
            continue
        if text is not None:
            captions.extend(line.strip() for line in text.splitlines() if line.strip())
    return captions


def read_sidecar(path: Path, roots: Sequence[str] = ()) -> str | None:
    """The text of one sidecar file; None when there is none.

    Raises:
        ConfigError: the file exists but must not or cannot be read (the message says why).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ConfigError("sidecar is a broken symbolic link") from None
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read sidecar: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError("sidecar is not a regular file (a pipe or device is never read)")
    if os.path.islink(path) and roots and not within_any(os.path.realpath(path), [os.path.realpath(r) for r in roots]):
        raise ConfigError("sidecar is a symbolic link to a file outside the indexed folders")
    if info.st_size > SIDECAR_MAX_BYTES:
        raise ConfigError(f"sidecar is {info.st_size:,} bytes; captions are read from files of at most "
                          f"{SIDECAR_MAX_BYTES:,} bytes")
    try:
        with open(path, "rb") as handle:
            data = handle.read(SIDECAR_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read sidecar: {exc.strerror or exc}") from None
    return decode_text(data)


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), or UTF-16 with a BOM; NUL characters are dropped.

    Raises:
        ConfigError: the bytes are not text in one of those encodings.
    """
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"sidecar is not UTF-8 or UTF-16 text (byte {exc.start})") from None
    return text.replace("\x00", "")



def load_manifest(path: str | Path) -> Manifest:
    """Read a ``.csv`` (columns ``path,caption``) or ``.jsonl`` (keys ``path``, ``caption``) manifest.

    Several rows may name one image. Relative paths are relative to the manifest's folder.

    Raises:
        ConfigError: the file is missing, has an unknown extension, or a row lacks path or caption.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"captions file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(path)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(path)
    else:
        raise ConfigError(f"captions file {path} must end in .csv or .jsonl")
    manifest: Manifest = defaultdict(list)
    base = path.resolve().parent
    for line, image, caption in rows:
        if not image or not caption:
            raise ConfigError(f"{path}:{line}: each row needs a path and a caption")
        captions = caption if isinstance(caption, list) else [caption]
        manifest[str((base / image).resolve())].extend(str(c).strip() for c in captions if str(c).strip())
    return dict(manifest)


def _csv_rows(path: Path) -> list[tuple[int, str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "caption"} <= set(reader.fieldnames):
            raise ConfigError(f"{path}: the first row must name the columns path,caption")
        return [(n, (row["path"] or "").strip(), (row["caption"] or "").strip()) for n, row in enumerate(reader, 2)]


def _jsonl_rows(path: Path) -> list[tuple[int, str, str]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{n}: each line must be a JSON object with path and caption")
        rows.append((n, str(record.get("path") or "").strip(), record.get("caption") or ""))
    return rows


# Text that tools and cameras write into description fields, which describes nothing. One list, each
# entry tested (tests/test_captions.py). Compared lowercased, without surrounding spaces and padding.
BOILERPLATE = frozenset({
    "olympus digital camera", "samsung", "dcim", "default", "png", "jpeg", "jpg", "image", "picture", "photo",
    "untitled", "mimetypes", "adwaita icon template", "sony dsc", "konica minolta digital camera",
    "minolta digital camera", "digital camera", "camera", "exif_jpeg_picture", "exif jpeg", "screenshot", "nikon",
    "canon", "hdr", "<unknown>", "unknown", "user comments", "ascii", "description", "no description", "none",
    "lead technologies inc. v1.01", "adwaita folder icons", "vivitar", "kodak", "fujifilm", "panasonic", "sony",
    "huawei", "xiaomi",
})
BOILERPLATE_PATTERNS = tuple(re.compile(p) for p in (
    r"^created with (the )?gimp\b",  # GIMP's default PNG comment
    r"^(generated|created|made|edited|processed|optimi[sz]ed|exported|cropped) (by|with|using) ",
    r"^(inkscape|adobe (photoshop|imageready|illustrator)|paint\.net|picasa|pngcrush|optipng)\b",
    r"^file (written|created|saved) (by|with) ",  # Photoshop 5's PNG comment ("File written by Adobe Photoshop? 5.0")
    r"^(https?://|www\.)\S+$",  # a bare link
    r"^(copyright|\(c\)|©)",  # rights, not a description
    r"^based (on|of) .*\bwork\b",  # credits ("Based of Jakub Steiner work")
    r"^rendered (by|with) ",  # renderer notes (POV-Ray)
    r"^(img|dsc|dscn|dscf|pict|p|image)[ _-]?\d+(\.\w+)?$",  # a camera's file name
    r"^[\W_\d]*$",  # padding, digits and punctuation only
))


def is_boilerplate(text: str, camera: str | None = None) -> bool:
    """Whether an embedded caption is tool or camera boilerplate rather than a description."""
    clean = " ".join(text.split()).strip().lower()
    if not clean or clean in BOILERPLATE or (camera and clean in camera.lower()):  # the make or model again
        return True
    return any(p.search(clean) for p in BOILERPLATE_PATTERNS)


def merge_captions(*sources: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(caption, source)`` pairs from several sources, in order; a caption text is kept once."""
    merged: dict[str, str] = {}
    for pairs in sources:
        for text, source in pairs:
            merged.setdefault(text, source)
    return list(merged.items())
