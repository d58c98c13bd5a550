"""Caption sources outside the image: sidecar text files and csv/jsonl manifests.

Captions inside the image (EXIF, PNG text chunks) are read by ``mmsearch.images``.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from .errors import ConfigError

Manifest = dict[str, list[str]]  # absolute image path -> captions


def sidecar_paths(image: Path) -> list[Path]:
    """Where a sidecar caption for ``image`` may live: ``cat.jpg.txt``, then ``cat.txt``."""
    return [image.with_name(image.name + ".txt"), image.with_suffix(".txt")]


def sidecar_captions(image: Path) -> list[str]:
    """Captions from sidecar files next to the image, one per non-empty line."""
    captions: list[str] = []
    for path in sidecar_paths(image):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        captions.extend(line.strip() for line in text.splitlines() if line.strip())
    return captions


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


def merge_captions(*sources: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(caption, source)`` pairs from several sources, in order; a caption text is kept once."""
    merged: dict[str, str] = {}
    for pairs in sources:
        for text, source in pairs:
            merged.setdefault(text, source)
    return list(merged.items())
