"""Schema versions of an index and the ordered steps that upgrade an older one.

The version lives in the image collection's metadata (``schema_version``). A new index is created at
``SCHEMA``. A writer (``engine.index``, ``serve``, ``import``) runs every step above the stored version,
in order, recording each version as it completes, so an interrupted upgrade resumes at the step it
stopped in. Readers open any version up to ``SCHEMA``; a newer one is refused with both numbers.

Adding a field or a collection: write a step ``def _vN(store) -> None`` that is safe to run twice,
append it to ``STEPS`` and raise ``SCHEMA``. (After rclip's ``db.py`` and llm's numbered migrations.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import StoreError

if TYPE_CHECKING:
    from .client import Store

SCHEMA = 7
VERSION_KEY = "schema_version"  # indexes written before versions were read carry none: version 0


def stored_version(meta: dict[str, Any]) -> int:
    """The schema version recorded in an image collection's metadata (0 when none is)."""
    return int(meta.get(VERSION_KEY, 0))


def check_readable(version: int, where: str) -> None:
    """Refuse an index written by a newer mmsearch than this one.

    Raises:
        StoreError: ``version`` is above ``SCHEMA``.
    """
    if version > SCHEMA:
        raise StoreError(f"the index at {where} has schema {version}, but this mmsearch knows schema {SCHEMA} "
                         "at most; upgrade mmsearch to use it")


def upgrade(store: Store) -> list[int]:
    """Run the steps above the index's version, in order; returns the versions it upgraded through."""
    done = []
    version = store.schema_version()
    check_readable(version, store.path)
    for target, step in enumerate(STEPS, 1):
        if target > version:
            step(store)
            store.set_schema_version(target)
            done.append(target)
    return done


def _v1_search_settings(store: Store) -> None:
    """Raise ``ef_search`` of indexes made before the recall measurements (images 256, captions 128)."""
    store.apply_search_settings(["ef_search"])


def _v2_layout_vectors(store: Store) -> None:
    """Offline-profile indexes stored one identical placeholder vector for every image, which made
    every process replay them into HNSW for seconds. Give each image its colour layout vector, read
    from its file; an unreadable file gets its change marker cleared so the next index run redoes it."""
    from ..ids import has_image_vectors

    if has_image_vectors(store.signature()):
        return
    from ..media.images import layout_vector

    dim = int(store.signature()["dim"])  # type: ignore[index]
    for ids, metas in list(store.pages()):
        vectors = _from_files(store, ids, metas, lambda image: layout_vector(image, dim))
        store.replace_vectors(list(vectors), np.asarray(list(vectors.values()), dtype=np.float32))


def _from_files(store: Store, ids: list[str], metas: list[dict], compute: Callable[[Any], Any]) -> dict[str, Any]:
    """``compute(small decoded image)`` for each image whose file can be read; the others get their
    change marker cleared, so the next index run reads them again."""
    from ..media.images import read_capped, read_image

    out, redo = {}, []
    for image, meta in zip(ids, metas):
        try:
            out[image] = compute(read_image(read_capped(meta["path"])[0], 64)[0])
        except Exception:  # gone, unmounted, unreadable: re-read by the next index run
            redo.append(image)
    store.clear_change_markers(redo)
    return out


def _v3_manifest_captions(store: Store) -> None:
    """Record which captions came from a manifest (``manifest_captions``), read from the caption records'
    ``source``, so a later run without ``--captions`` keeps them instead of dropping them."""
    for ids, metas in list(store.pages()):
        sources = store.caption_sources(ids)
        changed = {i: [t for t, source in sources.get(i, []) if source == "manifest"] for i, m in zip(ids, metas)
                   if "manifest_captions" not in m}
        store.set_metadata({i: {"manifest_captions": texts} for i, texts in changed.items() if texts})


def _v4_sync_threshold(store: Store) -> None:
    """Persist the HNSW index every 200 records instead of 1000: each new process replays fewer
    (0.5 s -> 0.07 s of every command's cold start on a 5k index)."""
    store.apply_search_settings(["sync_threshold"])


def _v5_perceptual_hashes(store: Store) -> None:
    """``phash``: each image's perceptual hash (``images.perceptual_hash``), for near-duplicate groups."""
    from ..media.images import perceptual_hash

    for ids, metas in list(store.pages()):
        missing = [(i, m) for i, m in zip(ids, metas) if not m.get("phash")]
        if missing:
            hashes = _from_files(store, [i for i, _ in missing], [m for _, m in missing], perceptual_hash)
            store.set_metadata({i: {"phash": h} for i, h in hashes.items()})


def _v6_text_in_photos(store: Store) -> None:
    """``ocr``: the index records whether its runs read the text in photos (``mmsearch index --ocr``);
    older indexes did not, so they start with it off. The photos' text and its ``mmsearch_ocr``
    collection appear when the first run with OCR reads them."""
    if not store.ocr_setting():
        store.set_ocr_setting("")


def _v7_generations(store: Store) -> None:
    """``mmsearch_index``: the pointer to the active generation of collections (``mmsearch reindex``
    builds new models' collections beside the active ones and switches it). Older indexes are the first
    generation. Recording schema 7 in the image collection also makes an older mmsearch refuse the index
    instead of reading collections a reindex has since replaced."""
    store.ensure_pointer()


STEPS: list[Callable[[Store], None]] = [_v1_search_settings, _v2_layout_vectors, _v3_manifest_captions,
                                        _v4_sync_threshold, _v5_perceptual_hashes, _v6_text_in_photos,
                                        _v7_generations]
assert len(STEPS) == SCHEMA
