"""A small query language, parsed before the semantic signals and shown to the user as what was understood.

- Dates: a year ("2019"), a month and year ("April 2018", "2018-04", "2019年4月"), an ISO date, a range
  ("2018-04-01..2018-06-30"), ``before:DATE`` and ``after:DATE``: filters on the date taken.
- Places: a word sequence that names a place the index holds ("Osaka", "in Lisbon", "里斯本"): a place filter.
  Only the index's places count (``mmsearch.search.places``), so "paris hilton" stays text in a library
  without Paris photos.
- Negation: ``-word`` or ``-"a phrase"``: hits whose caption, file and folder names or text in the photo
  contain it are dropped, and it is subtracted from the semantic query (rclip's ``-`` arithmetic).
- Field words: ``camera:``, ``folder:``, ``place:`` (quotes for spaces: ``camera:"Canon EOS 5D"``).

What is left is the text the signals rank by; it may be empty ("Osaka 2019"): then the photos of that place
and time are listed newest first. ``--literal`` (``literal=True``) turns parsing off.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from .places import PlaceBook, fold

MONTHS = {name.lower(): n for n in range(1, 13) for name in (calendar.month_name[n], calendar.month_abbr[n])}
MONTHS["sept"] = 9
_TOKEN = re.compile(r'-?"[^"]*"|-?\w+:"[^"]*"|\S+')
_YEAR = re.compile(r"^(19[0-9]{2}|20[0-9]{2}|2100)$")
_YEAR_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_DAY = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$")
_RANGE = re.compile(r"^(\d{4}(?:-\d{1,2}){0,2})\.\.(\d{4}(?:-\d{1,2}){0,2})$")
_CJK_DATE = re.compile(r"(\d{4})年(?:(\d{1,2})月)?(?:(\d{1,2})日)?")
_FIELDS = ("camera", "folder", "place", "before", "after")
_FILLERS = {"in", "at", "near", "from", "en", "à", "a", "bei", "im", "in the"}  # words before a place


@dataclass
class Understood:
    """What a query was parsed into (module docstring)."""

    text: str
    date_from: date | None = None
    date_to: date | None = None
    places: list[tuple[str, list[str]]] = field(default_factory=list)  # (as typed, place keys)
    excluded: list[str] = field(default_factory=list)  # -word and -"a phrase"
    camera: str | None = None
    folder: str | None = None
    understood_dates: list[str] = field(default_factory=list)  # how each date was read, for ``describe``
    chips: list[tuple[str, str]] = field(default_factory=list)  # (what was understood, the words typed for it)

    @property
    def parsed(self) -> bool:
        """Whether anything but text was found."""
        return bool(self.date_from or self.date_to or self.places or self.excluded or self.camera or self.folder)

    def describe(self, book: PlaceBook | None = None) -> str:
        """``place Osaka, Japan · year 2019 · text ""``: what the query was taken to mean."""
        parts = [f"place {(book.labels.get(keys[0]) if book and keys else None) or typed}" for typed, keys in self.places]
        parts += self.understood_dates
        parts += [f"camera {self.camera}"] if self.camera else []
        parts += [f"folder {self.folder}"] if self.folder else []
        parts += [f"not {word!r}" for word in self.excluded]
        return " · ".join([*parts, f'text "{self.text}"'])


def understand(query: str, book: PlaceBook | None = None) -> Understood:
    """Parse ``query`` (module docstring) against the places the index holds."""
    book = book or PlaceBook()
    out = Understood("")
    words: list[str] = []
    for token in _dates_in_words(_TOKEN.findall(query), out):
        if not _special(token, out):
            words.append(token)
    words = _places_in_words(words, book, out)
    out.text = " ".join(words).strip()
    return out


def _special(token: str, out: Understood) -> bool:
    """Negations, field words and single-token dates; True when ``token`` was one."""
    if token.startswith("-") and len(token) > 1 and not token[1:].isdigit():
        word = token[1:].strip('"').strip()
        if word:
            out.excluded.append(word)
            out.chips.append((f"not {word!r}", token))
        return True
    name, colon, value = token.partition(":")
    if colon and name.lower() in _FIELDS and value:
        value = value.strip('"').strip()
        if name.lower() == "camera":
            out.camera = value
            out.chips.append((f"camera {value}", token))
        elif name.lower() == "folder":
            out.folder = value
            out.chips.append((f"folder {value}", token))
        elif name.lower() == "place":
            out.places.append((value, []))
            out.chips.append((f"place:{value}", token))
        else:
            span = _span(value)
            if span is None:
                return False
            if name.lower() == "before":  # before April 2018: up to its eve
                out.date_to = span[0] - timedelta(days=1)
                out.understood_dates.append(f"before {span[0].isoformat()}")
            else:  # after 2019: from the day after its last
                out.date_from = span[1] + timedelta(days=1)
                out.understood_dates.append(f"after {span[1].isoformat()}")
            out.chips.append((out.understood_dates[-1], token))
        return True
    return _single_date(token, out)


def _single_date(token: str, out: Understood) -> bool:
    match = _RANGE.match(token)
    if match:
        first, last = _span(match.group(1)), _span(match.group(2))
        if first and last:
            _set(out, first[0], last[1], f"from {first[0].isoformat()} to {last[1].isoformat()}", token)
            return True
    cjk = _CJK_DATE.fullmatch(token)
    if cjk:
        year, month, day = (int(g) if g else None for g in cjk.groups())
        return _month_or_year(out, year, month, day, token)  # type: ignore[arg-type]
    if _YEAR.match(token) or _YEAR_MONTH.match(token) or _DAY.match(token):
        span = _span(token)
        if span:
            kind = "year" if _YEAR.match(token) else "month" if _YEAR_MONTH.match(token) else "day"
            _set(out, span[0], span[1], f"{kind} {token}", token)
            return True
    return False


def _dates_in_words(words: list[str], out: Understood) -> list[str]:
    """"April 2018" and "2018 April": a month name beside a year."""
    kept, skip = [], False
    for n, word in enumerate(words):
        if skip:
            skip = False
            continue
        following = words[n + 1] if n + 1 < len(words) else ""
        month = MONTHS.get(word.lower().strip(","))
        if month and _YEAR.match(following):
            _month_or_year(out, int(following), month, None, f"{word} {following}")
            skip = True
            continue
        if _YEAR.match(word) and MONTHS.get(following.lower().strip(",")):
            _month_or_year(out, int(word), MONTHS[following.lower().strip(",")], None, f"{word} {following}")
            skip = True
            continue
        kept.append(word)
    return kept


def _month_or_year(out: Understood, year: int, month: int | None, day: int | None, typed: str) -> bool:
    try:
        if day and month:
            first = last = date(year, month, day)
            label = f"day {first.isoformat()}"
        elif month:
            first, last = date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
            label = f"month {first:%B %Y}"
        else:
            first, last, label = date(year, 1, 1), date(year, 12, 31), f"year {year}"
    except ValueError:
        return False
    _set(out, first, last, label, typed)
    return True


def _set(out: Understood, first: date, last: date, label: str, typed: str) -> None:
    out.date_from = max(first, out.date_from) if out.date_from else first
    out.date_to = min(last, out.date_to) if out.date_to else last
    out.understood_dates.append(label)
    out.chips.append((label, typed))


def _span(text: str) -> tuple[date, date] | None:
    """The first and last day a date written as YYYY, YYYY-MM or YYYY-MM-DD covers."""
    parts = text.split("-")
    try:
        numbers = [int(p) for p in parts]
        if len(numbers) == 1:
            return date(numbers[0], 1, 1), date(numbers[0], 12, 31)
        if len(numbers) == 2:
            return date(numbers[0], numbers[1], 1), date(numbers[0], numbers[1], calendar.monthrange(*numbers)[1])
        if len(numbers) == 3:
            day = date(*numbers)
            return day, day
    except (ValueError, TypeError):
        return None
    return None


def _places_in_words(words: list[str], book: PlaceBook, out: Understood) -> list[str]:
    """The longest runs of up to four words that name a place the index holds, each a place filter (a
    filler word before it, "in Lisbon", goes with it); names inside CJK text without spaces too."""
    for n, (typed, _) in enumerate(out.places):  # place:NAME, resolved the same way
        out.places[n] = (typed, book.lookup(typed))
        out.chips = [(f"place {book.labels.get(out.places[n][1][0], typed) if out.places[n][1] else typed}", t)
                     if label == f"place:{typed}" else (label, t) for label, t in out.chips]
    if not book.names:
        return words
    kept: list[str] = []
    n = 0
    while n < len(words):
        for size in range(min(4, len(words) - n), 0, -1):
            typed = " ".join(words[n:n + size])
            keys = book.lookup(typed.strip(",.;"))
            if keys:
                out.places.append((typed.strip(",.;"), keys))
                filler = kept.pop() + " " if kept and fold(kept[-1]) in _FILLERS else ""
                out.chips.append((f"place {book.labels.get(keys[0], typed)}", filler + typed))
                n += size
                break
        else:
            kept.append(_cjk_places(words[n], book, out))
            n += 1
    return [w for w in kept if w]


def _cjk_places(word: str, book: PlaceBook, out: Understood) -> str:
    """A word with CJK place names written inside it: the names become place filters, the rest stays."""
    if not any("\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for c in word):
        return word
    for name, keys in book.find_in_cjk(word):
        if name in word and keys:
            out.places.append((name, keys))
            out.chips.append((f"place {book.labels.get(keys[0], name)}", name))
            word = word.replace(name, " ")
    return word.strip()


def without(query: str, typed: str) -> str:
    """``query`` with the words ``typed`` for one understood part taken out (the page's removable chips)."""
    pattern = r"(?<!\S)" + r"\s+".join(re.escape(w) for w in typed.split()) + r"(?!\S)"
    left = re.sub(pattern, " ", query, count=1)
    if left == query:  # written inside other text (a CJK place name)
        left = query.replace(typed, " ", 1)
    return " ".join(left.split())
