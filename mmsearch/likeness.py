"""When two indexed files are one photo: the duplicate rule, in one place. ``mmsearch.duplicates`` groups a
library with it, and search (``mmsearch.search.collapse``) folds copies in a result list with it.

A pair is one photo when:

- **exact:** the files have the same bytes (sha256); or
- **near:** their 64-bit pHashes are at most ``max_bits`` apart, *and* a second, independent view agrees:
  - the image vectors are at least ``min_cosine`` alike, where the index has an image model; and
  - the **look** agrees (every profile): the 8 x 8 RGB and 16 x 16 grey thumbnails stored at index time
    (``media.images.look_print``). The colour balance (channel means over their mean) must differ by at
    most ``MAX_TINT``; the cells, centred on their mean and scaled by their spread, by at most
    ``MAX_COLOUR_CHANGE`` in colour; and a local change (a cell in grey changed by more
    than ``MAX_LOCAL_CHANGE`` while the median cell did not move, ``STILL``) marks another state of one
    picture (a battery icon at 20 % and at 40 %), not a copy.
- **flat pictures** (every colour channel and the grey of the look spread less than ``FLAT_SPREAD``; their pHash
  says nothing, as any flat colour hashes alike) are one photo only with the same bytes, or the same look
  to within ``SAME_LOOK`` per cell: a blank page and a blue field stay apart.

The thresholds were measured by ``benchmarks/duplicates_bench.py`` (README, "Duplicates").
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cached_property

import numpy as np

MAX_BITS = 8  # pHash bits: variants of one photo measured within 8, different photos 16 or more apart
MIN_COSINE = 0.92  # image vectors of variants; a guess until measured with real CLIP weights (see README)
COLOUR_SIDE, GREY_SIDE = 8, 16
MAX_COLOUR_CHANGE = 1.2  # variants measured at most 1.04 (2 % crop), an icon's states 2.1 and more
MAX_TINT = 0.1  # colour balance (channel means over their mean): variants at most 0.041, recoloured copies 0.36
MAX_LOCAL_CHANGE, STILL = 1.0, 0.02  # variants never changed one grey cell by 1.0 with the median below 0.02
FLAT_SPREAD = 1.5 / 255  # spread of each colour channel (8 x 8) and of the grey (16 x 16); fine textures
# (a brick wall, gravel, a star field) spread 0.01-0.02 at that size and are pictures, not flat
SAME_LOOK = 0.5 / 255  # two flat pictures are one only with every cell the same (a faint grid is a difference)
MIN_SPREAD = 0.05  # cell differences are scaled by the pictures' spread, at least this much


@dataclass(frozen=True)
class Look:
    """What the rule reads of one indexed file (from its stored metadata)."""

    sha256: str
    phash: int
    colour: np.ndarray | None  # (8, 8, 3) in 0..1
    grey: np.ndarray | None  # (16, 16) in 0..1

    @classmethod
    def of(cls, meta: dict) -> Look:
        """From an image's stored metadata (``sha256``, ``phash``, ``look``); a missing part is None."""
        colour, grey = decode_look(str(meta.get("look") or ""))
        return cls(str(meta.get("sha256") or ""), phash_of(meta), colour, grey)

    @cached_property
    def flat(self) -> bool:
        """No picture to speak of: one colour (or nearly) everywhere (worked out once per look: a result list
        compares each look with many)."""
        if self.colour is None or self.grey is None:
            return self.phash == 0
        return bool(self.colour.reshape(-1, 3).std(axis=0).max() < FLAT_SPREAD and self.grey.std() < FLAT_SPREAD)


def phash_of(meta: dict) -> int:
    """An image's stored perceptual hash (``phash``, 16 hex digits), 0 when it has none."""
    try:
        return int(str(meta.get("phash") or "0"), 16)
    except ValueError:
        return 0


def encode_look(colour: bytes, grey: bytes) -> str:
    """The stored form: the 8 x 8 RGB bytes then the 16 x 16 grey bytes, base64 (600 characters)."""
    return base64.b64encode(colour + grey).decode("ascii")


def decode_look(text: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The inverse of ``encode_look``: (colour, grey) in 0..1, or (None, None) when absent or damaged."""
    try:
        raw = base64.b64decode(text, validate=True) if text else b""
    except ValueError:
        return None, None
    colour_size = COLOUR_SIDE * COLOUR_SIDE * 3
    if len(raw) != colour_size + GREY_SIDE * GREY_SIDE:
        return None, None
    values = np.frombuffer(raw, dtype=np.uint8).astype(np.float32) / 255.0
    return (values[:colour_size].reshape(COLOUR_SIDE, COLOUR_SIDE, 3),
            values[colour_size:].reshape(GREY_SIDE, GREY_SIDE))


def hash_bits(a: Look, b: Look) -> int:
    """How many of the 64 pHash bits differ."""
    return (a.phash ^ b.phash).bit_count()


def same_photo(a: Look, b: Look, cosine: float | None = None, max_bits: int = MAX_BITS,
               min_cosine: float = MIN_COSINE) -> bool:
    """The duplicate rule (module docstring). ``cosine``: the image vectors' cosine, or None when the index
    has no image model."""
    if a.sha256 and a.sha256 == b.sha256:
        return True
    if a.flat or b.flat:
        return a.flat and b.flat and same_look(a, b)
    if hash_bits(a, b) > max_bits or (cosine is not None and cosine < min_cosine):
        return False
    if a.colour is None or b.colour is None:  # a record from before looks (schema 8): the rule it had then
        return True
    return looks_agree(a, b)


def same_look(a: Look, b: Look) -> bool:
    """Two flat pictures with the same look, cell for cell (``SAME_LOOK``), in colour and in grey."""
    if a.colour is None or b.colour is None or a.grey is None or b.grey is None:
        return False
    return bool(np.abs(a.colour - b.colour).max() <= SAME_LOOK and np.abs(a.grey - b.grey).max() <= SAME_LOOK)


def looks_agree(a: Look, b: Look) -> bool:
    """No colour cell moved much, and no local change in a still picture (module docstring)."""
    assert a.colour is not None and b.colour is not None and a.grey is not None and b.grey is not None
    if np.abs(_tint(a.colour) - _tint(b.colour)).max() > MAX_TINT:
        return False
    if _changes(a.colour, b.colour).max() > MAX_COLOUR_CHANGE:
        return False
    grey = _changes(a.grey, b.grey)
    return not (grey.max() > MAX_LOCAL_CHANGE and float(np.median(grey)) < STILL)


def _tint(colour: np.ndarray) -> np.ndarray:
    """The colour balance: each channel's mean over the mean of all three (brightness cancels out)."""
    means = colour.reshape(-1, 3).mean(axis=0)
    return means / max(float(means.mean()), 1e-3)


def _changes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each cell's difference once both pictures are centred on their mean, in units of their spread:
    brightness and contrast changes cancel out."""
    spread = max(float(x.std()), float(y.std()), MIN_SPREAD)
    return np.abs((x - x.mean()) - (y - y.mean())) / spread
