"""IndexSession: one generation of an index with the models that read it, and the caches built from it.

A ``SearchEngine`` holds one session. A switch to new models (``mmsearch reindex``, in any process) is
followed by building a new session beside the old one and replacing the engine's reference to it in
one step, so a search sees either the old store, models and caches, or the new ones, never a mix.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import MODEL_FIELDS, Config
from .encoders import Encoders, TextEncoder, load_caption_encoder, load_encoders, load_text_encoder, model_signature
from .errors import IndexMismatchError
from .heap import trim
from .ids import NO_IMAGE_MODEL, has_image_vectors
from .lock import lock_for_writing

if TYPE_CHECKING:
    from .media.ocr import OcrEngine
    from .search.feedback import Marks
    from .search.keywords import KeywordIndex
    from .search.ocr_matcher import OcrMatcher
    from .search.relevance import Background
    from .store.client import Store, WriteMark

KEYWORD_SAVE = 30.0  # seconds between writes of keywords.npz while the index keeps changing
KEYWORD_CHECK = 2.0  # seconds during which the keyword index is used without asking the store if it changed
# Seconds between counts of the images. Only the count shows images written unnumbered (by an older mmsearch),
# and at a million images Chroma counts in 50-60 ms holding the GIL: every 2 s it was the p99 of a search.
KEYWORD_RECOUNT = 60.0
QUERY_TEXTS = 256  # query texts whose vectors a session keeps (``IndexSession.query_vector``)


class IndexSession:
    """The store of one generation, its models (loaded on first use) and its keyword, OCR and marks caches.

    Args:
        config: the settings; models the index records replace those left out (``adopt_models``).
        encoders: ready encoders to use instead of loading the configured models.
    """

    def __init__(self, config: Config, encoders: Encoders | None = None):
        self.config = config
        self.encoders_from_config = encoders is None  # models the index may record as its own
        self._encoders = encoders
        self._adopted = False  # whether the index was asked for its models
        self._text: TextEncoder | None = None  # loaded alone for text queries until the image model is needed
        self._caption: TextEncoder | None = None  # likewise the caption model
        self._store: Store | None = None
        self._keywords: KeywordIndex | None = None
        self._keywords_mark: WriteMark | None = None  # where the store's writes stood when it was brought up to date
        self._keywords_saved: tuple[int, float] = (-1, 0.0)  # (its ``through``, when) in keywords.npz
        self._keywords_checked = 0.0
        self._keywords_counted = 0.0  # when the images were last counted for it (``KEYWORD_RECOUNT``)
        self._ocr_known: tuple[bool, float] | None = None  # (has text, when checked)
        self._ocr_matcher: tuple[dict[str, str], OcrMatcher] | None = None
        self._background: tuple[KeywordIndex, Background] | None = None
        self._marks: Marks | None = None
        self._lock = threading.RLock()  # guards lazy opening of the store and the caches
        # guards loading the models, apart: a new process loads the text model while the keyword index loads
        # (``SearchEngine.warm_up``). The store is opened before it is taken, never while it is held.
        self._models = threading.RLock()
        self._query_vectors = lru_cache(QUERY_TEXTS)(self._encode_query)
        self._signature: tuple[Config, dict[str, str]] | None = None  # (the config, its model ids)

    # -- the store and the models -------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The opened store; raises ``IndexMismatchError`` if other models built it."""
        with self._lock:
            if self._store is None:
                from .store.client import Store

                store = Store.from_config(self.config)
                self.adopt_models(store)
                store.check(self.signature)
                self._store = store
            return self._store

    @property
    def opened(self) -> Store | None:
        """The store if it is open, else None (nothing is opened)."""
        return self._store

    def detach(self) -> None:
        """Forget the opened store (a reindex builds beside it and checks the new models at the switch)."""
        with self._lock:
            self._store = None

    def switched_to(self, store: Store) -> None:
        """After this session's own reindex switched: answer from the new generation, with fresh caches."""
        with self._lock:
            self._store, self._keywords, self._ocr_known, self._ocr_matcher, self._marks = store, None, None, None, None
            self._background = None
            self._keywords_checked = 0.0
            self._query_vectors.cache_clear()

    def successor(self, requested: Config) -> IndexSession | None:
        """When a reindex (in any process) switched the index to other models: a new session on them, its
        store and models loaded (all of them if this one had all loaded), ready to replace this one; else None."""
        store = self._store
        if store is None or store.pointer()["active"] == store.generation:
            return None
        fresh = IndexSession(requested)
        fresh.store  # noqa: B018 - the new collections and models, loaded before anything is swapped
        fresh.text_encoder  # noqa: B018
        fresh.caption_encoder  # noqa: B018
        if self.loaded:
            fresh.encoders  # noqa: B018
        return fresh

    def adopt_models(self, store: Store) -> None:
        """Models belong to the index: without model settings of its own, the session uses the index's."""
        self._adopted = True
        if self._encoders is not None or self._text is not None:
            return
        stored = store.models() or {}
        changes = {k: v for k, v in stored.items() if k in MODEL_FIELDS} if self.config.adopt_index_models else {}
        if self.config.caption_model is None:  # not given: the index's caption model, or none
            changes["caption_model"] = stored.get("caption_model", "")
        if changes:
            self.config = replace(self.config, **changes, adopt_index_models=False)

    def _open_for_models(self) -> None:
        """Open the store before loading models when the index may choose them."""
        if (self.config.adopt_index_models or self.config.caption_model is None) and not self._adopted:
            self.store  # noqa: B018

    @property
    def signature(self) -> dict[str, str]:
        """The model ids this session reads and writes (recorded in, and checked against, the index)."""
        self._open_for_models()
        if self._encoders is not None:
            image = self._encoders.image
            return {"image_model": image.model_id if image else NO_IMAGE_MODEL, "text_model": self._encoders.text.model_id,
                    "caption_model": self._encoders.captions.model_id}
        config = self.config  # a query asks several times: the ids of local folders are looked up on disk
        if self._signature is None or self._signature[0] is not config:
            self._signature = (config, model_signature(config))
        return dict(self._signature[1])

    @property
    def has_image_vectors(self) -> bool:
        """Whether this index scores images by their pixels (False in the offline profile)."""
        return has_image_vectors(self.signature)

    @property
    def has_caption_space(self) -> bool:
        """Whether captions and photo text live in a caption model's own space (``Config.caption_model``)."""
        signature = self.signature
        return signature["caption_model"] != signature["text_model"]

    @property
    def loaded(self) -> bool:
        """Whether all the models are loaded (a switch then loads the new ones before swapping)."""
        return self._encoders is not None

    @property
    def encoders(self) -> Encoders:
        """The loaded models (loaded on first access)."""
        self._open_for_models()
        with self._models:
            if self._encoders is None:
                self._encoders = load_encoders(self.config, self._text, self._caption)
            return self._encoders

    @property
    def text_encoder(self) -> TextEncoder:
        """The text model alone: a text query does not wait for the image model to load."""
        self._open_for_models()
        with self._models:
            if self._encoders is not None:
                return self._encoders.text
            if self._text is None:
                self._text = load_text_encoder(self.config)
            return self._text if self._text is not None else self.encoders.text

    @property
    def caption_encoder(self) -> TextEncoder:
        """The model of captions and photo text (the caption model, else the text model), loaded alone."""
        self._open_for_models()
        with self._models:
            if self._encoders is not None:
                return self._encoders.captions
            if not self.config.has_caption_model:
                return self.text_encoder
            if self._caption is None:
                self._caption = load_caption_encoder(self.config)
            assert self._caption is not None
            return self._caption

    def query_vector(self, text: str, captions: bool = False) -> tuple[np.ndarray, dict[int, float]]:
        """``text`` embedded as a query: by the text model, or by the caption model (``captions``) with its
        lexical weights when it gives them (else {}). The vector is read-only. The last ``QUERY_TEXTS`` texts
        are kept, so the same text asked again is not encoded again: the page asks it again whenever a
        filter, the order or the number of hits changes (29 ms of a 81 ms query at 810k photos)."""
        vector, weights = self._query_vectors(text, captions)
        return vector, dict(weights)

    def _encode_query(self, text: str, captions: bool) -> tuple[np.ndarray, dict[int, float]]:
        encoder = self.caption_encoder if captions else self.text_encoder
        weights: dict[int, float] = {}
        if captions and getattr(encoder, "has_lexical", False):
            vectors, lexical = encoder.encode_with_lexical([text])  # type: ignore[attr-defined]
            weights = lexical[0]
        else:
            vectors = encoder.encode_texts([text])
        vector = np.array(vectors[0], dtype=np.float32)
        vector.setflags(write=False)
        return vector, weights

    def caption_space_mismatch(self) -> tuple[str, str] | None:
        """(the index's caption model, this session's) when they differ: ``reindex`` changes it; searches
        and index runs are refused until then."""
        stored = self.store.signature()
        wanted = self.signature["caption_model"]
        if stored is None or stored["caption_model"] == wanted:
            return None
        return stored["caption_model"], wanted

    def check_caption_space(self) -> None:
        """Raises ``IndexMismatchError`` when the index's captions are in another caption model's space."""
        mismatch = self.caption_space_mismatch()
        if mismatch is not None:
            raise IndexMismatchError(
                f"the captions of the index at {self.store.path} are embedded with {mismatch[0]}, not {mismatch[1]}; "
                f"change it with `mmsearch reindex --caption-model ...` (captions are embedded again, images are not "
                f"touched, search goes on meanwhile), or leave out --caption-model / MMSEARCH_CAPTION_MODEL to use "
                f"the index's own")

    def ocr_for_run(self, store: Store) -> OcrEngine | None:
        """The OCR engine of an index run: ``config.ocr`` True/False turns it on/off and is recorded in the
        index; None follows what the index records, so later runs keep doing what the first asked for."""
        from .media.ocr import load_ocr

        recorded = store.ocr_setting()
        wanted = self.config.ocr
        name = recorded if wanted is None else (self.config.ocr_engine if wanted else "")
        engine = load_ocr(name) if name else None  # an engine that is not installed fails here, before recording
        if name != recorded:
            store.set_ocr_setting(name)
        return engine

    # -- caches built from the store ----------------------------------------------------------------

    def changed(self) -> None:
        """The index was written: the next query asks the store what changed."""
        self._keywords_checked = 0.0

    def follow_first_run(self) -> Callable[[], None]:
        """Before an index run into an empty library: build its keyword index from the run's own writes
        (``KeywordFeed``) instead of reading every record back at the end (134 s at 653k photos). Returns
        what ends it, once the run is done: the index built becomes this session's, and the store's
        numbered writes bring it up to date with anything the feed did not see. Only where the store is the
        sole writer (embedded): writers into a server can take one number."""
        from .search.keyword_feed import KeywordFeed

        store = self.store
        mark = store.write_mark() if store.sole_writer and store.count() == 0 else None
        if mark is None or mark.pending is not None:
            return lambda: None
        feed = KeywordFeed(mark.through, vectors=self.has_image_vectors, spill_to=self._spill_to())
        stop = store.follow_writes(feed.written)

        def done() -> None:
            stop()
            index = feed.index()
            with self._lock:
                if self._store is store and (self._keywords is None or self._keywords.through < index.through):
                    self._keywords, self._keywords_mark, self._keywords_checked = index, None, 0.0
                    self._keywords_counted = 0.0

        return done

    def keyword_index(self, fresh: bool = False) -> KeywordIndex:
        """BM25 over the images' captions, file and folder names (and the folder and camera facets).

        Kept on disk (``keywords_path``) and brought up to date with what was written since (the store
        numbers its writes: ``Store.written_since``), at most every ``KEYWORD_CHECK`` seconds unless
        ``fresh`` (the facets after an index run). Images written unnumbered show in the count, which is read
        when ``fresh`` and otherwise at most every ``KEYWORD_RECOUNT`` seconds. Only the first build reads
        every record.
        """
        from .search.keywords import KeywordIndex

        store = self.store
        with self._lock:
            now = time.monotonic()
            if self._keywords is not None and not fresh and now - self._keywords_checked < KEYWORD_CHECK:
                return self._keywords  # checked a moment ago: spare the round trips
            self._keywords_checked = now
            index = self._keywords
            if index is None:  # the kept file first: a new process reads it while Chroma loads its vector indexes
                index = KeywordIndex.load(self.keywords_path(), self._keywords_key())
                self._keywords_saved = (index.through if index is not None else -1, now)
                if index is not None and self._current_while_loading(index):
                    self._keywords = index  # checked in full (writes in progress, the count) by a later call
                    return index
            # Before reading the store: a write in progress is read again. (Chroma counts by loading the images'
            # vector index, so in a new process this waits for ``Store.warm_up``.)
            mark, count = store.write_mark(), None
            if fresh or index is not self._keywords or now - self._keywords_counted >= KEYWORD_RECOUNT:
                count, self._keywords_counted = store.count(), now
            if index is None:
                index = KeywordIndex.from_metadata(store.all_metadata(self._vector_kinds()), through=mark.through,
                                                   spill_to=self._spill_to())
                trim()  # the build's freed holes, 0.64 GB at a million photos (``mmsearch.heap``)
            elif index is not self._keywords or mark != self._keywords_mark or count not in (None, len(index)):
                index = up_to_date(index, store, mark, count, self._vector_kinds())
            self._keywords, self._keywords_mark = index, mark
            # kept on disk when asked ``fresh`` (after an index run) even if brought up to date by an earlier call
            saved, at = self._keywords_saved
            if index.through != saved and (fresh or saved < 0 or now - at >= KEYWORD_SAVE):
                self._save_keywords(index, self._keywords_key())
            return index

    def _current_while_loading(self, index: KeywordIndex) -> bool:
        """Whether, while Chroma loads the images' vector index (``Store.warming``: a new process's first search),
        the keyword file just read holds every write, all of them published (``Store.published_through``): then the
        first search reads no collection, where any read (the writes in progress, the count, a catch-up) waits for
        the load, 3-4 s at a million photos. Images written unnumbered (the count) are left to the next check."""
        store = self.store
        return store.warming("images") and store.published_through() == index.through

    def _vector_kinds(self) -> tuple[str, ...]:
        """The vectors the keyword index keeps (``KeywordIndex.vectors``, ``caption_vectors``): the captions',
        and the images' where the index has image vectors (the offline profile's are never searched)."""
        return ("image", "caption") if self.has_image_vectors else ("caption",)

    def _spill_to(self) -> Path | None:
        """The keyword file a build writes its vectors beside (``KeywordIndex.for_building``), where that folder
        can be written; None: the build keeps them in memory."""
        path = self.keywords_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        return path if os.access(path.parent, os.W_OK) else None

    def _keywords_key(self) -> tuple[str, int]:
        """What ``keywords.npz`` must have been written for: this index (a schema step rewrites records
        unnumbered, so its version too)."""
        store = self.store
        return store.identity(), store.schema_version()

    def _save_keywords(self, index: KeywordIndex, key: tuple[str, int]) -> None:
        path = self.keywords_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            index.save(path, key)
        except OSError:  # a read-only database still searches
            return
        self._keywords_saved = (index.through, time.monotonic())

    def keywords_path(self) -> Path:
        """``keywords.npz`` of this generation of models (``Config.keywords_file``)."""
        from .store.collections import FIRST

        generation = self.store.generation
        return self.config.keywords_file("" if generation == FIRST else generation)

    def has_ocr_texts(self) -> bool:
        """Whether any text was read in this index's photos (then text queries use the ``ocr`` signal)."""
        now = time.monotonic()
        if self._ocr_known is None or (not self._ocr_known[0] and now - self._ocr_known[1] > KEYWORD_CHECK):
            self._ocr_known = (self.store.ready and self.store.ocr_collection() is not None, now)
        return self._ocr_known[0]

    def ocr_matcher(self) -> OcrMatcher:
        """Lexical matching over the text read in photos (the keyword index's ``ocr``), built again when a
        change touched that text."""
        from .search.ocr_matcher import OcrMatcher

        keywords = self.keyword_index()
        with self._lock:
            if self._ocr_matcher is None or self._ocr_matcher[0] is not keywords.ocr:
                self._ocr_matcher = (keywords.ocr, OcrMatcher(keywords.ocr))
            return self._ocr_matcher[1]

    def background(self) -> Background:
        """The fixed library sample that relevance is calibrated against (``mmsearch.search.relevance``),
        kept with the keyword index (which lists the library) and rebuilt with it."""
        from .search.relevance import Background

        keywords = self.keyword_index()
        with self._lock:
            if self._background is None or self._background[0] is not keywords:
                sample = Background.sample(self.store, keywords.live_ids(), keywords.captioned, self.has_image_vectors,
                                           keywords)
                self._background = (keywords, sample)
            return self._background[1]

    @property
    def marks(self) -> Marks:
        """The index's lasting feedback marks (``mmsearch.search.feedback.Marks``)."""
        from .search.feedback import Marks

        with self._lock:
            if self._marks is None:
                config = self.config
                self._marks = Marks(self.store, lambda text: self.query_vector(text)[0],
                                    lambda: lock_for_writing(config))
            return self._marks


def up_to_date(index: KeywordIndex, store: Store, mark: WriteMark, count: int | None,
               vectors: tuple[str, ...] = ()) -> KeywordIndex:
    """``index`` with what the store's writes from ``index.through`` on changed; ``mark`` and ``count``: where
    the store's writes stood and its image count, read before (None: not counted this time). Images written
    unnumbered (by an older mmsearch, or a run killed between its steps) show as a count that differs: then
    the ids are compared. ``vectors``: the kinds of vectors read too (``Store.written_since``)."""
    written, removed = store.changed_since(index.through, vectors)
    index = index.apply(written, removed=removed, through=mark.through)
    if count is not None and len(index) != count:
        stored, live = set(store.image_ids()), set(index.positions())
        added = store.image_metadata(sorted(stored - live), vectors)
        index = index.apply(added.items(), removed=live - stored)
    return index
