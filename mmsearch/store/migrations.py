"""Schema versions of an index and the ordered steps that upgrade an older one.

The version lives in the image collection's metadata (``schema_version``). A new index is created at
``SCHEMA``. A writer (``engine.index``, ``serve``, ``import``) runs every step above the stored version,
in order, recording each version as it completes, so an interrupted upgrade resumes at the step it
stopped in. Readers open any version up to ``SCHEMA``; a newer one is refused with both numbers.

Steps work on a raw ``Handle`` (the Chroma client and the names of one generation's collections), never
through ``Store``, so the store's methods can change without rewriting history. Adding a field or a
collection: write a step ``def _vN(handle) -> None`` that is safe to run twice, append it to ``STEPS`` and
raise ``SCHEMA``. (After rclip's ``db.py`` and llm's ``embeddings_migrations``.)

Four steps read image files (2: layout vectors, 5: perceptual hashes, 8: looks, 9: GPS positions); they take
their readers from ``mmsearch.media``, through ``FileReaders``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StoreError
from ..ids import caption_id, has_image_vectors
from .collections import (
    FILTER_FIELDS,
    HNSW_CAPTIONS,
    PAGE,
    POINTER,
    apply_search_settings,
    caption_sources,
    collection_name,
    open_collection,
    pages,
    pointer_fields,
)

SCHEMA = 9
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


@dataclass
class Handle:
    """What a schema step reads and writes: the raw Chroma client, one generation's collection names, and
    where the database is (for messages)."""

    client: Any
    where: str
    images: str
    captions: str
    generation: str

    def collection(self, name: str) -> Any:
        """A collection, read fresh (another worker may have changed its metadata)."""
        return self.client.get_collection(name, embedding_function=None)

    def metadata(self) -> dict[str, Any]:
        """The image collection's metadata."""
        return dict(self.collection(self.images).metadata or {})

    def set_metadata(self, **changes: Any) -> None:
        """Change fields of the image collection's metadata (the others stay)."""
        images = self.collection(self.images)
        images.modify(metadata={**(images.metadata or {}), **changes})

    def image_pages(self) -> Iterator[tuple[list[str], list[dict]]]:
        """(ids, metadatas) of every image, read in full before the step writes (no page shifts under it)."""
        for page in list(pages(self.collection(self.images))):
            yield page["ids"], page["metadatas"]

    def update_images(self, ids: list[str], **fields: Any) -> None:
        """``update`` image records ``PAGE`` at a time (``embeddings=`` or ``metadatas=``, aligned with ids)."""
        images = self.collection(self.images)
        for start in range(0, len(ids), PAGE):
            images.update(ids=ids[start:start + PAGE], **{k: v[start:start + PAGE] for k, v in fields.items()})


@dataclass(frozen=True)
class FileReaders:
    """How the steps that read image files decode them: ``decode(path) -> small image``, ``layout(image,
    dim)``, ``phash(image)`` and ``look(image)``."""

    decode: Callable[[str], Any]
    layout: Callable[[Any, int], np.ndarray]
    phash: Callable[[Any], str]
    look: Callable[[Any], str]
    position: Callable[[str], tuple[float | None, float | None]] = lambda path: (None, None)
    place: Callable[[float, float], dict[str, Any]] = lambda lat, lon: {}

    @classmethod
    def from_media(cls) -> FileReaders:
        from ..media.files import decode_file, position_of
        from ..media.images import layout_vector, look_print, perceptual_hash, read_capped
        from ..media.places import locate

        def place(lat: float, lon: float) -> dict[str, Any]:
            found = locate(lat, lon)
            return found.fields() if found is not None else {}

        return cls(lambda path: decode_file(path, read_capped(path)[0], 64)[0], layout_vector, perceptual_hash, look_print,
                   position_of, place)


def upgrade(handle: Handle, readers: FileReaders | None = None) -> list[int]:
    """Run the steps above the index's version, in order; returns the versions it upgraded through."""
    done = []
    version = stored_version(handle.metadata())
    check_readable(version, handle.where)
    for target, step in enumerate(STEPS, 1):
        if target > version:
            step(handle, readers or FileReaders.from_media())
            handle.set_metadata(**{VERSION_KEY: target})
            done.append(target)
    return done


def _v1_search_settings(handle: Handle, readers: FileReaders) -> None:
    """Raise ``ef_search`` of indexes made before the recall measurements (images 256, captions 128)."""
    apply_search_settings(handle.client, handle.images, handle.captions, ["ef_search"])


def _v2_layout_vectors(handle: Handle, readers: FileReaders) -> None:
    """Offline-profile indexes stored one identical placeholder vector for every image, which made
    every process replay them into HNSW for seconds. Give each image its colour layout vector, read
    from its file; an unreadable file gets its change marker cleared so the next index run redoes it."""
    meta = handle.metadata()
    if has_image_vectors(meta):
        return
    dim = int(meta["dim"])
    for ids, metas in handle.image_pages():
        vectors = _from_files(handle, readers, ids, metas, lambda image: readers.layout(image, dim))
        handle.update_images(list(vectors), embeddings=np.asarray(list(vectors.values()), dtype=np.float32))


def _from_files(handle: Handle, readers: FileReaders, ids: list[str], metas: list[dict],
                compute: Callable[[Any], Any]) -> dict[str, Any]:
    """``compute(small decoded image)`` for each image whose file can be read; the others get their
    change marker cleared, so the next index run reads them again."""
    out, redo = {}, []
    for image, meta in zip(ids, metas):
        try:
            out[image] = compute(readers.decode(meta["path"]))
        except Exception:  # gone, unmounted, unreadable: re-read by the next index run
            redo.append(image)
    handle.update_images(redo, metadatas=[{"mtime_ns": "0"}] * len(redo))
    return out


def _v3_manifest_captions(handle: Handle, readers: FileReaders) -> None:
    """Record which captions came from a manifest (``manifest_captions``), read from the caption records'
    ``source``, so a later run without ``--captions`` keeps them instead of dropping them."""
    captions = open_collection(handle.client, handle.captions, True, HNSW_CAPTIONS)
    for ids, metas in handle.image_pages():
        sources = caption_sources(captions, ids)
        changed = {i: [t for t, source in sources.get(i, []) if source == "manifest"] for i, m in zip(ids, metas)
                   if "manifest_captions" not in m}
        kept = {i: texts for i, texts in changed.items() if texts}
        handle.update_images(list(kept), metadatas=[{"manifest_captions": texts} for texts in kept.values()])


def _v4_sync_threshold(handle: Handle, readers: FileReaders) -> None:
    """Persist the HNSW index every 200 records instead of 1000: each new process replays fewer
    (0.5 s -> 0.07 s of every command's cold start on a 5k index)."""
    apply_search_settings(handle.client, handle.images, handle.captions, ["sync_threshold"])


def _v5_perceptual_hashes(handle: Handle, readers: FileReaders) -> None:
    """``phash``: each image's perceptual hash (``media.images.perceptual_hash``), for near-duplicate groups."""
    for ids, metas in handle.image_pages():
        missing = [(i, m) for i, m in zip(ids, metas) if not m.get("phash")]
        if missing:
            hashes = _from_files(handle, readers, [i for i, _ in missing], [m for _, m in missing], readers.phash)
            handle.update_images(list(hashes), metadatas=[{"phash": h} for h in hashes.values()])


def _v6_text_in_photos(handle: Handle, readers: FileReaders) -> None:
    """``ocr``: the index records whether its runs read the text in photos (``mmsearch index --ocr``);
    older indexes did not, so they start with it off. The photos' text and its ``mmsearch_ocr``
    collection appear when the first run with OCR reads them."""
    if not handle.metadata().get("ocr"):
        handle.set_metadata(ocr="")


def _v7_generations(handle: Handle, readers: FileReaders) -> None:
    """``mmsearch_index``: the pointer to the active generation of collections (``mmsearch reindex``
    builds new models' collections beside the active ones and switches it). Older indexes are the first
    generation. Recording schema 7 in the image collection also makes an older mmsearch refuse the index
    instead of reading collections a reindex has since replaced."""
    if open_collection(handle.client, POINTER, False, {"space": "cosine"}) is None:
        pointer = open_collection(handle.client, POINTER, True, {"space": "cosine"})
        pointer.modify(metadata={**pointer_fields(pointer), "active": handle.generation})


def _v8_looks(handle: Handle, readers: FileReaders) -> None:
    """``look``: each image's small thumbnails (``media.images.look_print``), the duplicate rule's second view
    in every profile (``mmsearch.likeness``): without it the offline profile's pHash decided alone, and a
    blank page and a blue field were one photo."""
    for ids, metas in handle.image_pages():
        missing = [(i, m) for i, m in zip(ids, metas) if not m.get("look")]
        if missing:
            looks = _from_files(handle, readers, [i for i, _ in missing], [m for _, m in missing], readers.look)
            handle.update_images(list(looks), metadatas=[{"look": look} for look in looks.values()])


def _v9_places(handle: Handle, readers: FileReaders) -> None:
    """``lat``, ``lon`` and the place fields (``media.places``: the nearest city, its region and country, their
    names in many languages): read from each file's EXIF GPS or video container, without decoding pixels or
    encoding anything. A file that cannot be read is left as it is (the next index run of a changed file
    adds its place)."""
    for ids, metas in handle.image_pages():
        changes: dict[str, dict[str, Any]] = {}
        for image, meta in zip(ids, metas):
            if "lat" in meta:
                continue
            try:
                lat, lon = readers.position(str(meta["path"]))
            except Exception:  # gone, unmounted, unreadable
                continue
            if lat is not None and lon is not None:
                changes[image] = {"lat": lat, "lon": lon, **readers.place(lat, lon)}
        handle.update_images(list(changes), metadatas=list(changes.values()))
        _copy_filter_fields(handle, {i: m for i, m in zip(ids, metas) if i in changes}, changes)


def _copy_filter_fields(handle: Handle, metas: dict[str, dict], changes: dict[str, dict[str, Any]]) -> None:
    """The new filter fields onto each changed image's caption and photo-text records (a ``where`` on a place
    must match them as it matches the image)."""
    fields = {i: {k: v for k, v in c.items() if k in FILTER_FIELDS} for i, c in changes.items()}
    captions = open_collection(handle.client, handle.captions, False, HNSW_CAPTIONS)
    rows = [(caption_id(i, n), f) for i, f in fields.items() for n in range(len(metas[i].get("captions") or []))]
    if captions is not None and rows:
        for start in range(0, len(rows), PAGE):
            chunk = rows[start:start + PAGE]
            captions.update(ids=[r for r, _ in chunk], metadatas=[f for _, f in chunk])
    ocr = open_collection(handle.client, collection_name("ocr", handle.generation), False, HNSW_CAPTIONS)
    if ocr is not None and fields:
        present = set(ocr.get(ids=list(fields), include=[])["ids"])
        if present:
            ocr.update(ids=sorted(present), metadatas=[fields[i] for i in sorted(present)])


STEPS: list[Callable[[Handle, FileReaders], None]] = [
    _v1_search_settings, _v2_layout_vectors, _v3_manifest_captions, _v4_sync_threshold, _v5_perceptual_hashes,
    _v6_text_in_photos, _v7_generations, _v8_looks, _v9_places]
assert len(STEPS) == SCHEMA
