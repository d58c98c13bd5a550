"""The vector store: Chroma collections of image, caption, photo-text and feedback vectors. The only
chromadb import.

Each image file is one record in ``mmsearch_images`` (id = hash of its absolute path, document = the
path, metadata = file facts). Each caption is one record in ``mmsearch_captions`` pointing back to its
image by ``image_id``. Filter fields (folders, date, camera) are copied onto captions so both
collections answer the same ``where`` filter.

Generations: the collections of one set of models form a generation. The first keeps the plain names;
``mmsearch reindex`` builds another beside it, named by its models' signature (``mmsearch_images_<gen>``),
and switches the ``mmsearch_index`` pointer collection's ``active`` field to it in one metadata write.
The pointer lives in the database (or the Chroma server), so every process sees the same switch.
"""

from __future__ import annotations

import copy
import errno
import functools
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import numpy as np

from ..config import MINILM_ID, PACKAGED_MINILM
from ..errors import IndexMismatchError, MMSearchError, StoreError, first_line
from ..heap import trim
from ..ids import NO_IMAGE_MODEL, caption_id, frame_id, split_caption_id, split_frame_id
from ..paths import within_any
from .collections import (
    AT,
    CAPTION_VECTORS,
    CLAIM_LEASE,
    EXACT_MAX,
    EXACT_SHARE,
    FILTER_FIELDS,
    FIRST,
    HNSW,
    HNSW_CAPTIONS,
    KINDS,
    MARKER,
    PAGE,
    POINTER,
    SEQ,
    VECTOR,
    WRITE_CLAIMED,
    WRITE_SEQ,
    WRITE_TOKEN,
    Appearing,
    caption_sources,
    collection_name,
    images_ef,
    nearest_rows,
    open_collection,
    pages,
    pointer_fields,
    records,
    set_search_settings,
    vectors_by_id,
    with_vectors,
)
from .entries import Entries, Entry, entry_of
from .entries import load as load_entries
from .entries import save as save_entries
from .migrations import SCHEMA, VERSION_KEY, Handle, check_readable, stored_version
from .retry import Retrying, RetryPolicy

if TYPE_CHECKING:
    from ..config import Config

OcrRecord = tuple[str, np.ndarray]  # a photo's text as read (mmsearch.media.ocr), and its vector in the caption space
FrameSet = tuple[list[float], np.ndarray]  # a video's sampled frames: their times (s) and image vectors (n, dim)
F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger(__name__)


def _guarded(action: str) -> Callable[[F], F]:
    """Chroma's failures inside a ``Store`` method become one ``StoreError`` line that says what to do
    (generators too: their failures happen while they are iterated)."""
    def wrap(method: F) -> F:
        if inspect.isgeneratorfunction(method):
            @functools.wraps(method)
            def pages(self: Any, *args: Any, **kwargs: Any) -> Any:
                with _translating(action, self.path):
                    yield from method(self, *args, **kwargs)
            pages.guarded = action  # type: ignore[attr-defined]
            return pages  # type: ignore[return-value]

        @functools.wraps(method)
        def inner(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _translating(action, self.path):
                return method(self, *args, **kwargs)
        inner.guarded = action  # type: ignore[attr-defined]
        return inner  # type: ignore[return-value]
    return wrap


@contextmanager
def _translating(action: str, where: str) -> Iterator[None]:
    """Any failure but our own becomes a ``StoreError`` (``failure_message``)."""
    try:
        yield
    except MMSearchError:
        raise
    except Exception as exc:
        raise StoreError(failure_message(action, where, exc)) from exc


def translated(writes: Sequence[str], searches: Sequence[str] = ()) -> Callable[[type], type]:
    """Class decorator: every public method and property of the class goes through ``_guarded``, so no raw
    chromadb exception leaves it. ``writes`` and ``searches`` name the methods that write or search (for the
    message); the others read. Methods decorated by hand keep their own wording."""
    def decorate(cls: type) -> type:
        for name, value in list(vars(cls).items()):
            action = "write" if name in writes else "search" if name in searches else "read"
            if name.startswith("_"):
                continue
            if isinstance(value, property) and value.fget is not None and not hasattr(value.fget, "guarded"):
                setattr(cls, name, property(_guarded(action)(value.fget), value.fset, value.fdel, value.__doc__))
            elif inspect.isfunction(value) and not hasattr(value, "guarded"):
                setattr(cls, name, _guarded(action)(value))
        return cls
    return decorate


def failure_message(action: str, where: str, exc: BaseException) -> str:
    """``cannot write the database at X: <cause>; <what to do>``."""
    text = " ".join(str(e) for e in _chain(exc)).lower()
    message = f"cannot {action} the database at {where}: {first_line(exc)}"
    if "disk is full" in text or "no space" in text or any(getattr(e, "errno", None) == errno.ENOSPC for e in _chain(exc)):
        return message + "; free some disk space and run the command again (what was stored so far is kept)"
    if any(word in text for word in ("hnsw", "segment", "index file", "error loading", "no such file")):
        return (message + "; the vector index files look damaged: `mmsearch export DIR`, then `mmsearch import DIR "
                "--db NEW_DB` rebuilds them from the records (or index again into a new --db)")
    return message


@dataclass(frozen=True)
class WriteMark:
    """Where the store's numbered writes stand, read before reading what they wrote: the last number
    published, that publish's token (two writers can publish one number) and the smallest number of a write
    still in progress (None when none is)."""

    seq: int
    token: str = ""
    pending: int | None = None

    @property
    def through(self) -> int:
        """The first write number a reader has not read all of: after the last one published, or the
        oldest still in progress."""
        return self.seq + 1 if self.pending is None else min(self.seq + 1, self.pending)


def _nearest(collection: Any, ids: Sequence[str], vector: np.ndarray, n: int) -> dict:
    """The ``n`` of these records nearest ``vector`` by cosine, scored exactly from their vectors read by id
    (those removed meanwhile are left out), in the shape of Chroma's query result."""
    read = vectors_by_id(collection, ids)
    if not read:
        return {"ids": [[]], "distances": [[]]}
    found = list(read)
    order, similarity = nearest_rows(np.stack(list(read.values())), vector, n)
    return {"ids": [[found[i] for i in order.tolist()]], "distances": [(1.0 - similarity).tolist()]}


def _applying(by_id: Entries, written: Iterable[tuple[str, dict]], removed: set[str]) -> Iterator[tuple[str, dict]]:
    """``written`` as it is read, with what the writes did applied to the entries ``by_id``: the removals
    first, then each record as it passes (an id removed and written back since is in both)."""
    by_id.discard(removed)
    for image_id, meta in written:
        by_id[image_id] = entry_of(image_id, meta)
        yield image_id, meta


def _applied(kept: Entries, written: Iterable[tuple[str, dict]], removed: set[str]) -> Entries:
    """A copy of the entries ``kept`` with what some writes did applied (``_applying``)."""
    by_id = kept.copy()
    for _ in _applying(by_id, written, removed):
        pass
    return by_id


@dataclass(frozen=True)
class CaptionMatch:
    """A caption found by a vector query. Its id is ``<image_id>:<n>``: the n-th of the image's ``captions``."""

    image_id: str
    index: int
    score: float


@translated(writes=("set_pointer", "ensure_pointer", "drop_generation", "create", "upgrade", "set_schema_version",
                    "set_metadata", "add_roots",
                    "put", "set_ocr", "set_ocr_setting", "move", "delete_images", "delete_captions", "differing",
                    "write_records", "fit_search"),
            searches=("query_images", "query_captions", "query_ocr", "query_frames"))
class Store:
    """Chroma-backed storage of image and caption vectors.

    Args:
        path: Folder of the embedded Chroma database (created if missing).
        url: ``http(s)://host:port`` of a Chroma server (``chroma run``); when given, ``path`` is unused.

    A store reads and writes one generation of collections: the active one, read from the pointer when
    first needed (``generation``), or the one given to ``beside``.
    """

    def __init__(self, path: str | Path, url: str | None = None, headers: dict[str, str] | None = None,
                 retry_seconds: float = 60.0, entries_file: Callable[[str], Path] | None = None):
        self.path = url or str(path)  # where the index lives, as shown in messages
        # the one writer of an embedded database (``mmsearch.lock``); writers into a server run at once, and two
        # can take one write number, so there only what the numbered writes read back is trusted
        self.sole_writer = not url
        self.entries_file = entries_file  # generation -> where its entries are kept (None: not kept)
        try:
            import chromadb

            settings = chromadb.Settings(anonymized_telemetry=False)
            if url:
                parts = urlparse(url)
                policy = RetryPolicy(f"the Chroma server at {url}", _transient, _http_failure, retry_seconds)
                client = policy.call(chromadb.HttpClient, host=parts.hostname or "127.0.0.1", ssl=parts.scheme == "https",
                                     port=parts.port or (443 if parts.scheme == "https" else 8000),
                                     headers=headers or None, settings=settings)
                self.client = Retrying(client, policy, _is_collection)
            else:
                Path(self.path).mkdir(parents=True, exist_ok=True)
                self.client = chromadb.PersistentClient(path=self.path, settings=settings)
        except StoreError:
            raise
        except Exception as exc:  # chromadb raises several types for a bad folder or an absent server
            raise StoreError(f"cannot open the database at {self.path}: {first_line(exc)}") from exc
        self._images: Any = None
        self._captions: Any = None
        self._ocr: Any = None
        self._warming: set[str] = set()  # collections whose vector index ``warm_up`` is loading now
        self._frames = Appearing(HNSW)  # the videos' sampled frames
        self._removed: Any = None
        self._writes: Any = None
        self._stale_claims_dropped = False
        self._entries: tuple[str, int, Entries] | None = None  # (identity, through, by id): ``entries``
        self._follow()
        self._generation: str | None = None

    def _follow(self) -> None:
        """What follows this store's own puts: its entries (``_written``) and the ``follow_writes`` listeners."""
        self._entries_lock = threading.Lock()
        self._entries_new: list[tuple[str, Entry]] = []  # this store's puts since ``_entries``, counted in its through
        self._followers: list[Callable[[int, list[str], list[dict]], None]] = []

    @classmethod
    def from_config(cls, config: Config) -> Store:
        """The embedded database in ``config.db``, or the server at ``config.chroma_url`` (with its headers)."""
        return cls(config.db, url=config.chroma_url, headers=config.server_headers(),
                   retry_seconds=config.chroma_retry_seconds,
                   entries_file=lambda generation: config.local_file("entries", "" if generation == FIRST else generation))

    # -- generations ---------------------------------------------------------------------------------

    @property
    def generation(self) -> str:
        """The generation this store reads and writes (``FIRST``: the plain collection names)."""
        if self._generation is None:
            self._generation = self.pointer()["active"]
        return self._generation

    def name(self, kind: str) -> str:
        """This store's collection of ``kind`` (images, captions, ocr, feedback)."""
        return collection_name(kind, self.generation)

    def beside(self, generation: str) -> Store:
        """A store on the same database that reads and writes another generation's collections."""
        other = copy.copy(self)
        other._generation, other._images, other._captions, other._ocr = generation, None, None, None
        other._frames, other._removed, other._writes = Appearing(HNSW), None, None
        other._entries = None
        other._follow()
        return other

    @_guarded("read")
    def pointer(self) -> dict[str, str]:
        """``active``, ``previous`` and ``building`` generations ("" = none), read from the database now
        (another process may have switched). An index without a pointer is in its first generation."""
        found = pointer_fields(open_collection(self.client, POINTER, False, {"space": "cosine"}))
        return {**found, "active": found["active"] or FIRST}

    @_guarded("write")
    def set_pointer(self, **changes: str) -> None:
        """Change pointer fields in one metadata write (the atomic switch of ``mmsearch reindex``)."""
        collection = open_collection(self.client, POINTER, True, {"space": "cosine"})  # fresh metadata
        collection.modify(metadata={**pointer_fields(collection), **changes})

    def ensure_pointer(self) -> None:
        """Record the active generation where the index has no pointer yet (schema 7)."""
        if open_collection(self.client, POINTER, False, {"space": "cosine"}) is None:
            self.set_pointer(active=self.generation)

    def collection_names(self) -> set[str]:
        """Every collection in the database."""
        return {c if isinstance(c, str) else c.name for c in self.client.list_collections()}

    def has_generation(self, generation: str) -> bool:
        """Whether that generation's image collection exists."""
        return collection_name("images", generation) in self.collection_names()

    @_guarded("write")
    def drop_generation(self, generation: str) -> None:
        """Delete a generation's collections (never the active one's: the caller checks)."""
        for kind in KINDS:
            self._drop(collection_name(kind, generation))

    # -- collections and the model signature -------------------------------------------------------

    def signature(self) -> dict[str, Any] | None:
        """The model ids and dimension that built this index, or None for an empty database."""
        images = self._get_images()
        if images is None:
            return None
        meta = images.metadata or {}
        return {"image_model": meta.get("image_model"), "text_model": meta.get("text_model"), "dim": meta.get("dim"),
                "schema": stored_version(meta),
                # Captions in a space of their own (Config.caption_model); older indexes: the text model's.
                "caption_model": meta.get("caption_model") or meta.get("text_model")}

    def check(self, signature: dict[str, str]) -> bool:
        """Raise ``IndexMismatchError`` if the index was built by other models; False if it is empty."""
        stored = self.signature()
        if stored is None:
            return False
        check_readable(stored["schema"], self.path)
        wanted = {k: signature[k] for k in ("image_model", "text_model")}
        have = {k: stored[k] for k in ("image_model", "text_model")}
        if wanted != have:
            offline = " (the offline profile)" if have["image_model"] == NO_IMAGE_MODEL else ""
            raise IndexMismatchError(
                f"the index at {self.path} was built with image model {have['image_model']} and text model "
                f"{have['text_model']}{offline}, not {wanted['image_model']} and {wanted['text_model']}; leave out "
                f"the model options (--clip-model, --clip-pretrained, --text-model, --offline, MMSEARCH_*_MODEL) to use "
                f"the index's own models, or change its models with `mmsearch reindex` and the same options "
                f"(search goes on meanwhile)")
        self._open_existing()
        return True

    def models(self) -> dict[str, str] | None:
        """The model settings (``clip_model``, ``clip_pretrained``, ``text_model``) that built this index;
        None when it is empty or predates their recording and was not built by the offline profile."""
        images = self._get_images()
        if images is None:
            return None
        meta = images.metadata or {}
        if meta.get("models"):
            return json.loads(meta["models"])
        if meta.get("image_model") == NO_IMAGE_MODEL and meta.get("text_model") == f"sentence-transformers:{MINILM_ID}":
            return {"clip_model": NO_IMAGE_MODEL, "clip_pretrained": "", "text_model": PACKAGED_MINILM}
        return None

    def create(self, signature: dict[str, str], dim: int, models: dict[str, str] | None = None,
               version: int = SCHEMA) -> None:
        """Create both collections for these models, or open them if they exist for the same models.

        Safe when several workers start at once: whoever wins the creation, every worker then checks the
        stored models and dimension against its own. An existing index of an older schema is upgraded; a
        new one created at an older ``version`` (an import of an old export) is left for the caller to
        upgrade once its records are in.
        """
        existed = self.check(signature)
        if not existed:
            meta = {VERSION_KEY: version, "image_model": signature["image_model"], "text_model": signature["text_model"],
                    "caption_model": signature.get("caption_model") or signature["text_model"],
                    "dim": dim, "roots": "[]", "updated_at": 0, "models": json.dumps(models or {})}
            try:
                self.client.get_or_create_collection(
                    self.name("images"), metadata=meta, configuration={"hnsw": HNSW}, embedding_function=None)
            except StoreError:
                raise
            except Exception:  # lost a creation race to another worker: what it created is checked below
                pass
            self._images = self._captions = None
            if not self.check(signature):
                raise StoreError(f"could not create the collections in {self.path}")
            self._keep((self.identity(), 1, Entries()))  # a new collection: no entries, before the first write
        stored_dim = self.signature()["dim"]  # type: ignore[index]
        if stored_dim != dim:
            raise IndexMismatchError(f"the index at {self.path} holds {stored_dim}-d vectors, "
                                     f"the models give {dim}-d; change its models with `mmsearch reindex`")
        if existed or version == SCHEMA:
            self.upgrade()
        if version == SCHEMA:
            self.ensure_pointer()

    def upgrade(self) -> list[int]:
        """Bring an index written by an older mmsearch to the current schema (writers only; see
        ``mmsearch.store.migrations``). Returns the versions it went through."""
        from .migrations import upgrade

        done = upgrade(Handle(self.client, self.path, self.name("images"), self.name("captions"), self.generation))
        if done:  # the steps changed the collections' settings: open them again
            self._images = self._captions = None
            self._get_images()
            self._open_existing()
        return done

    def schema_version(self) -> int:
        """The index's schema version (0 for indexes that predate versions)."""
        images = self._get_images()
        return stored_version(images.metadata or {}) if images is not None else SCHEMA

    def set_schema_version(self, version: int) -> None:
        """Record that the index now has schema ``version``."""
        self._modify_metadata({VERSION_KEY: version})

    def set_metadata(self, changes: dict[str, dict[str, Any]]) -> None:
        """Set some metadata fields of some images (other fields stay)."""
        ids = list(changes)
        if not ids:
            return
        with self._numbered() as seq:
            for start in range(0, len(ids), PAGE):
                chunk = ids[start:start + PAGE]
                self._images.update(ids=chunk, metadatas=[{**changes[i], SEQ: seq} for i in chunk])

    def caption_sources(self, image_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
        """(text, source) of every caption of these images, in caption order."""
        if self._captions is None:
            self._open_existing()
        return caption_sources(self._captions, image_ids)

    @contextmanager
    def _numbered(self) -> Iterator[int]:
        """One write of image records: yields the number its records carry (``SEQ``), claimed first (in
        ``WRITES``, so readers ask from it while it is in progress) and published with a new token once the
        write is done. A write that fails is not published; the next one gets the same number, so a reader
        asking from it reads both."""
        claimed, token = self.write_seq() + 1, uuid.uuid4().hex
        writes = self._writes_collection(create=True)
        self._drop_stale_claims(writes)
        writes.upsert(ids=[token], embeddings=np.ones((1, 1), np.float32), metadatas=[{SEQ: claimed, AT: time.time()}])
        try:
            images = self._fresh_images()
            meta = dict(images.metadata or {})
            seq = max(claimed, int(meta.get(WRITE_SEQ, 0)) + 1)  # one published since it was read: after that
            # said in the images' metadata too, which a new process reads before the claims (``published_through``)
            images.modify(metadata={**meta, WRITE_CLAIMED: max(seq, int(meta.get(WRITE_CLAIMED, 0)))})
            yield seq
            # never a lower number than the one published: a slow write keeps its older one (found by its claim)
            self._modify_metadata({WRITE_SEQ: max(seq, self.write_seq()), WRITE_TOKEN: token})
        finally:
            writes.delete(ids=[token])

    def _drop_stale_claims(self, writes: Any) -> None:
        if not self._stale_claims_dropped:  # once per store: claims of writers killed mid-write
            writes.delete(where={AT: {"$lt": time.time() - CLAIM_LEASE}})
            self._stale_claims_dropped = True

    def _writes_collection(self, create: bool) -> Any:
        if self._writes is None:
            self._writes = open_collection(self.client, self.name("writes"), create, MARKER)
        return self._writes

    @_guarded("read")
    def write_seq(self) -> int:
        """The number of the last write of image records done (0 if none; fresh from the store: the writer
        may be another process)."""
        return int(self._fresh_metadata().get(WRITE_SEQ, 0)) if self._get_images() is not None else 0

    @_guarded("read")
    def write_mark(self) -> WriteMark:
        """Where the numbered writes stand (read it before reading what they wrote; see ``WriteMark``)."""
        if self._get_images() is None:
            return WriteMark(0)
        meta = self._fresh_metadata()
        writes = self._writes_collection(create=False)
        live = writes.get(where={AT: {"$gte": time.time() - CLAIM_LEASE}}, include=["metadatas"]) if writes else None
        pending = [int(m[SEQ]) for m in live["metadatas"]] if live else []
        return WriteMark(int(meta.get(WRITE_SEQ, 0)), str(meta.get(WRITE_TOKEN, "")), min(pending, default=None))

    def published_through(self) -> int | None:
        """The first write number a reader lacks when every write claimed was published (``WriteMark.through``),
        read from the images collection's metadata alone, which never waits for a vector index to load (reading
        the claims does, ``write_mark``); None while a write claimed is not published: one in progress, or one
        whose writer was killed (its records are there, under its number)."""
        if self._get_images() is None:
            return 1
        meta = self._fresh_metadata()
        seq = int(meta.get(WRITE_SEQ, 0))
        return seq + 1 if int(meta.get(WRITE_CLAIMED, 0)) <= seq else None

    def _fresh_metadata(self) -> dict[str, Any]:
        """The images collection's metadata as stored now (other processes write it too)."""
        return dict(self._fresh_images().metadata or {})

    def _fresh_images(self) -> Any:
        """The images collection, its metadata as stored now."""
        return self.client.get_collection(self.name("images"), embedding_function=None)

    @_guarded("read")
    def written_since(self, seq: int, vectors: Collection[str] = ()) -> Iterator[tuple[str, dict]]:
        """(id, metadata) of the images written by write number ``seq`` or a later one (see ``SEQ``), read a
        page at a time as they are iterated: a process catching up 187,000 records held them all at once
        (1.4 GB more at a million photos). ``vectors``: the kinds of vectors each metadata also carries ("image":
        its vector as ``VECTOR``, "caption": its captions' as ``CAPTION_VECTORS``)."""
        if self._get_images() is None:
            return
        written = records(self._images, {SEQ: {"$gte": seq}}, "image" in vectors)
        yield from self._with_captions(written) if "caption" in vectors else written

    @_guarded("read")
    def removed_since(self, seq: int) -> set[str]:
        """The ids of the images removed by write number ``seq`` or a later one (some may be back since)."""
        removed = self._removed_collection(create=False)
        if removed is None:
            return set()
        return {i for page in pages(removed, include=(), where={SEQ: {"$gte": seq}}) for i in page["ids"]}

    def changed_since(self, seq: int, vectors: Collection[str] = ()) -> tuple[Iterator[tuple[str, dict]], set[str]]:
        """What the writes from number ``seq`` on did: the (id, metadata) of the images they wrote, read as
        they are iterated (``written_since``), and the ids of those they removed. A cache of the records
        applies the removals first, then the writes: an id removed and written back since is in both.

        The store's own entries (``entries``) take what was read too, when they lack nothing older and the
        writes are read to their end: the keyword index's read at the end of an index run brings them up
        to date as well. ``vectors`` as ``written_since``.
        """
        kept = self._kept()
        mark = self.write_mark() if kept is not None and kept[1] >= seq else None
        written, removed = self._changes(seq, vectors)
        if mark is not None and kept is not None and kept[0] == self.identity():
            return self._folded(written, removed, (kept[0], mark.through, kept[2])), removed
        return written, removed

    def _folded(self, written: Iterator[tuple[str, dict]], removed: set[str],
                kept: tuple[str, int, Entries]) -> Iterator[tuple[str, dict]]:
        """``written`` as it is read, each record also applied to a copy of the entries ``kept`` (``_applying``),
        which this store keeps once the last is read."""
        by_id = kept[2].copy()
        yield from _applying(by_id, written, removed)
        self._keep((kept[0], kept[1], by_id))

    def _kept(self) -> tuple[str, int, Entries] | None:
        """The entries, with those of this store's own puts since they were read folded in."""
        with self._entries_lock:
            if self._entries_new and self._entries is not None:
                identity, through, by_id = self._entries
                by_id = by_id.copy()
                by_id.update(self._entries_new)
                self._entries = (identity, through, by_id)
            self._entries_new = []
            return self._entries

    def _keep(self, kept: tuple[str, int, Entries] | None) -> None:
        """Entries read from the store or its file, as of a write mark read before: they hold whatever this
        store's earlier puts wrote, or their ``through`` says they may lack it."""
        with self._entries_lock:
            self._entries, self._entries_new = kept, []

    def follow_writes(self, listener: Callable[[int, list[str], list[dict]], None]) -> Callable[[], None]:
        """Call ``listener(seq, ids, metadatas)`` after each put of image records this store makes (``seq``:
        the write's number; the metadata as given, without it, each carrying its vector as ``VECTOR`` and its
        captions' as ``CAPTION_VECTORS``), in the writing thread. Returns what stops it.
        Only this store's puts are told: a listener that keeps a copy checks that the numbers follow on, and
        trusts them only where this store is the ``sole_writer``."""
        self._followers.append(listener)
        return lambda: self._followers.remove(listener) if listener in self._followers else None

    def _written(self, seq: int, ids: list[str], metas: list[dict], vectors: np.ndarray,
                 captions: list[list[tuple[str, str]]], caption_vectors: np.ndarray) -> None:
        """After this store's put numbered ``seq``: its entries take the records when they lack no earlier
        write (their ``through`` is ``seq``), so an index run's end reads nothing back; then the listeners."""
        with self._entries_lock:
            kept = self._entries
            if kept is not None and kept[1] == seq and self.sole_writer:
                try:
                    self._entries_new.extend([(i, entry_of(i, m)) for i, m in zip(ids, metas)])
                    self._entries = (kept[0], seq + 1, kept[2])
                except (KeyError, TypeError, ValueError):  # not what an index run writes: read back as it was
                    pass
        followers = list(self._followers)
        if followers:
            rows, caption_rows = np.asarray(vectors, dtype=np.float32), np.asarray(caption_vectors, dtype=np.float32)
            ends = np.cumsum([len(items) for items in captions]).tolist()
            metas = [{**meta, VECTOR: row, CAPTION_VECTORS: caption_rows[end - len(items):end]}
                     for meta, row, items, end in zip(metas, rows, captions, ends)]
        for listener in followers:
            listener(seq, ids, metas)

    def _changes(self, seq: int, vectors: Collection[str] = ()) -> tuple[Iterator[tuple[str, dict]], set[str]]:
        return self.written_since(seq, vectors), self.removed_since(seq)

    def _removed_collection(self, create: bool) -> Any:
        if self._removed is None:
            self._removed = open_collection(self.client, self.name("removed"), create, MARKER)
        return self._removed

    @_guarded("read")
    def image_ids(self) -> list[str]:
        """The id of every image (no metadata: a fraction of the cost of ``pages``)."""
        if self._get_images() is None:
            return []
        return [i for page in pages(self._images, include=()) for i in page["ids"]]

    def identity(self) -> str:
        """What tells this index's image collection from another one at the same place (one dropped and
        made again): Chroma's id of it ("" when there is none yet)."""
        images = self._get_images()
        return str(images.id) if images is not None else ""

    def _modify_metadata(self, changes: dict[str, Any]) -> None:
        self._images = self._fresh_images()  # fresh: other workers write too
        self._images.modify(metadata={**(self._images.metadata or {}), **changes})

    def _get_images(self) -> Any:
        if self._images is None:
            try:
                self._images = self.client.get_collection(self.name("images"), embedding_function=None)
            except Exception:  # chromadb raises NotFoundError / ValueError depending on version
                return None
        return self._images

    def _open_existing(self) -> None:
        if self._captions is None:
            for attempt in range(3):  # get_or_create can lose a race with another worker creating it
                try:
                    self._captions = self.client.get_or_create_collection(
                        self.name("captions"), configuration={"hnsw": HNSW_CAPTIONS}, embedding_function=None)
                    return
                except StoreError:
                    raise
                except Exception:
                    if attempt == 2:
                        raise

    @property
    def ready(self) -> bool:
        """Whether the collections exist and are open."""
        return self._images is not None and self._captions is not None

    # -- bookkeeping ---------------------------------------------------------------------------------

    def roots(self) -> list[str]:
        """Folders (and files) that were indexed into this database."""
        images = self._get_images()
        return json.loads((images.metadata or {}).get("roots", "[]")) if images is not None else []

    @_guarded("write")
    def add_roots(self, roots: Sequence[str]) -> None:
        """Remember indexed folders and the time of this run in the collection metadata."""
        # fresh: other workers add roots too
        self._images = self.client.get_collection(self.name("images"), embedding_function=None)
        known = self.roots()
        fresh = {r for r in roots if not within_any(r, known)}  # a folder inside a recorded root adds nothing
        self._modify_metadata({"roots": json.dumps(sorted(set(known) | fresh)), "updated_at": int(time.time())})

    @_guarded("write")
    def touch(self) -> None:
        """Record that the index changed outside an index run (files moved): ``updated_at`` moves on, at least
        by one second, so caches keyed by it (the keyword index, ``keywords.npz``) are built again."""
        self._modify_metadata({"updated_at": max(int(time.time()), self.updated_at() + 1)})

    def updated_at(self) -> int:
        """Unix time of the last change (an index run, moved files), 0 if never."""
        images = self._get_images()
        return int((images.metadata or {}).get("updated_at", 0)) if images is not None else 0

    @_guarded("read")
    def count(self) -> int:
        """Number of indexed images."""
        images = self._get_images()
        return images.count() if images is not None else 0

    @_guarded("read")
    def video_count(self) -> int:
        """How many of the images are videos (the videos with sampled frames, or recorded as videos)."""
        images = self._get_images()
        if images is None:
            return 0
        return len(images.get(where={"kind": "video"}, include=[])["ids"])

    def caption_count(self) -> int:
        """Number of stored captions."""
        if self._captions is None and self._get_images() is not None:
            self._open_existing()
        return self._captions.count() if self._captions is not None else 0

    @_guarded("read")
    def entries(self) -> Mapping[str, Entry]:
        """Every indexed path with its change markers (compared as strings/ints, never floats).

        Kept by this store, and in its entries file between processes (``entries_file``), and brought up to
        date by the numbered writes: a process reads the file and what changed since, and the runs of one
        process (a watcher's, the page's) only what changed since the last one. Only when neither is there,
        or the count disagrees (records written unnumbered, by an older mmsearch), is every record read.
        """
        if self._get_images() is None:
            return Entries().by_path()
        mark, count, identity = self.write_mark(), self.count(), self.identity()
        kept, by_id = self._kept(), None
        if kept is None or kept[0] != identity:
            kept = self._kept_entries(identity)
        if kept is not None:
            by_id = _applied(kept[2], *self._changes(kept[1]))
        full = by_id is None or len(by_id) != count
        if full:  # the first, or written unnumbered (an older mmsearch)
            by_id = Entries.of(entry_of(i, m) for i, m in self.all_metadata())
        self._keep((identity, mark.through, by_id))
        if full:
            self._save_entries()
        return by_id.by_path()

    def _entries_known(self, identity: str) -> bool:
        """Whether the entries need no read of every record: this store keeps them, or its entries file is
        there to read them from. (Kept beside a keyword build from every record, a million entries held
        0.7 GB more, peak and after.)"""
        kept = self._kept()
        if kept is not None and kept[0] == identity:
            return True
        return self.entries_file is not None and self.entries_file(self.generation).exists()

    def _kept_entries(self, identity: str) -> tuple[str, int, Entries] | None:
        """The entries in this generation's entries file, if it was written for this index."""
        if self.entries_file is None:
            return None
        found = load_entries(self.entries_file(self.generation), (identity, self.schema_version()))
        return None if found is None else (identity, *found)

    def keep_entries(self) -> None:
        """Bring the entries up to date and write them to the entries file (an index run does at its end),
        so that the next process reads that file and what changed since, not every record."""
        if self.entries_file is not None and self.entries():
            self._save_entries()
            trim()  # the holes a catch-up and the packing leave: 0.35 GB at a million photos (``mmsearch.heap``)

    def _save_entries(self) -> None:
        """Write the entries to their file, and keep them packed as written: those applied since they were
        read (a catch-up's, this store's puts) stop costing an object each."""
        kept = self._kept()
        if kept is None or self.entries_file is None:
            return
        packed = kept[2].packed()
        save_entries(self.entries_file(self.generation), (kept[0], self.schema_version()), kept[1], packed)
        with self._entries_lock:
            if self._entries is not None and self._entries[2] is kept[2]:  # nothing applied meanwhile but puts
                self._entries = (*self._entries[:2], packed)

    def pages(self, vectors: Collection[str] = ()) -> Iterator[tuple[list[str], list[dict]]]:
        """(ids, metadatas) of every image, page by page; ``vectors`` as ``written_since``."""
        if self._get_images() is not None:
            for ids, metas in self._pages(self._images, "image" in vectors):
                yield ids, [m for _, m in self._with_captions(zip(ids, metas))] if "caption" in vectors else metas

    def _with_captions(self, records: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        """These (id, metadata) records, each metadata also carrying its caption records' vectors
        (``CAPTION_VECTORS``), read ``PAGE`` at a time by id."""
        pairs = iter(records)
        while page := list(islice(pairs, PAGE)):
            wanted = [caption_id(i, n) for i, meta in page for n in range(len(meta.get("captions") or ()))]
            if wanted and self._captions is None:
                self._open_existing()
            found = vectors_by_id(self._captions, wanted) if wanted else {}
            for i, meta in page:
                ids = [caption_id(i, n) for n in range(len(meta.get("captions") or ()))]
                meta[CAPTION_VECTORS] = np.stack([found[c] for c in ids]) if all(c in found for c in ids) and ids \
                    else (None if ids else np.zeros((0, 0), np.float32))
                yield i, meta

    @staticmethod
    def _pages(collection: Any, vectors: bool = False) -> Iterator[tuple[list[str], list[dict]]]:
        for page in pages(collection, include=("metadatas", "embeddings") if vectors else ("metadatas",)):
            yield page["ids"], with_vectors(page) if vectors else page["metadatas"]

    # -- writes --------------------------------------------------------------------------------------

    @_guarded("write")
    def put(self, ids: list[str], vectors: np.ndarray, metas: list[dict], captions: list[list[tuple[str, str]]],
            caption_vectors: np.ndarray, ocr: Sequence[OcrRecord | None] | None = None,
            frames: Sequence[FrameSet | None] | None = None) -> None:
        """Store images, their captions, the text read in them (``ocr``, one entry per image, None where
        there was none) and the sampled frames of videos (``frames``, likewise); an image's old captions,
        text and frames are replaced.

        Captions, text and frames are written before the image record, so an image record only exists once
        all of them do: a run killed in between leaves the file looking new, and it is redone (frame ids
        are ``<image_id>@<n>``, so a redone video replaces its frames and never doubles them).

        Caption text is stored in three places; the image record's ``captions`` metadata is the source:
        what hits show, the keyword index reads and change detection (``Entry.captions``) compares. The
        caption records (``<image_id>:<n>``, in that order) hold each caption's vector, with the text and
        its ``source`` as documents for ``caption_sources`` (reindex re-embeds from them, export copies
        them). ``manifest_captions`` names which of ``captions`` a manifest gave (kept until a manifest says
        otherwise). All three are written here, in one call; only a schema step may drop a copy.
        """
        self.delete_captions(ids)
        self._delete_ocr(ids)
        cap_ids, cap_metas, cap_docs = [], [], []
        for image_id, meta, items in zip(ids, metas, captions):
            for n, (text, source) in enumerate(items):
                cap_ids.append(caption_id(image_id, n))
                cap_docs.append(text)
                cap_metas.append({"image_id": image_id, "source": source, **_filter_fields(meta)})
        if cap_ids:
            self._captions.upsert(ids=cap_ids, embeddings=caption_vectors, metadatas=cap_metas, documents=cap_docs)
        if ocr is not None:
            self._put_ocr(ids, metas, ocr)
        self._put_frames(ids, metas, frames)
        with self._numbered() as seq:
            self._images.upsert(ids=ids, embeddings=vectors, metadatas=self._replacing(ids, metas, seq),
                                documents=[m["path"] for m in metas])
        self._written(seq, ids, metas, vectors, captions, caption_vectors)

    def _replacing(self, ids: list[str], metas: list[dict], seq: int) -> list[dict]:
        """``metas`` numbered ``seq``, each with the fields its image's stored record has and it lacks set to None.
        Chroma's upsert merges metadata into a record it replaces: a photo re-indexed without the captions,
        camera or position it had kept the old ones (hits, keyword search and filters saw them, while its
        caption records were gone); None deletes a field."""
        stale = self.image_metadata(ids)
        return [{**dict.fromkeys(stale.get(i, {}).keys() - m.keys()), **m, SEQ: seq} for i, m in zip(ids, metas)]

    @_guarded("write")
    def set_ocr(self, ids: list[str], updates: list[dict], ocr: Sequence[OcrRecord | None]) -> None:
        """Text read in already indexed images (OCR turned on for an existing index): their vectors and
        captions stay. The text goes in first, the image's metadata (``updates``: ``ocr_sig`` and the text
        fields) last, so a run killed in between reads the photo again."""
        metas = self.image_metadata(ids)
        kept = [n for n, i in enumerate(ids) if i in metas]
        ids, updates, ocr = [ids[n] for n in kept], [updates[n] for n in kept], [ocr[n] for n in kept]
        self._delete_ocr(ids)
        self._put_ocr(ids, [{**metas[i], **u} for i, u in zip(ids, updates)], ocr)
        self.set_metadata(dict(zip(ids, updates)))

    def _put_ocr(self, ids: Sequence[str], metas: Sequence[dict], ocr: Sequence[OcrRecord | None]) -> None:
        found = [(i, m, record) for i, m, record in zip(ids, metas, ocr) if record is not None]
        if found:
            self.ocr_collection(create=True).upsert(
                ids=[i for i, _, _ in found], embeddings=np.stack([r[1] for _, _, r in found]),
                documents=[r[0] for _, _, r in found], metadatas=[_filter_fields(m) for _, m, _ in found])

    def _put_frames(self, ids: Sequence[str], metas: Sequence[dict], frames: Sequence[FrameSet | None] | None) -> None:
        """Replace the frames of these images (none for photos): ``<image_id>@<n>`` with its time."""
        self._delete_frames(ids)
        found = [(i, m, f) for i, m, f in zip(ids, metas, frames or []) if f is not None and len(f[0])]
        if not found:
            return
        frame_ids = [frame_id(i, n) for i, _, (times, _) in found for n in range(len(times))]
        frame_metas = [{"image_id": i, "time": float(t), **_filter_fields(m)} for i, m, (times, _) in found for t in times]
        vectors = np.concatenate([np.asarray(v, dtype=np.float32) for _, _, (_, v) in found])
        collection = self.frames_collection(create=True)
        for start in range(0, len(frame_ids), PAGE):
            end = start + PAGE
            collection.upsert(ids=frame_ids[start:end], embeddings=vectors[start:end], metadatas=frame_metas[start:end])

    def _delete_frames(self, ids: Sequence[str]) -> None:
        collection = self.frames_collection(create=False)
        if collection is not None and ids:
            collection.delete(where={"image_id": {"$in": list(ids)}})

    def frames_collection(self, create: bool = False) -> Any:
        """The collection of videos' sampled frames, or None when no video was ever indexed and ``create``
        is False (``Appearing``: every search and every stored batch asks)."""
        return self._frames.open(self.client, self.name("frames"), create)

    @_guarded("search")
    def query_frames(self, vector: np.ndarray, n: int, where: dict | None,
                     among: Sequence[str] | None = None) -> dict[str, float]:
        """Videos whose frames are nearest to ``vector``: image id -> cosine of its best frame (``frame_sets``
        has the frames' times); ``among`` as ``query_images``, frame ids."""
        collection = self.frames_collection()
        if collection is None:
            return {}
        result = self._query(collection, vector, max(n, 1), where, among)
        best: dict[str, float] = {}
        for frame, distance in zip(result["ids"][0], result["distances"][0]):
            owner = split_frame_id(frame)[0]
            best[owner] = max(best.get(owner, -1.0), 1.0 - float(distance))
        return best

    @_guarded("read")
    def frame_sets(self, ids: Sequence[str]) -> dict[str, FrameSet]:
        """The frames of those images that are videos: times in order, and their vectors."""
        collection = self.frames_collection()
        if collection is None or not ids:
            return {}
        got = collection.get(where={"image_id": {"$in": list(ids)}}, include=["embeddings", "metadatas"])
        rows: dict[str, list[tuple[float, np.ndarray]]] = {}
        for meta, vector in zip(got["metadatas"], got["embeddings"]):
            rows.setdefault(str(meta["image_id"]), []).append((float(meta.get("time", 0.0)), np.asarray(vector, np.float32)))
        return {i: ([t for t, _ in sorted(r, key=lambda x: x[0])], np.stack([v for _, v in sorted(r, key=lambda x: x[0])]))
                for i, r in rows.items()}

    def _delete_ocr(self, ids: Sequence[str]) -> None:
        collection = self.ocr_collection(create=False)
        if collection is not None and ids:
            collection.delete(ids=list(ids))

    def ocr_collection(self, create: bool = False) -> Any:
        """The collection of the text read in photos (one record per photo with text), or None when no
        text was ever read and ``create`` is False."""
        if self._ocr is None:
            self._ocr = open_collection(self.client, self.name("ocr"), create, HNSW_CAPTIONS)
        return self._ocr

    def _drop(self, name: str) -> None:
        try:
            self.client.delete_collection(name)
        except StoreError:
            raise
        except Exception:  # not there
            pass

    def ocr_setting(self) -> str:
        """The OCR engine the index reads photos with (``mmsearch index --ocr``), or "" when off."""
        images = self._get_images()
        return str((images.metadata or {}).get("ocr", "")) if images is not None else ""

    def set_ocr_setting(self, engine: str) -> None:
        """Record the OCR engine later runs use ("" turns OCR off; text already read stays searchable)."""
        self._modify_metadata({"ocr": engine})

    @_guarded("search")
    def query_ocr(self, vector: np.ndarray, n: int, where: dict | None,
                  among: Sequence[str] | None = None) -> dict[str, float]:
        """Photos whose text is nearest to ``vector`` (caption space): image id -> cosine similarity; ``among``
        as ``query_images``."""
        collection = self.ocr_collection()
        if collection is None:
            return {}
        result = self._query(collection, vector, n, where, among)
        return dict(zip(result["ids"][0], (1.0 - float(d) for d in result["distances"][0])))

    @_guarded("read")
    def ocr_records(self, ids: Sequence[str]) -> dict[str, OcrRecord]:
        """Text and its vector of those images that have text."""
        collection = self.ocr_collection()
        if collection is None or not ids:
            return {}
        out: dict[str, OcrRecord] = {}
        ids = list(ids)
        for start in range(0, len(ids), PAGE):
            got = collection.get(ids=ids[start:start + PAGE], include=["embeddings", "documents"])
            out.update({i: (d, np.asarray(v, dtype=np.float32))
                        for i, d, v in zip(got["ids"], got["documents"], got["embeddings"])})
        return out

    @_guarded("write")
    def fit_search(self) -> int:
        """Give the images' vector index the ``ef_search`` its size needs (``images_ef``), and return it.
        Chroma reads the value when a process loads the index: the next process searches with it."""
        images = self._get_images()
        if images is None:
            return HNSW["ef_search"]
        wanted = images_ef(images.count())
        current = self.client.get_collection(self.name("images"), embedding_function=None)  # another writer's change
        set_search_settings(current, {"ef_search": wanted})
        return wanted

    @_guarded("write")
    def move(self, old_id: str, new_id: str, updates: dict) -> None:
        """Give an indexed image a new id (a renamed file) and updated metadata, keeping its vectors,
        captions and the text read in it."""
        image = self._images.get(ids=[old_id], include=["embeddings", "metadatas"])
        meta = {**image["metadatas"][0], **updates}
        captions = self._captions.get(where={"image_id": old_id}, include=["embeddings", "metadatas", "documents"])
        pairs = [(doc, m.get("source", "")) for doc, m in zip(captions["documents"], captions["metadatas"])]
        vector = np.asarray(image["embeddings"], dtype=np.float32)
        caption_vectors = np.asarray(captions["embeddings"], dtype=np.float32).reshape(len(pairs), vector.shape[1])
        self.put([new_id], vector, [meta], [pairs], caption_vectors, [self.ocr_records([old_id]).get(old_id)],
                 [self.frame_sets([old_id]).get(old_id)])
        self.delete_images([old_id])

    @_guarded("write")
    def delete_images(self, ids: list[str]) -> None:
        """Remove images and their captions."""
        if not ids:
            return
        with self._numbered() as seq:
            for start in range(0, len(ids), PAGE):
                chunk = ids[start:start + PAGE]
                self._images.delete(ids=chunk)
                self.delete_captions(chunk)
                self._delete_ocr(chunk)
                self._delete_frames(chunk)
                self._removed_collection(create=True).upsert(
                    ids=chunk, embeddings=np.ones((len(chunk), 1), np.float32), metadatas=[{SEQ: seq}] * len(chunk))

    def delete_captions(self, image_ids: list[str]) -> None:
        """Remove all captions of these images."""
        if image_ids:
            self._captions.delete(where={"image_id": {"$in": list(image_ids)}})

    # -- whole-collection transfer (export / import) ------------------------------------------------

    def records(self, which: str) -> Iterator[tuple[list[str], np.ndarray, list[dict], list[str]]]:
        """All records of ``"images"``, ``"captions"``, ``"ocr"``, ``"frames"`` or ``"albums"`` in pages: (ids,
        float32 vectors, metadatas, documents); read by id, as ``pages`` reads (an offset costs itself)."""
        collection = self._collection(which)
        if collection is None:
            return
        for page in pages(collection, include=("embeddings", "metadatas", "documents")):
            yield (page["ids"], np.asarray(page["embeddings"], dtype=np.float32), page["metadatas"], page["documents"])

    @_guarded("write")
    def differing(self, which: str, ids: list[str], vectors: np.ndarray, metas: list[dict]) -> set[str]:
        """The ids among these records that the collection lacks or holds with other metadata or vectors."""
        got = self._collection(which, create=True).get(ids=ids, include=["metadatas", "embeddings"])
        stored = {i: ({k: x for k, x in m.items() if k != SEQ}, np.asarray(v, dtype=np.float32))
                  for i, m, v in zip(got["ids"], got["metadatas"], got["embeddings"])}
        metas = [{k: x for k, x in m.items() if k != SEQ} for m in metas]  # this index's own write numbers
        # Chroma hands vectors back within ~1e-8 of what it was given: compare with a tolerance.
        return {i for i, v, m in zip(ids, vectors, metas)
                if i not in stored or stored[i][0] != m or not np.allclose(stored[i][1], v, rtol=0, atol=1e-6)}

    @_guarded("write")
    def write_records(self, which: str, ids: list[str], vectors: np.ndarray, metas: list[dict], docs: list[str]) -> None:
        """Upsert records as they are (vectors, metadata and documents of an export); image records get this
        index's write number (``SEQ``) in place of the one they were exported with."""
        if which != "images":
            return self._write_pages(which, ids, vectors, metas, docs)
        self._collection(which, create=True)
        with self._numbered() as seq:
            self._write_pages(which, ids, vectors, self._replacing(ids, metas, seq), docs)

    def _write_pages(self, which: str, ids: list[str], vectors: np.ndarray, metas: list[dict], docs: list[str]) -> None:
        for start in range(0, len(ids), PAGE):
            end = start + PAGE
            documents = docs[start:end] if any(d is not None for d in docs[start:end]) else None  # frames have none
            self._collection(which, create=True).upsert(ids=ids[start:end], embeddings=vectors[start:end],
                                                        metadatas=metas[start:end], documents=documents)

    def _collection(self, which: str, create: bool = False) -> Any:
        """A collection by its export name; ``create`` makes the OCR or frames collection if the index has
        none yet."""
        if which not in ("images", "captions", "ocr", "frames", "albums"):
            raise ValueError(f"unknown collection {which!r}")
        if self._get_images() is not None:
            self._open_existing()
        if which == "ocr":
            return self.ocr_collection(create=create and self._get_images() is not None)
        if which == "frames":
            return self.frames_collection(create=create and self._get_images() is not None)
        if which == "albums":
            return AlbumStore(self)._get(create=create and self._get_images() is not None)
        return self._images if which == "images" else self._captions

    # -- reads ---------------------------------------------------------------------------------------

    def warm_up(self) -> threading.Thread:
        """Load the images' and captions' vector indexes in a thread of their own, and return it: a new
        process's first query waits for Chroma to read them (seconds at a million photos), and Chroma reads
        them without holding the GIL, so the keyword index and the text model load meanwhile. The thread is
        not a daemon: a process ends after it, never inside Chroma."""
        names = [self.name("images"), self.name("captions")]
        self._warming.update(names)
        thread = threading.Thread(target=self._load_indexes, args=(names,), name="mmsearch-warm-up")
        thread.start()
        return thread

    def warming(self, kind: str) -> bool:
        """Whether ``warm_up`` is still loading the vector index of ``kind`` ("images", "captions"): any read
        of that collection now waits for the load (about 1 s for 300,000 captions, 3-4 s for a million images), and
        so does a first read of any other collection (Chroma loads one at a time); a collection loaded already is
        read at once."""
        return self.name(kind) in self._warming

    def _load_indexes(self, names: list[str]) -> None:
        for name in names:
            try:
                collection = self.client.get_collection(name, embedding_function=None)
                one = collection.get(limit=1, include=["embeddings"])["embeddings"]
                if one is not None and len(one):
                    collection.query(query_embeddings=[np.asarray(one[0], np.float32)], n_results=1, include=[])
            except Exception as exc:  # only a head start: the first search reads the index itself
                logger.debug("the vector index %s was not loaded ahead: %s", name, exc)
            finally:
                self._warming.discard(name)

    @_guarded("search")
    def query_images(self, vector: np.ndarray, n: int, where: dict | None,
                     among: Sequence[str] | None = None) -> dict[str, float]:
        """Nearest images to ``vector``: image id -> cosine similarity. ``among``: the ids ``where`` keeps,
        where the caller knows them (``mmsearch.search.selection``); Chroma lists them otherwise."""
        result = self._query(self._images, vector, n, where, among)
        return dict(zip(result["ids"][0], (1.0 - float(d) for d in result["distances"][0])))

    @_guarded("search")
    def query_captions(self, vector: np.ndarray, n: int, where: dict | None,
                       among: Sequence[str] | None = None) -> list[CaptionMatch]:
        """Nearest captions to ``vector``, best first (ids and distances only: the fastest query); ``among``
        as ``query_images``, caption ids."""
        result = self._query(self._captions, vector, n, where, among)
        return [CaptionMatch(*split_caption_id(i), 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0])]

    @staticmethod
    def _query(collection: Any, vector: np.ndarray, n: int, where: dict | None,
               among: Sequence[str] | None = None) -> dict:
        """The ``n`` records nearest ``vector`` (ids and cosine distances, Chroma's shape) that ``where`` keeps:
        those ``among`` where given (the ids ``where`` keeps, evaluated by the caller), else listed first.

        Chroma's graph search under a filter that keeps a small share of a large collection walks most of
        the graph before ``n`` pass (a folder of 25 photos among a million: 8.9 s), so those are scored
        exactly, their vectors read by id (3 ms). The others are searched among the listed ids, which spares
        Chroma a second pass of the filter (``benchmarks/filter_bench.py``).
        """
        if n <= 0:
            return {"ids": [[]], "distances": [[]]}
        vector = np.asarray(vector, dtype=np.float32)
        if where and among is None:
            among = collection.get(where=where, include=[])["ids"]
        if among is not None:
            if len(among) <= n or (len(among) <= EXACT_MAX and len(among) * EXACT_SHARE <= collection.count()):
                return _nearest(collection, among, vector, n)
            try:
                return collection.query(query_embeddings=[vector], ids=list(among), n_results=n, include=["distances"])
            except Exception as exc:  # a listed record was removed meanwhile (Chroma: "Error finding id")
                logger.debug("searching the listed records failed (%s); searching under the filter", exc)
        # n may exceed the collection's size: Chroma then returns all records (no count() round trip).
        return collection.query(query_embeddings=[vector], n_results=n, where=where or None, include=["distances"])

    @_guarded("read")
    def find(self, where: dict | None) -> list[tuple[str, dict]]:
        """(id, metadata) of every image a ``where`` filter keeps (all of them for None), read as ``pages``
        reads: the ids listed first, then read by id (offset pages under a filter re-run it for every page:
        a year's 100,000 photos among a million took 406 s by offset, 70 s listed first, both with tests
        running beside them)."""
        return list(records(self._images, where or None))

    @_guarded("read")
    def image_records(self, ids: Sequence[str], where: dict | None = None) -> dict[str, tuple[dict, np.ndarray]]:
        """Stored metadata and vector of each image id that exists (and matches ``where``)."""
        if not ids:
            return {}
        got = self._images.get(ids=list(ids), where=where or None, include=["metadatas", "embeddings"])
        return {i: (m, np.asarray(v, dtype=np.float32)) for i, m, v in zip(got["ids"], got["metadatas"], got["embeddings"])}

    @_guarded("read")
    def caption_vectors_by_id(self, caption_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored caption vectors by caption id (``<image_id>:<n>``)."""
        if not caption_ids:
            return {}
        got = self._captions.get(ids=list(caption_ids), include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"])}

    def caption_vectors_of(self, image_ids: Sequence[str], probe: int = 3) -> dict[str, np.ndarray]:
        """All caption vectors of these images, by caption id, without reading their metadata.

        An image's captions are numbered 0..n-1, so the ids are asked for in rounds (``probe`` per image,
        doubling) until an image's last asked-for index is missing: one round for the usual 0-2 captions.
        """
        found: dict[str, np.ndarray] = {}
        start, pending = 0, list(image_ids)
        while pending:
            got = self.caption_vectors_by_id([caption_id(i, n) for i in pending for n in range(start, start + probe)])
            found.update(got)
            pending = [i for i in pending if caption_id(i, start + probe - 1) in got]
            start, probe = start + probe, probe * 2
        return found

    @_guarded("read")
    def image_vectors(self, ids: Sequence[str], where: dict | None = None) -> dict[str, np.ndarray]:
        """Stored vectors of the image ids that exist (and match ``where``), asked for ``PAGE`` ids at a time."""
        return vectors_by_id(self._images, ids, where)

    @_guarded("read")
    def existing(self, ids: Sequence[str]) -> set[str]:
        """The ids among these that have an image record."""
        if not ids or self._get_images() is None:
            return set()
        return set(self._images.get(ids=list(ids), include=[])["ids"])

    @_guarded("read")
    def image_metadata(self, ids: Sequence[str], vectors: Collection[str] = ()) -> dict[str, dict]:
        """Stored metadata by image id; ``vectors`` as ``written_since``."""
        ids, out, image = list(ids), {}, "image" in vectors
        for start in range(0, len(ids), PAGE):
            got = self._images.get(ids=ids[start:start + PAGE], include=["metadatas", "embeddings"] if image
                                   else ["metadatas"])
            pairs = zip(got["ids"], with_vectors(got) if image else got["metadatas"])
            out.update(self._with_captions(pairs) if "caption" in vectors else pairs)
        return out

    def all_metadata(self, vectors: Collection[str] = ()) -> Iterator[tuple[str, dict]]:
        """(id, metadata) of every image, page by page; ``vectors`` as ``written_since``.
        A read to the end also brings the store's entries up to date, unless they are kept or in their file
        already (``_entries_known``), so that a keyword index built from every record (its file gone) is the
        only read of every record."""
        if self._get_images() is None:
            return
        mark, identity = self.write_mark(), self.identity()
        read: list[Entry] | None = None if self._entries_known(identity) else []
        for ids, metas in self.pages(vectors):
            for pair in zip(ids, metas):
                if read is not None:
                    try:
                        read.append(entry_of(*pair))
                    except (KeyError, TypeError, ValueError):  # a record no index run wrote: not an entry
                        read = None
                yield pair
        if read is not None:
            self._keep((identity, mark.through, Entries.of(read)))


@translated(writes=("add", "delete"), searches=("near",))
class FeedbackStore:
    """Lasting marks (``mmsearch.search.feedback``) in their own collection of the index: embedding = the query
    vector, so the marks of similar past queries are a nearest-neighbour query away."""

    def __init__(self, store: Store):
        self.store, self.path = store, store.path
        self._collection = Appearing({"space": "cosine"})

    def _get(self, create: bool) -> Any:
        """The marks' collection, or None while no mark was ever made (``Appearing``: every text query asks)."""
        return self._collection.open(self.store.client, self.store.name("feedback"), create)

    @_guarded("write feedback to")
    def add(self, mark_id: str, vector: np.ndarray, meta: dict) -> None:
        """Store (or replace) one mark."""
        self._get(create=True).upsert(ids=[mark_id], embeddings=[np.asarray(vector, dtype=np.float32)], metadatas=[meta])

    def near(self, vector: np.ndarray, n: int) -> list[tuple[dict, float]]:
        """Marks of the ``n`` nearest past queries: (metadata, cosine)."""
        collection = self._get(create=False)
        if collection is None:
            return []
        got = collection.query(query_embeddings=[np.asarray(vector, dtype=np.float32)], n_results=n,
                               include=["metadatas", "distances"])
        return [(m, 1.0 - float(d)) for m, d in zip(got["metadatas"][0], got["distances"][0])]

    @_guarded("read feedback from")
    def has(self, mark_id: str) -> bool:
        """Whether a mark with this id exists."""
        collection = self._get(create=False)
        return collection is not None and bool(collection.get(ids=[mark_id], include=[])["ids"])

    @_guarded("read feedback from")
    def all(self) -> list[dict]:
        """Every mark's metadata."""
        collection = self._get(create=False)
        return [m for _, metas in (Store._pages(collection) if collection is not None else []) for m in metas]

    @_guarded("read feedback from")
    def count(self, where: dict) -> int:
        """How many marks match ``where``."""
        collection = self._get(create=False)
        return 0 if collection is None else len(collection.get(where=where, include=[])["ids"])

    @_guarded("remove feedback from")
    def delete(self, where: dict | None) -> int:
        """Remove the marks matching ``where`` (all without it); returns how many there were."""
        collection = self._get(create=False)
        if collection is None:
            return 0
        ids = collection.get(where=where or None, include=[])["ids"]
        for start in range(0, len(ids), PAGE):
            collection.delete(ids=ids[start:start + PAGE])
        return len(ids)


class AlbumStore:
    """Smart albums (``mmsearch.albums``) in their own collection of the index, so a Chroma server shares them:
    one record per album, embedding = its query's text vector (re-embedded by ``reindex``), metadata = the
    album (name, query, filters, floor) and its members as last computed."""

    def __init__(self, store: Store):
        self.store, self.path = store, store.path
        self._collection: Any = None

    def _get(self, create: bool) -> Any:
        if self._collection is None:
            self._collection = open_collection(self.store.client, self.store.name("albums"), create, {"space": "cosine"})
        return self._collection

    @_guarded("write albums to")
    def put(self, album_id: str, vector: np.ndarray, meta: dict) -> None:
        """Store (or replace) one album."""
        self._get(create=True).upsert(ids=[album_id], embeddings=[np.asarray(vector, dtype=np.float32)], metadatas=[meta])

    @_guarded("write albums to")
    def update(self, album_id: str, changes: dict) -> None:
        """Change fields of one album (its members, what was seen)."""
        self._get(create=True).update(ids=[album_id], metadatas=[changes])

    @_guarded("read albums from")
    def all(self) -> dict[str, dict]:
        """Album id -> its metadata."""
        collection = self._get(create=False)
        if collection is None:
            return {}
        return {i: m for ids, metas in Store._pages(collection) for i, m in zip(ids, metas)}

    @_guarded("read albums from")
    def vectors(self) -> dict[str, np.ndarray]:
        """Album id -> its query vector."""
        collection = self._get(create=False)
        if collection is None:
            return {}
        got = collection.get(include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"])}

    @_guarded("remove albums from")
    def delete(self, album_id: str) -> bool:
        """Remove one album; whether it existed."""
        collection = self._get(create=False)
        if collection is None or not collection.get(ids=[album_id], include=[])["ids"]:
            return False
        collection.delete(ids=[album_id])
        return True


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """An exception and the ones it was raised from or during (chromadb re-raises httpx errors bare)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _transient(exc: BaseException) -> bool:
    """Whether a failed server request is worth retrying: the server is down, restarting or overloaded."""
    import httpx

    for err in _chain(exc):
        if isinstance(err, httpx.TransportError):
            return True
        if isinstance(err, httpx.HTTPStatusError):
            return err.response.status_code in (502, 503, 504)
        if isinstance(err, ValueError) and "Could not connect to a Chroma server" in str(err):
            return True
    return False


def _http_failure(exc: BaseException) -> str | None:
    """'HTTP 401 Unauthorized' when a request failed with an HTTP error that is not Chroma's own error."""
    import httpx

    for err in _chain(exc):
        if isinstance(err, httpx.HTTPStatusError):
            hint = " (check MMSEARCH_CHROMA_TOKEN / --chroma-header)" if err.response.status_code in (401, 403) else ""
            return f"HTTP {err.response.status_code} {err.response.reason_phrase}{hint}"
    return None


def _is_collection(value: Any) -> bool:
    from chromadb.api.models.Collection import Collection

    return isinstance(value, Collection)


def _filter_fields(meta: dict) -> dict:
    """The image metadata copied onto each caption, text and frame record so that filters work on every
    collection."""
    return {k: meta[k] for k in FILTER_FIELDS if k in meta}
