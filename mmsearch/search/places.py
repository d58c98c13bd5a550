"""The places an index holds, by name in every language its data has: what the query parser matches a
typed place against ("Osaka", "里斯本", "Portugal"), what ``--place`` resolves, and the Places facet.

Built from the images' place fields (``mmsearch.media.places.Place.fields``) with the keyword index and kept
with it (``keywords.npz``), so a query never loads the GeoNames data. Only places the index holds are known:
"paris hilton" in a library without Paris photos stays text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..text import CJK

_CJK_RUN = re.compile(rf"[{CJK}]+")


def fold(text: str) -> str:
    """A name as it is matched: case and accents folded, inner spaces and dashes as one space."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[\s\-‐–_]+", " ", plain.casefold()).strip()


@dataclass
class PlaceBook:
    """Place key -> its label, level ("city", "region", "country") and photo count; folded name -> keys."""

    labels: dict[str, str] = field(default_factory=dict)
    levels: dict[str, str] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    names: dict[str, set[str]] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # a city's or region's country key

    @classmethod
    def from_metadata(cls, metas: Iterable[dict]) -> PlaceBook:
        book = cls()
        for meta in metas:
            keys = [str(k) for k in meta.get("place_keys") or []]
            if keys:
                book.add(meta, keys)
        return book

    def add(self, meta: dict, keys: list[str]) -> None:
        """One more photo at these place keys (country first), named as its metadata names them."""
        country = keys[0]
        levels = _levels(keys)
        english = {level: (meta.get(f"place_{level}") or [""])[0] for level in ("city", "region", "country")}
        for level, key in levels.items():
            self.counts[key] += 1
            self.levels[key] = level
            if key != country:
                self.parents[key] = country
            if key not in self.labels:
                tail = f", {english['country']}" if level != "country" and english["country"] else ""
                self.labels[key] = (meta.get("place") if level == "city" else f"{english[level]}{tail}") or key
                for name in meta.get(f"place_{level}") or []:
                    self.names.setdefault(fold(str(name)), set()).add(key)

    def remove(self, keys: list[str]) -> None:
        """One photo fewer at these place keys; a place with none left is forgotten."""
        for key in _levels(keys).values():
            self.counts[key] -= 1
            if self.counts[key] > 0:
                continue
            for table in (self.counts, self.levels, self.labels, self.parents):
                table.pop(key, None)
            for name in [n for n, held in self.names.items() if key in held]:
                self.names[name].discard(key)
                if not self.names[name]:
                    del self.names[name]

    def copy(self) -> PlaceBook:
        """A copy that ``add`` and ``remove`` change without changing this one."""
        return PlaceBook(dict(self.labels), dict(self.levels), Counter(self.counts),
                         {n: set(k) for n, k in self.names.items()}, dict(self.parents))

    def lookup(self, name: str) -> list[str]:
        """The keys of the places called ``name`` (any language, case and accents folded), biggest first."""
        return sorted(self.names.get(fold(name), ()), key=lambda k: (-self.counts[k], k))

    def find_in_cjk(self, run: str) -> list[tuple[str, list[str]]]:
        """Place names written inside a run of CJK text without spaces ("大阪的海滩"): (name, keys), longest first."""
        found = [(name, self.lookup(name)) for name in self.names if _CJK_RUN.fullmatch(name) and len(name) >= 2
                 and name in run]
        return sorted(found, key=lambda f: -len(f[0]))

    def facet(self) -> list[tuple[str, str, int]]:
        """(key, label, photos) of the countries, biggest first, each followed by its cities."""
        out = []
        countries = sorted((k for k, level in self.levels.items() if level == "country"), key=self._biggest)
        for country in countries:
            out.append((country, self.labels[country], self.counts[country]))
            cities = [k for k, p in self.parents.items() if p == country and self.levels[k] == "city"]
            out.extend((k, self.labels[k], self.counts[k]) for k in sorted(cities, key=self._biggest))
        return out

    def _biggest(self, key: str) -> tuple[int, str, str]:
        """Most photos first, then by name."""
        return -self.counts[key], self.labels[key], key

    def to_json(self) -> str:
        return json.dumps({"labels": self.labels, "levels": self.levels, "counts": dict(self.counts),
                           "names": {n: sorted(k) for n, k in self.names.items()}, "parents": self.parents},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> PlaceBook:
        data = json.loads(text or "{}")
        return cls(dict(data.get("labels", {})), dict(data.get("levels", {})), Counter(data.get("counts", {})),
                   {n: set(k) for n, k in data.get("names", {}).items()}, dict(data.get("parents", {})))


def _levels(keys: list[str]) -> dict[str, str]:
    """Level -> key of a photo's place keys: the country first, then its region ("JP.32") and city."""
    levels = {"country": keys[0]}
    for key in keys[1:]:
        levels["region" if "." in key else "city"] = key
    return levels
