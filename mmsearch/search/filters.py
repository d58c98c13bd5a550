"""Search filters (folder, date range, camera) as one Chroma ``where`` clause for both collections."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from ..errors import QueryError
from ..media.places import EARTH_KM, great_circle_km

DateLike = str | date | datetime | None
Near = tuple[float, float, float]  # (latitude, longitude, radius in km)


def build_where(folder: str | Path | None = None, date_from: DateLike = None, date_to: DateLike = None,
                camera: str | None = None, roots: Sequence[str] = (), places: Sequence[Sequence[str]] = (),
                near: Near | None = None) -> dict[str, Any] | None:
    """A Chroma ``where`` filter; None when no filter is set.

    Args:
        folder: keep images inside this folder (at any depth); relative folders are tried against the
            current directory, then against each indexed root.
        date_from: keep images taken (EXIF) or modified on or after this day or time.
        date_to: ... on or before this day (the whole day counts) or time.
        camera: keep images from this camera ("Make Model" as stored).
        roots: the indexed roots, for resolving relative folders.
        places: groups of place keys (``mmsearch.search.places.PlaceBook``: a city, a region or a country);
            an image must be in one place of every group ("Osaka" names a city and a prefecture: one group).
        near: keep images in the box around this circle (``near_box``); the exact great-circle cut is
            ``within``, applied to the candidates.
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
    for group in places:
        wanted = [{"place_keys": {"$contains": str(key)}} for key in dict.fromkeys(group)]
        if not wanted:
            raise QueryError("a place filter names no place")
        clauses.append(wanted[0] if len(wanted) == 1 else {"$or": wanted})
    if near is not None:
        clauses.extend(near_box(near))
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



def check_near(near: Any) -> Near | None:
    """``near`` as (lat, lon, km), or None.

    Raises:
        QueryError: not three numbers, a latitude or longitude out of range, or a radius not above 0.
    """
    if near is None:
        return None
    try:
        lat, lon, km = (float(v) for v in near)
    except (TypeError, ValueError):
        raise QueryError(f"near is (latitude, longitude, km), got {near!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not 0 < km <= 20_100 or not all(map(math.isfinite, (lat, lon, km))):
        raise QueryError(f"near needs a latitude in -90..90, a longitude in -180..180 and a radius in km above 0, got {near!r}")
    return lat, lon, km


def near_box(near: Near) -> list[dict[str, Any]]:
    """``where`` clauses of the latitude/longitude box around a circle on the sphere: the box spans the
    antimeridian as two longitude ranges, and has no longitude bound when the circle holds a pole."""
    lat, lon, km = near
    angle = km / EARTH_KM
    dlat = math.degrees(angle)
    clauses: list[dict[str, Any]] = [{"lat": {"$gte": max(-90.0, lat - dlat)}}, {"lat": {"$lte": min(90.0, lat + dlat)}}]
    if lat + dlat >= 90 or lat - dlat <= -90 or angle >= math.pi / 2:
        return clauses  # a pole is inside: every longitude
    dlon = math.degrees(math.asin(min(1.0, math.sin(angle) / math.cos(math.radians(lat)))))
    west, east = lon - dlon, lon + dlon
    if west < -180 or east > 180:
        ranges = [(-180.0, east - 360 if east > 180 else east), (west + 360 if west < -180 else west, 180.0)]
        clauses.append({"$or": [{"$and": [{"lon": {"$gte": a}}, {"lon": {"$lte": b}}]} for a, b in ranges]})
    else:
        clauses.extend([{"lon": {"$gte": west}}, {"lon": {"$lte": east}}])
    return clauses


def within(near: Near, lat: Any, lon: Any) -> bool:
    """Whether a position lies inside the circle (great-circle distance, haversine)."""
    if lat is None or lon is None:
        return False
    return great_circle_km(near[0], near[1], float(lat), float(lon)) <= near[2]
