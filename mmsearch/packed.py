"""What the keyword file holds, read without a Python object per entry: strings packed back to back, and
sorted tables of lists (the postings, the file names) looked up by binary search over those packed strings.

Opening a million-photo keyword index used to build a tuple per token and a dict entry per file name
(8.1 s at a million); these structures cost nothing to open and a few microseconds per lookup.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np

_ENCODING = ("utf-8", "surrogatepass")  # any str, lone surrogates and NUL included, survives the round trip
_CODEC, _ERRORS = _ENCODING  # passed as two arguments where it counts: twice as fast as ``*_ENCODING``


def encode(text: str) -> bytes:
    """A string as the packed arrays hold it (their sort order is that of these bytes)."""
    return text.encode(*_ENCODING)


def pack(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as their UTF-8 bytes back to back (uint8) and the end offset of each (int64)."""
    encoded = [encode(s) for s in strings]
    return (np.frombuffer(b"".join(encoded), dtype=np.uint8),
            np.cumsum([len(e) for e in encoded], dtype=np.int64))


def pack_named(name: str, strings: Sequence[str]) -> dict[str, np.ndarray]:
    """``pack``'s arrays of ``strings`` as ``<name>_bytes`` and ``<name>_ends``, for a ``.npz`` file (packed
    strings as they are)."""
    data, ends = strings.arrays() if isinstance(strings, PackedStrings) else pack(strings)
    return {f"{name}_bytes": data, f"{name}_ends": ends}


def unpack_named(data: Any, name: str) -> PackedStrings:
    """The strings ``pack_named`` saved under ``name``, still packed."""
    return PackedStrings(data[f"{name}_bytes"].tobytes(), np.asarray(data[f"{name}_ends"]))


def prefix_keys(strings: Iterable[str]) -> np.ndarray:
    """Each string's first 8 UTF-8 bytes as a big-endian uint64 (zero-padded): the keys sort as the strings
    do, up to strings sharing those bytes (then compare the strings themselves)."""
    return np.frombuffer(b"".join(encode(s)[:8].ljust(8, b"\0") for s in strings), dtype=">u8").astype(np.uint64)


def ints(values: np.ndarray) -> memoryview:
    """An int64 array's values, indexed as Python ints without a numpy scalar each."""
    return memoryview(np.ascontiguousarray(values, dtype=np.int64)).cast("B").cast("q")


class PackedStrings(Sequence[str]):
    """A sequence of strings over ``pack``'s arrays, decoding an entry when it is asked for, with the strings
    appended since (``extend``, on a ``copy``) in a list after them."""

    def __init__(self, raw: bytes = b"", ends: np.ndarray | None = None, tail: list[str] | None = None):
        self._raw, self._ends = raw, ends if ends is not None else np.zeros(0, np.int64)
        self._at = ints(self._ends)  # the ends as Python ints, one at a time (10x faster than numpy scalars)
        self._tail = tail if tail is not None else []

    def __len__(self) -> int:
        return len(self._ends) + len(self._tail)

    def raw(self, n: int) -> bytes:
        """Entry ``n``'s bytes (``encode`` of the string)."""
        at = self._at
        if n >= len(at):
            return encode(self._tail[n - len(at)])
        return self._raw[at[n - 1] if n else 0:at[n]]

    def text(self, n: int) -> str:
        """Entry ``n`` (not negative), decoded: ``self[n]`` without its checks, for the hot loops."""
        at = self._at
        if n >= len(at):
            return self._tail[n - len(at)]
        return self._raw[at[n - 1] if n else 0:at[n]].decode(_CODEC, _ERRORS)

    @overload
    def __getitem__(self, n: int) -> str: ...

    @overload
    def __getitem__(self, n: slice) -> list[str]: ...

    def __getitem__(self, n: int | slice) -> str | list[str]:
        if isinstance(n, slice):
            return [self[i] for i in range(*n.indices(len(self)))]
        if n < 0:
            n += len(self)
        if not 0 <= n < len(self):
            raise IndexError(n)
        return self.text(n)

    def __iter__(self) -> Iterator[str]:
        raw, ends = self._raw, self._ends.tolist()
        yield from (raw[a:b].decode(*_ENCODING) for a, b in zip([0, *ends[:-1]], ends))
        yield from self._tail

    def at(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The entries ``rows``, decoded in one pass (a million ids in ~0.2 s; asked one by one, 0.7 s); those
        appended since are taken from the tail, the packed ones still in one pass."""
        rows = np.asarray(rows, dtype=np.int64)
        base = len(self._ends)
        if rows.size and int(rows.max()) >= base:  # some were appended since
            packed = iter(self.at(rows[rows < base]))
            return [self._tail[n - base] if n >= base else next(packed) for n in rows.tolist()]
        starts = np.where(rows > 0, self._ends[np.maximum(rows - 1, 0)], 0) if rows.size else rows
        raw = self._raw
        return [raw[a:b].decode(*_ENCODING) for a, b in zip(starts.tolist(), self._ends[rows].tolist())]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (PackedStrings, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal as a list is: not hashable

    def containing(self, part: str) -> np.ndarray:
        """The numbers of the entries that hold ``part`` (non-empty), in order: the packed ones found by
        searching their bytes at once (a rare part is found among a million texts in milliseconds)."""
        found = self._found(encode(part))
        base = len(self._ends)
        found.extend(base + n for n, text in enumerate(self._tail) if part in text)
        return np.asarray(found, dtype=np.int64)

    def starting_with(self, prefix: str) -> np.ndarray:
        """The numbers of the entries that start with ``prefix`` (non-empty), in order: the packed ones by
        comparing the prefix's bytes from its last, each over the entries still in the running, in numpy (a
        million paths: a folder of 25 in ~20 ms, a year's 100,000 in ~60 ms, where finding each match in the
        bytes took 11 and 250 ms, every path 0.15 against 2.4 s)."""
        needle, starts = encode(prefix), self._starts()
        at = self._holding(starts[self._ends - starts >= len(needle)], needle)
        rows = np.searchsorted(self._ends, at, side="right")  # each start is its (non-empty) entry's
        return self._and_appended(rows, lambda text: text.startswith(prefix))

    def with_field(self, value: str, sep: str = "\t") -> np.ndarray:
        """The numbers of the entries of which ``value`` (non-empty) is a field, ``sep`` (one byte) separating
        the fields, in order: the packed ones by comparing the bytes of every field of its length at once, in
        numpy (a country's key in two thirds of a million entries of place keys: 80 ms, where finding each match
        and splitting its entry took 1.5 s; a city's 2,000 photos: 50 ms against 14)."""
        needle, ends = encode(value), self._ends
        marks = np.flatnonzero(np.frombuffer(self._raw, dtype=np.uint8) == encode(sep)[0])
        # every field's first byte and the byte after its last, in order (each field ends before the next starts);
        # each is two sorted runs, which a stable sort merges in one pass
        firsts = np.sort(np.concatenate([self._starts(), marks + 1]), kind="stable")
        lasts = np.sort(np.concatenate([marks, ends]), kind="stable")
        at = self._holding(firsts[lasts - firsts == len(needle)], needle)
        rows = np.searchsorted(ends, at, side="right")  # in order: an entry holding it twice is listed once
        rows = rows[np.concatenate([rows[:1] >= 0, rows[1:] != rows[:-1]])]
        return self._and_appended(rows, lambda text: value in text.split(sep))

    def _starts(self) -> np.ndarray:
        """Where each packed entry starts in the bytes (int64)."""
        return np.concatenate([np.zeros(1, np.int64), self._ends[:-1]])[:len(self._ends)]

    def _holding(self, at: np.ndarray, needle: bytes) -> np.ndarray:
        """Those of the byte positions ``at`` (each with ``len(needle)`` bytes of its entry after it) where the
        packed bytes read ``needle``: compared a byte at a time from its last, over the positions still in the
        running (a path's last folder tells paths apart soonest)."""
        raw = np.frombuffer(self._raw, dtype=np.uint8)
        for n in range(len(needle) - 1, -1, -1):
            at = at[raw[at + n] == needle[n]]
        return at

    def _and_appended(self, rows: np.ndarray, test: Callable[[str], bool]) -> np.ndarray:
        """The packed entries ``rows``, then the numbers of the strings appended since that pass ``test``."""
        base = len(self._ends)
        return np.concatenate([rows, np.asarray([base + n for n, text in enumerate(self._tail) if test(text)],
                                                dtype=np.int64)])

    def _found(self, needle: bytes) -> list[int]:
        """The numbers of the packed entries holding ``needle``, found by searching their bytes at once: each
        match is placed in its entry, and the search goes on from the next entry (or, for a match across two
        entries, from the next byte)."""
        raw, ends = self._raw, self._ends
        found: list[int] = []
        at = raw.find(needle)
        while at >= 0:
            entry = int(np.searchsorted(ends, at, side="right"))
            inside = at + len(needle) <= ends[entry]
            if inside:
                found.append(entry)
            at = raw.find(needle, int(ends[entry]) if inside else at + 1)
        return found

    def equal_to_any(self, values: Iterable[str]) -> np.ndarray:
        """The numbers of the entries equal to one of ``values``, in order: the packed ones picked by their
        length and edge bytes (``_edge_keys``) at once, then compared whole."""
        wanted = {encode(v) for v in values}
        if not wanted:
            return np.zeros(0, dtype=np.int64)
        listed = list(wanted)
        keys = PackedStrings(b"".join(listed), np.cumsum([len(w) for w in listed], dtype=np.int64))._edge_keys()
        found = [n for n in np.flatnonzero(np.isin(self._edge_keys(), keys)).tolist() if self.raw(n) in wanted]
        base = len(self._ends)
        found.extend(base + n for n, text in enumerate(self._tail) if encode(text) in wanted)
        return np.asarray(found, dtype=np.int64)

    def _edge_keys(self, rows: int = 1 << 16) -> np.ndarray:
        """A uint64 per packed entry from its length and its first and last 8 bytes (equal entries have equal
        keys; hex digests that share a prefix, or paths a suffix, still differ), gathered ``rows`` at a time."""
        ends, starts = self._ends, self._starts()
        raw = np.frombuffer(b"\0" * 8 + self._raw + b"\0" * 8, dtype=np.uint8)
        offsets = np.arange(8, dtype=np.int64)
        keys = np.empty(len(ends), dtype=np.uint64)
        for at in range(0, len(ends), rows):
            first, end = starts[at:at + rows, None], ends[at:at + rows, None]
            size = end - first
            head = np.where(offsets < size, raw[8 + first + offsets], 0).astype(np.uint8)
            tail = np.where(offsets >= 8 - size, raw[end + offsets], 0).astype(np.uint8)
            mixed = head.view(np.uint64).ravel() ^ (tail.view(np.uint64).ravel() * np.uint64(0x9E3779B97F4A7C15))
            keys[at:at + rows] = mixed ^ (size.ravel().astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
        return keys

    def packed(self) -> PackedStrings:
        """The same strings, every one packed (none held as a Python object): those appended since after the
        others."""
        if not self._tail:
            return self
        more, ends = pack(self._tail)
        return PackedStrings(self._raw + more.tobytes(), np.concatenate([self._ends, ends + len(self._raw)]))

    def kept(self, keep: np.ndarray) -> PackedStrings:
        """The entries where the bool array ``keep`` is true, packed, made by one mask over the bytes (no
        Python object per entry); those appended since are packed first."""
        if self._tail:
            return self.packed().kept(keep)
        ends = self._ends
        lengths = np.diff(ends, prepend=np.int64(0))
        data = np.frombuffer(self._raw, dtype=np.uint8)[np.repeat(keep, lengths)]
        return PackedStrings(data.tobytes(), np.cumsum(lengths[keep], dtype=np.int64))

    def joined(self, more: PackedStrings) -> PackedStrings:
        """These entries and then ``more``'s, packed."""
        data, ends = self.arrays()
        extra, extra_ends = more.arrays()
        return PackedStrings(data.tobytes() + extra.tobytes(),
                             np.concatenate([ends, extra_ends + len(data)]).astype(np.int64))

    def hashes(self) -> np.ndarray:
        """Python's ``hash`` of each entry's bytes (int64; valid in this process only)."""
        return np.fromiter(map(hash, self._each_encoded()), np.int64, count=len(self))

    def encoded(self) -> list[bytes]:
        """Every entry's bytes (``encode``), in order."""
        return list(self._each_encoded())

    def _each_encoded(self) -> Iterator[bytes]:
        raw, ends = self._raw, self._ends.tolist()
        yield from (raw[a:b] for a, b in zip([0, *ends[:-1]], ends))
        yield from (encode(text) for text in self._tail)

    def extend(self, strings: Iterable[str]) -> None:
        """Append strings (to a ``copy``: the packed part is shared)."""
        self._tail.extend(strings)

    def copy(self) -> PackedStrings:
        """The same strings, sharing the packed part, with a list of their own for what is appended."""
        return PackedStrings(self._raw, self._ends, list(self._tail))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``pack``'s arrays of these strings (the packed part as it is, the appended ones packed after it)."""
        data = np.frombuffer(self._raw, dtype=np.uint8)
        if not self._tail:
            return data, self._ends
        more, ends = pack(self._tail)
        return np.concatenate([data, more]), np.concatenate([self._ends, ends + len(self._raw)])


class RowFinder:
    """The row of a string among packed ones, found by its hash in a sorted array of them (16 bytes an entry,
    built in about half a second for a million; a lookup takes a few microseconds, where a dict of a million
    strings costs a Python object per entry). The strings must not change while it is used."""

    def __init__(self, strings: PackedStrings):
        self._strings = strings
        hashes = strings.hashes()
        order = np.argsort(hashes, kind="stable")
        self._sorted, self._order = hashes[order], ints(order)
        self._hashes = ints(self._sorted)

    def row(self, value: str) -> int:
        """The first row holding ``value``, or -1."""
        wanted = encode(value)
        key = hash(wanted)
        at, size, hashes = int(self._sorted.searchsorted(key)), len(self._hashes), self._hashes
        while at < size and hashes[at] == key:
            row = self._order[at]
            if self._strings.raw(row) == wanted:
                return row
            at += 1
        return -1


class _Keys(Sequence[bytes]):
    """The packed keys as bytes, for ``bisect``."""

    def __init__(self, keys: PackedStrings):
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, n: int) -> bytes:  # type: ignore[override]
        return self._keys.raw(n)


class ListTable(Mapping[str, tuple[np.ndarray, ...]]):
    """A mapping from string keys to rows of equally long arrays (a posting list: doc numbers, term
    frequencies), read from sorted packed arrays, with the keys set since kept in a dict beside them.

    A table is changed only while it is being made (``__setitem__`` on a ``copy``): the arrays are shared
    between copies, never written.
    """

    def __init__(self, columns: int, keys: PackedStrings | None = None, offsets: np.ndarray | None = None,
                 values: Sequence[np.ndarray] = ()):
        self.columns = columns
        self._keys = keys if keys is not None else PackedStrings()
        self._offsets = offsets if offsets is not None else np.zeros(1, np.int64)
        self._values = tuple(values) if values else tuple(np.zeros(0, np.int32) for _ in range(columns))
        self._set: dict[str, tuple[np.ndarray, ...]] = {}
        self._added = 0  # keys set that the arrays do not hold

    @classmethod
    def from_arrays(cls, data: Any, prefix: str, dtypes: Sequence[Any]) -> ListTable | None:
        """The table ``arrays(prefix)`` saved, or None when its arrays do not fit together."""
        keys = unpack_named(data, f"{prefix}keys")
        offsets = data[f"{prefix}offsets"]
        values = [np.asarray(data[f"{prefix}values{n}"], dtype=dtype) for n, dtype in enumerate(dtypes)]
        if len(offsets) != len(keys) + 1 or any(len(v) != offsets[-1] for v in values):
            return None
        return cls(len(dtypes), keys, offsets, values)

    def _base(self, key: str) -> int:
        """The row of ``key`` in the arrays, or -1."""
        if not len(self._offsets) > 1:  # no arrays (a table being built)
            return -1
        wanted, keys = encode(key), _Keys(self._keys)
        at = bisect.bisect_left(keys, wanted)
        return at if at < len(keys) and keys[at] == wanted else -1

    def _row(self, at: int) -> tuple[np.ndarray, ...]:
        start, end = int(self._offsets[at]), int(self._offsets[at + 1])
        return tuple(v[start:end] for v in self._values)

    def __getitem__(self, key: str) -> tuple[np.ndarray, ...]:
        found = self._set.get(key)
        if found is not None:
            return found
        at = self._base(key)
        if at < 0:
            raise KeyError(key)
        return self._row(at)

    def __setitem__(self, key: str, value: tuple[np.ndarray, ...]) -> None:
        if key not in self._set and self._base(key) < 0:
            self._added += 1
        self._set[key] = value

    def __len__(self) -> int:
        return len(self._keys) + self._added

    def append(self, key: str, row: tuple[np.ndarray, ...]) -> None:
        """Set ``key``'s row to the one it has with ``row`` after it (``row`` for a new key)."""
        old = self.get(key)
        self[key] = row if old is None else tuple(np.concatenate([a, b]) for a, b in zip(old, row))

    def __iter__(self) -> Iterator[str]:
        yield from (key for key in self._keys if key not in self._set)
        yield from self._set

    def items(self) -> Iterator[tuple[str, tuple[np.ndarray, ...]]]:  # type: ignore[override]
        for at, key in enumerate(self._keys):
            if key not in self._set:
                yield key, self._row(at)
        yield from self._set.items()

    def copy(self) -> ListTable:
        """A table sharing these arrays, with a dict of its own for the keys set later."""
        new = ListTable(self.columns, self._keys, self._offsets, self._values)
        new._set, new._added = dict(self._set), self._added
        return new

    @classmethod
    def of(cls, columns: int, items: Iterable[tuple[str, tuple[np.ndarray, ...]]]) -> ListTable:
        """A table of these (key, row) pairs."""
        table = cls(columns)
        for key, value in items:
            table._set[key] = value
        table._added = len(table._set)
        return table

    def packed(self) -> ListTable:
        """The same table with every row in its sorted arrays (none in the dict)."""
        return ListTable(self.columns, *self._merged()) if self._set else self

    @classmethod
    def joined(cls, columns: int, tables: Sequence[ListTable]) -> ListTable:
        """One table of the rows of ``tables``, a key's rows one after another in the tables' order (a build's
        chunks: a token's documents stay in order), made by one sort of every key."""
        tables = [table.packed() for table in tables if len(table)]
        if not tables:
            return cls(columns)
        keys = [key for table in tables for key in table._keys.encoded()]
        starts, lengths, base = [], [], 0
        for table in tables:
            starts.append(table._offsets[:-1] + base)
            lengths.append(np.diff(table._offsets))
            base += int(table._offsets[-1])
        order = np.asarray(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)  # stable: table order
        start, length = np.concatenate(starts)[order], np.concatenate(lengths)[order]
        gather = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(int(length.sum()))
        values = tuple(np.concatenate([table._values[n] for table in tables])[gather] for n in range(columns))
        ordered = [keys[n] for n in order.tolist()]
        first = np.flatnonzero([True, *(a != b for a, b in zip(ordered, ordered[1:]))])
        unique = [ordered[n] for n in first.tolist()]
        offsets = np.concatenate([[0], np.cumsum(np.add.reduceat(length, first))]).astype(np.int64)
        return cls(columns, PackedStrings(b"".join(unique), np.cumsum([len(k) for k in unique], dtype=np.int64)),
                   offsets, values)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The table as sorted arrays (``from_arrays`` reads them): those it was read from with the keys set
        since merged in, copying the arrays between them in whole runs."""
        keys, offsets, values = self._merged() if self._set else (self._keys, self._offsets, self._values)
        return {**pack_named(f"{prefix}keys", keys), f"{prefix}offsets": offsets,
                **{f"{prefix}values{n}": v for n, v in enumerate(values)}}

    def _merged(self) -> tuple[PackedStrings, np.ndarray, tuple[np.ndarray, ...]]:
        """The keys, row offsets and columns of the keys of the arrays and those set since, in key order (a
        key set since replaces the arrays' row); the arrays' rows between the keys set since are copied in
        whole runs."""
        base = _Keys(self._keys)
        size = len(base)
        raw, ends = self._keys.arrays()
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        key_lengths, lengths = ends - starts, np.diff(self._offsets)
        runs: list[tuple[Any, ...]] = []  # (key bytes, key lengths, row lengths, *columns)
        new: list[tuple[bytes, tuple[np.ndarray, ...]]] = []  # rows set since, not yet in ``runs``
        done = 0  # the arrays' rows before this one are placed

        def flush(upto: int) -> None:
            if new:
                runs.append((np.frombuffer(b"".join(k for k, _ in new), np.uint8), [len(k) for k, _ in new],
                             [len(row[0]) for _, row in new], *(np.concatenate([row[n] for _, row in new])
                                                                 for n in range(self.columns))))
                new.clear()
            if upto > done:
                a, b = int(self._offsets[done]), int(self._offsets[upto])
                runs.append((raw[starts[done]:ends[upto - 1]], key_lengths[done:upto], lengths[done:upto],
                             *(v[a:b] for v in self._values)))

        for wanted, key in sorted((encode(k), k) for k in self._set):
            at = bisect.bisect_left(base, wanted, lo=done) if done < size else done
            if at > done:
                flush(at)
            new.append((wanted, self._set[key]))
            done = at + 1 if at < size and base[at] == wanted else at
        flush(size)
        keys = PackedStrings(np.concatenate([r[0] for r in runs]).astype(np.uint8).tobytes(),
                             np.cumsum(np.concatenate([np.asarray(r[1], np.int64) for r in runs]), dtype=np.int64))
        lengths = np.concatenate([np.asarray(r[2], np.int64) for r in runs])
        return (keys, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                tuple(np.concatenate([r[3 + n] for r in runs]) for n in range(self.columns)))
