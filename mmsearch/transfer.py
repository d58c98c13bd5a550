"""``mmsearch export`` / ``mmsearch import``: move an index between databases without re-encoding.

An export is a folder:

- ``manifest.json``: format and version, the models and dimension that built the vectors, the indexed
  folders, record counts;
- ``images.jsonl`` / ``captions.jsonl`` / ``ocr.jsonl`` (text read in photos): one record per line
  (id, document, metadata);
- ``images.f32`` / ``captions.f32`` / ``ocr.f32``: the vectors, float32, row-major, in the same order as
  the lines. Exports made before OCR have no ``ocr`` files; they import as before.

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
from .ingest.meter import Meter
from .store.client import Store
from .store.collections import PAGE

FORMAT, VERSION = "mmsearch-export", 1
COLLECTIONS = ("captions", "ocr", "frames", "images", "albums")  # import order: what points to an image first


def export_index(store: Store, folder: str | Path, progress: bool = False) -> dict[str, Any]:
    """Write everything ``store`` holds to ``folder`` (created; must be empty or new). Returns the manifest.

    The manifest records the schema version and the model settings, so an import upgrades the records
    the same way and keeps the index's models."""
    folder = Path(folder)
    signature = store.signature()
    if signature is None:
        raise StoreError(f"nothing to export: {store.path} holds no index")
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise StoreError(f"export folder {folder} is not empty")
    counts, dims = {}, {}
    for which in COLLECTIONS:
        with open(folder / f"{which}.jsonl", "w", encoding="utf-8") as lines, open(folder / f"{which}.f32", "wb") as vecs, \
                _bar(f"exporting {which}", progress) as bar:
            counts[which], dims[which] = _export_collection(store, which, lines, vecs, bar)
    manifest = {"format": FORMAT, "version": VERSION, **signature, "models": store.models(), "roots": store.roots(),
                "updated_at": store.updated_at(), "images": counts["images"], "captions": counts["captions"],
                "ocr": counts["ocr"], "frames": counts["frames"], "albums": counts["albums"],
                "ocr_engine": store.ocr_setting(),
                # Captions and photo text have the caption model's dimension when the index has one.
                "dims": {which: dim or signature["dim"] for which, dim in dims.items()}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def _export_collection(store: Store, which: str, lines: IO[str], vecs: IO[bytes], bar: Meter) -> tuple[int, int]:
    """Write one collection; returns (records, their dimension or 0 when there are none)."""
    count = dim = 0
    for ids, vectors, metas, docs in store.records(which):
        dim = vectors.shape[1] if vectors.ndim == 2 else dim
        for id_, meta, doc in zip(ids, metas, docs):
            lines.write(json.dumps({"id": id_, "document": doc, "metadata": meta}, ensure_ascii=False) + "\n")
        vecs.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        count += len(ids)
        bar.update(len(ids))
    return count, dim


def _bar(what: str, progress: bool, total: int | None = None) -> Meter:
    return Meter(what, total, unit="records", enabled=progress)


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
        expected = manifest.get(which, 0) * _dim(manifest, which) * 4
        if expected == 0 and not (folder / f"{which}.f32").exists():
            continue
        if os.path.getsize(folder / f"{which}.f32") != expected:
            raise StoreError(f"{folder / (which + '.f32')} is truncated or does not match manifest.json")
    return manifest


def _dim(manifest: dict[str, Any], which: str) -> int:
    """The vector dimension of one collection of an export (older exports: one for all)."""
    return int((manifest.get("dims") or {}).get(which) or manifest["dim"])


def import_index(store: Store, folder: str | Path, progress: bool = False) -> dict[str, Any]:
    """Load an export into ``store``, which must be empty or built by the same models.

    Records already present with the same content are not written again. An export of an older schema is
    upgraded after loading, as the next writer of the exporting index would have.

    Returns:
        The manifest, plus ``new`` and ``present``: per collection, records written and records that
        were already there.

    Raises:
        IndexMismatchError: ``store`` holds vectors of other models or another dimension.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    store.create({"image_model": manifest["image_model"], "text_model": manifest["text_model"],
                  "caption_model": manifest.get("caption_model") or manifest["text_model"]}, manifest["dim"],
                 manifest.get("models"), version=int(manifest.get("schema", 0)))
    new, present = {}, {}
    for which in COLLECTIONS:
        new[which] = present[which] = 0
        if not manifest.get(which):
            continue
        vectors = np.memmap(folder / f"{which}.f32", dtype="<f4", mode="r").reshape(-1, _dim(manifest, which))
        with open(folder / f"{which}.jsonl", encoding="utf-8") as lines, \
                _bar(f"importing {which}", progress, manifest[which]) as bar:
            start = 0
            while batch := [json.loads(line) for _, line in zip(range(PAGE), lines)]:
                chunk = np.asarray(vectors[start:start + len(batch)])
                fresh = store.differing(which, [r["id"] for r in batch], chunk, [r["metadata"] for r in batch])
                rows = [n for n, r in enumerate(batch) if r["id"] in fresh]
                if rows:
                    store.write_records(which, [batch[n]["id"] for n in rows], chunk[rows],
                                        [batch[n]["metadata"] for n in rows], [batch[n]["document"] for n in rows])
                new[which] += len(rows)
                present[which] += len(batch) - len(rows)
                start += len(batch)
                bar.update(len(batch))
    store.add_roots(manifest["roots"])
    if manifest.get("ocr_engine") and not store.ocr_setting():
        store.set_ocr_setting(manifest["ocr_engine"])
    store.upgrade()
    return {**manifest, "new": new, "present": present}
