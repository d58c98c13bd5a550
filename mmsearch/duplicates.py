"""Near-duplicate groups: copies, resizes, re-encodes and light edits of one photo, never a burst of
different ones, nor different pictures that hash alike.

- **the pair rule** is ``mmsearch.likeness.same_photo``: the same bytes; or pHashes at most ``max_bits``
  apart *and* a second, independent view that agrees (the stored look in every profile, and the image
  vectors at least ``min_cosine`` alike where the index has an image model). Flat pictures (one colour)
  pair only with the same bytes or the same look. Search folds copies in a result list by the same rule.
- **no chaining:** images are taken best keeper first; each takes, as its group, the images not yet
  grouped that match *it* directly. Every member matches its keeper, so A~B and B~C never pull A and C
  together (Immich's transitive grouping chained bursts into groups of thousands, immich#31487).
- **keeper:** highest resolution, then largest file, then most EXIF facts (camera, date taken), then the
  oldest date, then the path.

Hash pairs are found exactly (every pair within ``max_bits``, no index that could miss one): XOR and
popcount of the 64-bit hashes, in blocks, with numpy. The groups of a few photos (``of``: the ones just
added) compare their hashes with those the keyword index keeps of every image, and read only the records
of the images that pair with them: at 200k images, not every record's metadata (29 s).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .hamming import pairs_within
from .likeness import MAX_BITS, MIN_COSINE, Look, same_photo
from .paths import within, within_any

if TYPE_CHECKING:
    from .search.keywords import KeywordIndex
    from .store.client import Store


@dataclass(frozen=True)
class Member:
    """One file of a group, with how it matches the keeper."""

    path: str
    kind: str  # "keeper", "exact" (same bytes) or "near"
    hash_distance: int
    cosine: float | None
    width: int
    height: int
    size: int
    sha256: str = ""  # the content hash the index recorded when the group was found


@dataclass
class DuplicateGroup:
    """Files that are one photo: the suggested keeper first, and why it was chosen."""

    keep: str
    reason: str
    members: list[Member] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        """Every file of the group, the keeper first."""
        return [m.path for m in self.members]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``mmsearch duplicates --json``)."""
        return {"files": self.files, "keep": self.keep, "reason": self.reason,
                "members": [asdict(m) for m in self.members]}


@dataclass(frozen=True)
class _Image:
    id: str
    path: str
    sha256: str
    phash: int
    width: int
    height: int
    size: int
    exif: int
    date: int
    look: Look

    def rank(self) -> tuple:
        """Sort key: the best keeper first."""
        return (-self.width * self.height, -self.size, -self.exif, self.date, self.path)


def find_groups(records: Iterable[tuple[str, dict]], vectors: Any = None, max_bits: int = MAX_BITS,
                min_cosine: float = MIN_COSINE, only: set[str] | None = None) -> list[DuplicateGroup]:
    """Duplicate groups among ``(image id, stored metadata)`` records.

    Args:
        records: the images to look at (e.g. one folder's).
        vectors: ``callable(ids) -> {id: unit vector}`` for the cosine check, or None (hash alone).
        max_bits: largest pHash distance of a near duplicate.
        min_cosine: smallest image-vector cosine of a near duplicate (when ``vectors`` is given).
        only: just the groups of these image ids (photos added later: compared with all, not all with all).
    """
    images = [_image(i, m) for i, m in records if m.get("phash") or m.get("sha256")]
    images.sort(key=_Image.rank)
    rows = None if only is None else [n for n, image in enumerate(images) if image.id in only]
    matches = _hash_pairs(images, max_bits, rows)
    exact: dict[str, list[int]] = {}
    for n, image in enumerate(images):
        if image.sha256:
            exact.setdefault(image.sha256, []).append(n)
    wanted = None if rows is None else set(rows)
    for same in exact.values():
        if wanted is None or wanted & set(same):
            for a in same:
                matches.setdefault(a, {}).update({b: 0 for b in same if b != a})
    cosines = _cosines(images, matches, vectors)
    groups, taken = [], set()
    for n, keeper in enumerate(images):
        if n in taken:
            continue
        members = [m for m in sorted(matches.get(n, {}))
                   if m not in taken and same_photo(keeper.look, images[m].look, cosines.get((min(n, m), max(n, m))),
                                                    max_bits, min_cosine)]
        if not members:
            continue
        taken.update([n, *members])
        head = Member(keeper.path, "keeper", 0, 1.0 if cosines else None, keeper.width, keeper.height, keeper.size,
                      keeper.sha256)
        rest = [Member(images[m].path, "exact" if _same_bytes(images, n, m) else "near", matches[n][m],
                       cosines.get((min(n, m), max(n, m))), images[m].width, images[m].height, images[m].size,
                       images[m].sha256)
                for m in members]
        groups.append(DuplicateGroup(keeper.path, _reason(keeper, [images[m] for m in members]), [head, *rest]))
    return groups


def library_groups(store: Store, vectors: bool, folder: str | Path | None = None, max_bits: int | None = None,
                   min_cosine: float | None = None, of: Sequence[str | Path] | None = None,
                   library: KeywordIndex | None = None) -> list[DuplicateGroup]:
    """The groups of an index's images under its roots (``SearchEngine.duplicates`` documents the options);
    ``vectors``: whether the index's image vectors take part (not the offline profile's, see below);
    ``library``: the keyword index, whose hashes of every image spare ``of`` reading every record."""
    from .errors import ConfigError

    if max_bits is not None and (isinstance(max_bits, bool) or not isinstance(max_bits, int) or not 0 <= max_bits <= 64):
        raise ConfigError(f"max_bits is a whole number of hash bits from 0 to 64, got {max_bits!r}")
    if min_cosine is not None and (not isinstance(min_cosine, (int, float)) or not -1.0 <= min_cosine <= 1.0):
        raise ConfigError(f"min_cosine is a number from -1 to 1, got {min_cosine!r}")
    if not store.ready:
        return []
    roots = store.roots()
    inside = str(Path(os.path.expanduser(str(folder))).absolute()) if folder else None

    def looked_at(path: str) -> bool:
        return within_any(path, roots) and (inside is None or within(path, inside))

    bits = MAX_BITS if max_bits is None else max_bits
    wanted = None if of is None else [os.path.abspath(os.path.expanduser(str(p))) for p in of]
    if wanted is not None and library is not None:
        records = [(i, m) for i, m in _partners(store, library, roots, inside, wanted, bits) if looked_at(m["path"])]
    else:
        records = [(i, m) for i, m in store.all_metadata() if looked_at(m["path"])]
    only = None if wanted is None else {i for i, m in records if within_any(m["path"], wanted)}
    # The offline profile's colour-layout vectors are no check (a brightness change moved them more, cosine
    # 0.33 for a grey texture, than a burst did); the stored look is its second view (mmsearch.likeness).
    return find_groups(records, store.image_vectors if vectors else None, bits,
                       MIN_COSINE if min_cosine is None else min_cosine, only)


def _partners(store: Store, library: KeywordIndex, roots: list[str], inside: str | None, wanted: list[str],
              max_bits: int) -> list[tuple[str, dict]]:
    """The records of the ``wanted`` images and of every image whose hashes (as the keyword index keeps
    them) pair with one of theirs, among those under the ``roots`` (and ``inside``): all that ``find_groups``
    with ``only`` reads of a library."""
    docs = _docs_within(library, roots)
    if inside is not None:
        docs = np.intersect1d(docs, _docs_within(library, [inside]))
    mine = np.flatnonzero(np.isin(docs, _docs_within(library, wanted)))  # positions in ``docs``
    hashes = library.phashes[docs]
    pairs = pairs_within(hashes, hashes != 0, max_bits, mine.tolist())
    involved = {*mine.tolist(), *(m for found in pairs.values() for m in found)}
    shas = {library.doc_sha256[int(d)] for d in docs[mine]} - {""}
    involved.update(np.flatnonzero(np.isin(docs, library.doc_sha256.equal_to_any(shas))).tolist())
    ids = library.ids.at(docs[sorted(involved)])
    return list(store.image_metadata(ids).items())


def _docs_within(library: KeywordIndex, folders: Sequence[str]) -> np.ndarray:
    """The live documents of the keyword index whose paths are one of ``folders`` or inside one
    (``within_any``), sorted: found in the packed paths by their start, so the cost follows the photos found."""
    live = library.alive
    if any(library.folder_counts.get(folder.rstrip(os.sep) or os.sep) == len(library) for folder in folders):
        return np.flatnonzero(live)  # a folder holding every photo (a library's one root)
    found: set[int] = set()
    for folder in folders:
        docs = library.paths.starting_with(folder)
        docs = docs[live[docs]]
        found.update(d for d, path in zip(docs.tolist(), library.paths.at(docs)) if within(path, folder))
    return np.asarray(sorted(found), dtype=np.int64)


def follower(store: Store) -> Any:
    """The callback that moves an indexed file's record with the file (``move_files``, ``undo_moves``)."""
    from .ids import image_id
    from .ingest.indexer import path_fields

    def follow(old: str, new: str) -> None:
        if store.image_metadata([image_id(old)]):
            store.move(image_id(old), image_id(new), path_fields(new))

    return follow


def _same_bytes(images: list[_Image], a: int, b: int) -> bool:
    return bool(images[a].sha256) and images[a].sha256 == images[b].sha256


def _image(image_id: str, meta: dict) -> _Image:
    """An image as the duplicate rule compares it. A video takes part by its bytes alone (one poster frame
    says too little: two clips of one scene are not copies), so it has no pHash here."""
    look = Look.of(meta)
    exif = int(bool(meta.get("camera"))) + int(bool(meta.get("taken")))
    phash = 0 if meta.get("kind") == "video" else look.phash
    return _Image(image_id, str(meta.get("path", "")), look.sha256, phash, int(meta.get("width") or 0),
                  int(meta.get("height") or 0), int(meta.get("size") or 0), exif, int(meta.get("date") or 0), look)


def _hash_pairs(images: list[_Image], max_bits: int, rows: list[int] | None = None) -> dict[int, dict[int, int]]:
    """Every pair of images (by position) whose hashes are at most ``max_bits`` apart: n -> {m: bits},
    both ways. ``rows``: only the pairs that involve these positions."""
    return pairs_within(np.array([i.phash for i in images], dtype=np.uint64), np.array([bool(i.phash) for i in images]),
                        max_bits, rows)


def _cosines(images: list[_Image], matches: dict[int, dict[int, int]], vectors: Any) -> dict[tuple[int, int], float]:
    if vectors is None or not matches:
        return {}
    involved = sorted({n for n in matches} | {m for found in matches.values() for m in found})
    stored = vectors([images[n].id for n in involved])
    out = {}
    for a, found in matches.items():
        for b in found:
            va, vb = stored.get(images[a].id), stored.get(images[b].id)
            if a < b and va is not None and vb is not None:
                out[(a, b)] = round(float(np.dot(va, vb)), 4)
    return out


def _reason(keeper: _Image, others: list[_Image]) -> str:
    """Why this file is the one to keep, in words."""
    if any(o.width * o.height < keeper.width * keeper.height for o in others):
        return f"highest resolution ({keeper.width}x{keeper.height})"
    if any(o.size < keeper.size for o in others):
        return f"largest file ({keeper.size:,} bytes) at the same resolution"
    if any(o.exif < keeper.exif for o in others):
        return "most EXIF facts (camera, date taken)"
    if any(o.date > keeper.date for o in others):
        return "oldest"
    return "identical files: the first by path"


# -- moving the extra copies away (nothing is ever deleted) ------------------------------------------

MANIFEST_PREFIX = "mmsearch-duplicates-"


def plan_moves(groups: list[DuplicateGroup], dest: str, roots: list[str], database: str = "") -> list[tuple[str, str]]:
    """(from, to) for every file of the groups but the keepers: under ``dest``, by the name of the indexed
    folder it was in and its path inside it, so the folder structure is kept and two roots never clash.

    Raises:
        ConfigError: ``dest`` is inside an indexed folder (the moved copies would be indexed again), also
            through a symbolic link, or inside the database folder (whose thumbnails the page serves).
    """
    from .errors import ConfigError

    dest = os.path.abspath(os.path.expanduser(dest))
    real, real_roots = os.path.realpath(dest), [os.path.realpath(r) for r in roots]
    if within_any(dest, roots) or within_any(real, real_roots):
        raise ConfigError(f"{dest} is inside an indexed folder; move duplicates to a folder outside "
                          f"{', '.join(r for r, rr in zip(roots, real_roots) if within(dest, r) or within(real, rr))}")
    if database and within(real, os.path.realpath(database)):
        raise ConfigError(f"{dest} is inside the database folder {database}; move duplicates to a folder of your own")
    moves = []
    for group in groups:
        for member in group.members[1:]:
            root = max((r for r in roots if within(member.path, r)), key=len, default=os.path.dirname(member.path))
            inside = os.path.relpath(member.path, root)
            moves.append((member.path, os.path.join(dest, os.path.basename(root.rstrip(os.sep)) or "root", inside)))
    return moves


def changed_since_found(groups: list[DuplicateGroup], recorded: Any) -> list[str]:
    """Files of ``groups`` (keepers too: moving the copies of a changed keeper would lose the photo) that are
    no longer what they were when the groups were found: the index now records another hash for them, or
    the file is not the indexed image any more (``media.identity.still_indexed``). ``recorded(path)`` is
    the index record of a path, or None."""
    from .media.identity import still_indexed

    changed = []
    for group in groups:
        for member in group.members:
            meta = recorded(member.path)
            if meta is None or (member.sha256 and meta.get("sha256") != member.sha256) \
                    or not still_indexed(member.path, meta):
                changed.append(member.path)
    return changed


MANIFEST_FORMAT, MANIFEST_VERSION = "mmsearch-duplicates-moves", 2
KEY_NAME = "duplicates-manifest.key"  # in the database folder (``Config.local_dir``): signs the manifests


def manifest_key(folder: str | Path) -> bytes:
    """The key that signs this index's move manifests, made (mode 0600) on first use."""
    import secrets

    path = Path(folder) / KEY_NAME
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another thread
            return path.read_bytes()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
    return key


def _mac(key: bytes, roots: list[str], moved: list[dict[str, str]]) -> str:
    import hashlib
    import hmac
    import json

    body = json.dumps({"roots": roots, "moved": moved}, sort_keys=True, ensure_ascii=False)
    return hmac.new(key, body.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def move_files(moves: list[tuple[str, str]], dest: str, follow: Any, key: bytes, roots: list[str]) -> str:
    """Move each file (never over an existing one), call ``follow(old, new)`` after each so the index
    follows, and write a manifest that ``undo_moves`` reverses: the moves with each file's image id, the
    indexed roots, and a MAC over both with ``key``. Returns the manifest's path."""
    import json
    import shutil
    import time

    from .ids import image_id

    os.makedirs(dest, exist_ok=True)
    manifest = os.path.join(dest, f"{MANIFEST_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json")
    done: list[dict[str, str]] = []
    try:
        for source, target in moves:
            target = _free(target)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(source, target)
            done.append({"from": source, "to": target, "id": image_id(target)})
            follow(source, target)
    finally:  # written even if a move failed halfway: what was moved can be put back
        with open(manifest, "w", encoding="utf-8") as handle:
            json.dump({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "roots": roots, "moved": done,
                       "mac": _mac(key, roots, done)}, handle, indent=1, ensure_ascii=False)
    return manifest


def read_manifest(manifest: str, key: bytes) -> list[dict[str, str]]:
    """The moves of a manifest this index wrote, oldest first.

    Raises:
        ConfigError: it cannot be read, is not a duplicates manifest, or its MAC does not match this index's
            key (edited, or written elsewhere). Manifests of version 1 (unsigned, before this check) are read,
            and ``undo_moves`` still checks each entry against the index.
    """
    import hmac
    import json

    from .errors import ConfigError

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{manifest} is not a duplicates manifest of this index: {why}")

    try:
        with open(manifest, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise refuse(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or data.get("version") not in (1, 2):
        raise refuse("no mmsearch-duplicates-moves format of version 1 or 2")
    moved, roots = data.get("moved"), data.get("roots", [])
    if not isinstance(moved, list) or not all(isinstance(e, dict) and isinstance(e.get("from"), str)
                                              and isinstance(e.get("to"), str) for e in moved):
        raise refuse('"moved" is not a list of {"from": path, "to": path}')
    if data["version"] == 2 and not (isinstance(data.get("mac"), str) and isinstance(roots, list)
                                      and hmac.compare_digest(data["mac"], _mac(key, roots, moved))):
        raise refuse("its checksum does not match (edited, or written by another index)")
    return moved


def undo_moves(entries: list[dict[str, str]], follow: Any, recorded: Any, roots: list[str]) -> tuple[int, list[str]]:
    """Move every file of a manifest's verified ``entries`` (``read_manifest``) back where it was;
    ``follow(old, new)`` after each. Returns how many went back, and the files left where they are.

    Only what mmsearch moved goes back: an entry's ``to`` must be the path the index records for that
    image (``recorded(image id) -> path or None``: the index followed the move), a regular file and no
    link; its ``from`` must be inside an indexed folder (``roots``); and nothing is ever moved onto an
    existing path (a dangling link counts as one)."""
    import shutil

    from .ids import image_id

    back, left = 0, []
    for entry in reversed(entries):
        source, target = entry["from"], entry["to"]
        own = image_id(target)
        if entry.get("id", own) != own or recorded(own) != target or not within_any(source, roots) \
                or os.path.islink(target) or not os.path.isfile(target) or os.path.lexists(source):
            left.append(target)
            continue
        os.makedirs(os.path.dirname(source), exist_ok=True)
        shutil.move(target, source)
        follow(target, source)
        back += 1
    return back, left


def _free(path: str) -> str:
    """``path``, or ``name (2).ext``, ... when it is taken."""
    stem, ext = os.path.splitext(path)
    n, candidate = 1, path
    while os.path.exists(candidate):
        n += 1
        candidate = f"{stem} ({n}){ext}"
    return candidate
