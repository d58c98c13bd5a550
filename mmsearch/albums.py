"""Smart albums: saved searches that fill themselves.

An album is a query, its filters (folder, dates, place, camera) and a relevance floor. Its photos are the
search's hits above the floor, computed again after every index or watch run (``refresh_all``), so a photo
that arrives and matches joins by itself. Lasting feedback marks (``mmsearch feedback``) on its photos keep
them in or out, since the album's search reads them. ``show`` marks the photos that joined since the album
was last looked at, then remembers what was seen.

Albums live in the index (``mmsearch.store.client.AlbumStore``: a collection of their own), so a Chroma
server shares them, ``reindex`` carries them over (their queries embedded by the new text model), and
export/import copy them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import MIN_RELEVANCE
from .errors import ConfigError, QueryError
from .ids import image_id
from .paths import within_any
from .records import Hit

if TYPE_CHECKING:
    from .search.feedback import Mark

FILTERS = ("folder", "date_from", "date_to", "place", "camera")  # what an album may filter by
MAX_PHOTOS = 1000  # photos one album holds at most (its best ones)


@dataclass(frozen=True)
class Album:
    """A saved search and what it holds: ``photos`` (image ids, best first) as last computed, of which
    ``new`` joined since the album was last looked at."""

    name: str
    query: str
    filters: dict[str, str] = field(default_factory=dict)
    min_relevance: float = MIN_RELEVANCE
    created: int = 0
    photos: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "query": self.query, "filters": dict(self.filters),
                "min_relevance": self.min_relevance, "created": self.created, "photos": len(self.photos),
                "new": len(self.new)}


@dataclass(frozen=True)
class AlbumPhoto:
    """One photo of an album as shown: where it is, how relevant, and whether it joined since last looked."""

    path: str
    relevance: float
    new: bool

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "relevance": self.relevance, "new": self.new}


def album_id(name: str) -> str:
    """The record id of an album: its name, case and surrounding spaces aside."""
    return hashlib.sha1(name.strip().casefold().encode("utf-8", "surrogatepass")).hexdigest()[:24]


def check_name(name: Any) -> str:
    """An album name: text of 1 to 100 characters, without a path separator or control characters.

    Raises:
        QueryError: it is not.
    """
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 100:
        raise QueryError(f"an album name is 1 to 100 characters, got {name!r}")
    if any(c in name for c in "/\\\0") or any(ord(c) < 32 for c in name):
        raise QueryError(f"an album name has no slash, backslash or control character, got {name!r}")
    return name.strip()


def record(name: str, query: str, filters: dict[str, Any], min_relevance: float) -> dict[str, Any]:
    """The stored metadata of a new album (no photos yet)."""
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise QueryError(f"an album filters by {', '.join(FILTERS)}, not {', '.join(sorted(unknown))}")
    kept = {k: str(v) for k, v in filters.items() if v not in (None, "")}
    return {"name": check_name(name), "query": query, "filters": json.dumps(kept, ensure_ascii=False),
            "min_relevance": float(min_relevance), "created": int(time.time()), "photos": "[]", "seen": "[]"}


def from_record(meta: dict[str, Any]) -> Album:
    """An ``Album`` from its stored metadata."""
    photos, seen = json.loads(meta.get("photos") or "[]"), set(json.loads(meta.get("seen") or "[]"))
    return Album(str(meta["name"]), str(meta.get("query", "")), json.loads(meta.get("filters") or "{}"),
                 float(meta.get("min_relevance", MIN_RELEVANCE)), int(meta.get("created", 0)), photos,
                 [p for p in photos if p not in seen])


def members(album: Album, search: Callable[..., list[Hit]], marks: Sequence[Mark] = ()) -> list[Hit]:
    """The album's photos now: its search's hits at or above its floor, copies folded, best first; a photo
    marked not relevant for the album's query (a lasting mark) stays out, one marked relevant stays in."""
    kept = {m.image_id: m.relevant for m in marks if m.query.strip().casefold() == album.query.strip().casefold()}
    hits = search(album.query or None, k=MAX_PHOTOS, min_relevance=album.min_relevance if not any(kept.values()) else None,
                  collapse=True, **album.filters)
    return [h for h in hits if kept.get(image_id(h.path), h.relevance >= album.min_relevance)]


def export(photos: Sequence[str], target: str | Path, forbidden: Sequence[str], copy: bool = False) -> tuple[int, int]:
    """Link (or copy) the album's photos into ``target``: (made, already there). Safe to repeat: a link
    already pointing at the photo (or a copy of the same size) is left; another file of that name is never
    overwritten (the photo gets ``name (2).jpg``).

    Raises:
        ConfigError: ``target`` is inside an indexed folder or the database (``forbidden``).
    """
    target = Path(os.path.abspath(os.path.expanduser(str(target))))
    real = os.path.realpath(target)
    if within_any(real, [os.path.realpath(f) for f in forbidden]) or within_any(str(target), list(forbidden)):
        raise ConfigError(f"{target} is inside an indexed folder or the database; export an album somewhere else "
                          "(a watched folder would index its own album)")
    target.mkdir(parents=True, exist_ok=True)
    made = present = 0
    for path in photos:
        dest = _free_name(target, Path(path), copy)
        if dest is None:
            present += 1
            continue
        if copy:
            shutil.copy2(path, dest)
        else:
            os.symlink(path, dest)
        made += 1
    return made, present


def _free_name(target: Path, source: Path, copy: bool) -> Path | None:
    """Where a photo goes in the export: None when it is there already; else its name, or ``name (N)``."""
    for n in range(1, 1000):
        name = source.name if n == 1 else f"{source.stem} ({n}){source.suffix}"
        dest = target / name
        if not os.path.lexists(dest):
            return dest
        if _same(dest, source, copy):
            return None
    raise ConfigError(f"{target} holds a thousand files named like {source.name}; export into an empty folder")


def _same(dest: Path, source: Path, copy: bool) -> bool:
    if dest.is_symlink():
        return os.readlink(dest) == str(source)
    try:
        return copy and dest.stat().st_size == source.stat().st_size and dest.stat().st_mtime_ns == source.stat().st_mtime_ns
    except OSError:
        return False


def ids_of(hits: list[Hit]) -> list[str]:
    """The image ids of hits, in order."""
    return [image_id(h.path) for h in hits]
