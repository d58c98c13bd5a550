"""``mmsearch export`` / ``mmsearch import``: move an index between databases without re-encoding.

An export is a folder:

- ``manifest.json``: format and version, the models and dimension that built the vectors, the indexed
  folders, record counts;
- ``images.jsonl`` / ``captions.jsonl``: one record per line (id, document, metadata);
- ``images.f32`` / ``captions.f32``: the vectors, float32, row-major, in the same order as the lines.

Both sides are streamed page by page, so memory stays flat for any index size. An import upserts
(running it twice changes nothing) and writes every caption before any image, so an interrupted import
never leaves an image without its captions; rerun it to finish.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import StoreError
from .store import PAGE, Store

FORMAT, VERSION = "mmsearch-export", 1
COLLECTIONS = ("captions", "images")  # import order: captions first


def export_index(store: Store, folder: str | Path) -> dict[str, Any]:
    """Write everything ``store`` holds to ``folder`` (created; must be empty or new). Returns the manifest."""
    folder = Path(folder)
    signature = store.signature()
    if signature is None:
        raise StoreError(f"nothing to export: {store.path} holds no index")
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise StoreError(f"export folder {folder} is not empty")
    counts = {}
    for which in COLLECTIONS:
        with open(folder / f"{which}.jsonl", "w", encoding="utf-8") as lines, open(folder / f"{which}.f32", "wb") as vecs:
            counts[which] = _export_collection(store, which, lines, vecs)
    manifest = {"format": FORMAT, "version": VERSION, **signature, "roots": store.roots(),
                "updated_at": store.updated_at(), "images": counts["images"], "captions": counts["captions"]}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def _export_collection(store: Store, which: str, lines: IO[str], vecs: IO[bytes]) -> int:
    count = 0
    for ids, vectors, metas, docs in store.records(which):
        for id_, meta, doc in zip(ids, metas, docs):
            lines.write(json.dumps({"id": id_, "document": doc, "metadata": meta}, ensure_ascii=False) + "\n")
        vecs.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        count += len(ids)
    return count


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an export folder, checked.

    Raises:
        StoreError: not an mmsearch export, or a newer format, or files that do not match it.
    """
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{folder} is not an mmsearch export: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("version", 0) > VERSION:
        raise StoreError(f"{folder} is not an mmsearch export of version {VERSION} or older")
    for which in COLLECTIONS:
        expected = manifest[which] * manifest["dim"] * 4
        if os.path.getsize(folder / f"{which}.f32") != expected:
            raise StoreError(f"{folder / (which + '.f32')} is truncated or does not match manifest.json")
    return manifest


def import_index(store: Store, folder: str | Path) -> dict[str, Any]:
    """Load an export into ``store``, which must be empty or built by the same models. Returns the manifest.

    Raises:
        IndexMismatchError: ``store`` holds vectors of other models or another dimension.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    store.create({"image_model": manifest["image_model"], "text_model": manifest["text_model"]}, manifest["dim"])
    for which in COLLECTIONS:
        vectors = np.memmap(folder / f"{which}.f32", dtype="<f4", mode="r").reshape(-1, manifest["dim"]) \
            if manifest[which] else np.zeros((0, manifest["dim"]), np.float32)
        with open(folder / f"{which}.jsonl", encoding="utf-8") as lines:
            start = 0
            while batch := [json.loads(line) for _, line in zip(range(PAGE), lines)]:
                store.write_records(which, [r["id"] for r in batch], np.asarray(vectors[start:start + len(batch)]),
                                    [r["metadata"] for r in batch], [r["document"] for r in batch])
                start += len(batch)
    store.add_roots(manifest["roots"])
    return manifest
