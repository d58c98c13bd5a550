"""What an index holds, for people: the values its filters can take, and its counts and models."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .paths import within_any

if TYPE_CHECKING:
    from .session import IndexSession


def facets(session: IndexSession) -> dict[str, Any]:
    """Values the filters can take (``SearchEngine.facets``), from the keyword index, which counts them in
    its one pass over the metadata and keeps them on disk with it: at a million photos a pass over the
    metadata for every facet would take a minute (``benchmarks/million_bench.py``)."""
    store = session.store
    if not store.ready:
        return {"folders": [], "folder_counts": {}, "cameras": []}
    roots = store.roots()
    keywords = session.keyword_index(fresh=True)  # what the last run wrote, not the one before
    counts = {f: n for f, n in keywords.folder_counts.items() if within_any(f, roots)}
    folders = sorted(f for f in counts if os.path.isdir(f))
    return {"folders": folders, "folder_counts": {f: counts[f] for f in folders}, "cameras": list(keywords.cameras)}


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
