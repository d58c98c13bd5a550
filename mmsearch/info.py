"""What an index holds, for people: the values its filters can take, and its counts and models."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .paths import within_any

if TYPE_CHECKING:
    from .session import IndexSession
    from .store.client import Store


def facets(store: Store) -> dict[str, Any]:
    """Values the filters can take (``SearchEngine.facets``)."""
    if not store.ready:
        return {"folders": [], "folder_counts": {}, "cameras": []}
    roots = store.roots()
    counts: dict[str, int] = {}
    cameras: set[str] = set()
    for _, meta in store.all_metadata():
        for folder in meta.get("folders") or []:
            if within_any(folder, roots):
                counts[folder] = counts.get(folder, 0) + 1
        if meta.get("camera"):
            cameras.add(str(meta["camera"]))
    folders = sorted(f for f in counts if os.path.isdir(f))
    return {"folders": folders, "folder_counts": {f: counts[f] for f in folders}, "cameras": sorted(cameras)}


def stats(session: IndexSession) -> dict[str, Any]:
    """What the index holds (``SearchEngine.stats``)."""
    store = session.store
    signature = store.signature() or {**session.signature, "dim": None}
    ocr = store.ocr_collection() if store.ready else None
    pointer = store.pointer()
    return {"db": session.config.db, "images": store.count(), "videos": store.video_count(), "captions": store.caption_count(),
            **signature, "roots": store.roots(), "updated_at": store.updated_at(),
            "ocr": store.ocr_setting(), "texts": ocr.count() if ocr is not None else 0,
            "generation": store.generation, "previous": pointer["previous"], "reindexing": pointer["building"]}
