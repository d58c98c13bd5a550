"""Search filters (folder, date range, camera) as one Chroma ``where`` clause for both collections."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from ..errors import QueryError

DateLike = str | date | datetime | None


def build_where(folder: str | Path | None = None, date_from: DateLike = None, date_to: DateLike = None,
                camera: str | None = None, roots: Sequence[str] = ()) -> dict[str, Any] | None:
    """A Chroma ``where`` filter; None when no filter is set.

    Args:
        folder: keep images inside this folder (at any depth); relative folders are tried against the
            current directory, then against each indexed root.
        date_from: keep images taken (EXIF) or modified on or after this day or time.
        date_to: ... on or before this day (the whole day counts) or time.
        camera: keep images from this camera ("Make Model" as stored).
        roots: the indexed roots, for resolving relative folders.
    """
    clauses: list[dict[str, Any]] = []
    for name, value in (("folder", folder), ("camera", camera)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise QueryError(f"the {name} filter is text (a path or a name), got {value!r}")
        check_text(str(value or ""), name)
    if folder:
        clauses.append({"folders": {"$contains": resolve_folder(folder, roots)}})
    if date_from:
        clauses.append({"date": {"$gte": _timestamp(date_from, end=False)}})
    if date_to:
        clauses.append({"date": {"$lte": _timestamp(date_to, end=True)}})
    if camera:
        clauses.append({"camera": camera})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def resolve_folder(folder: str | Path, roots: Sequence[str] = ()) -> str:
    """The absolute, normalised folder path a filter refers to."""
    raw = os.path.expanduser(str(folder))
    if os.path.isabs(raw):
        return os.path.normpath(raw)
    options = [Path.cwd() / raw] + [Path(r) / raw for r in roots]
    for option in options:
        if option.is_dir():
            return os.path.normpath(option.absolute())
    return os.path.normpath(options[0].absolute())


def _timestamp(value: str | date | datetime, end: bool) -> int:
    if not isinstance(value, (str, date)):
        raise QueryError(f"a date filter is YYYY-MM-DD text, a date or a datetime, got {value!r}")
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if ("T" in value or " " in value) else date.fromisoformat(value)
        except ValueError:
            raise QueryError(f"date {value!r} is not YYYY-MM-DD or an ISO date-time") from None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.max if end else time.min)
    try:
        return int(value.timestamp())
    except (OverflowError, ValueError, OSError):
        raise QueryError(f"date {value.date().isoformat()} is out of range") from None


def check_text(text: str, what: str = "query") -> str:
    """``text`` if it is valid Unicode that can be written as UTF-8.

    Raises:
        QueryError: it holds lone surrogates (e.g. invalid UTF-8 bytes on a command line).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryError(f"the {what} is not valid UTF-8 text") from None
    return text


def unknown_folder(folder: str | Path, folders: Sequence[str], roots: Sequence[str] = ()) -> str | None:
    """A sentence when no indexed folder matches the ``folder`` filter (a typo, a folder never indexed),
    naming the nearest indexed folders; None when it matches one. ``folders`` are the index's
    (``SearchEngine.facets()["folders"]``)."""
    import difflib

    wanted = resolve_folder(folder, roots)
    if wanted in folders:
        return None
    names = {os.path.basename(f) or f: f for f in folders}
    close = difflib.get_close_matches(os.path.basename(wanted) or wanted, list(names), n=3, cutoff=0.5)
    nearest = [names[n] for n in close] or sorted(folders, key=len)[:3]
    hint = f"; nearest: {', '.join(nearest)}" if nearest else ""
    return f"no indexed folder matches {str(folder)!r}{hint}"

