"""SearchEngine: the library entry point (index, search, search_image, stats)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import MODEL_FIELDS, Config
from .encoders import Encoders, TextEncoder, l2_normalize, load_caption_encoder, load_encoders, load_text_encoder, model_signature
from .errors import ConfigError, IndexMismatchError, MMSearchError, QueryError, first_line
from .ids import NO_IMAGE_MODEL, has_image_vectors, image_id, image_id_of
from .media.captions import load_manifest
from .records import Hit, IndexReport, ReindexReport
from .search.filters import DateLike, build_where, check_text, within, within_any

if TYPE_CHECKING:
    from PIL import Image

    from .duplicates import DuplicateGroup
    from .ingest.indexer import Shard
    from .ingest.progress import ProgressCallback
    from .media.ocr import OcrEngine
    from .search.feedback import Examples, Mark, Marks
    from .search.keywords import KeywordIndex
    from .search.ocr_matcher import OcrMatcher
    from .search.query import Query
    from .search.rerank import Reranker
    from .store.client import Store

MAX_K = 10_000  # more hits than any page shows; larger k is refused with a message, not an OverflowError
KEYWORD_REFRESH = 30.0  # seconds between keyword-index rebuilds while the index keeps changing
KEYWORD_CHECK = 2.0  # seconds during which the keyword index is used without asking the store if it changed
SWITCH_CHECK = 2.0  # seconds between looks at the index's active models while serving (mmsearch reindex)
# What belongs to the index's active models: replaced together when a reindex switches them.
INDEX_STATE = ("config", "_encoders", "_text", "_caption", "_keywords", "_ocr_known", "_ocr_matcher", "_keywords_key",
               "_keywords_at", "_keywords_checked", "_marks", "_store", "_adopted")


class SearchEngine:
    """Index folders of images and search them by text (any language), by image, or both.

    Models load on first use, so opening an engine to read ``stats()`` is instant.

    Args:
        db: database folder (default: ``MMSEARCH_DB`` or the XDG data folder).
        config: a full ``Config``; keyword ``settings`` override its fields.
        encoders: ready encoders to use instead of loading the configured models (tests, embedding).
        **settings: any ``Config`` field, e.g. ``clip_model``, ``clip_pretrained``, ``text_model``.

    Example:
        >>> engine = SearchEngine("./mmsearch-db")
        >>> engine.index(["sample_images/"])
        >>> engine.search("a red bicycle", k=5)
    """

    def __init__(self, db: str | Path | Config | None = None, *, config: Config | None = None,
                 encoders: Encoders | None = None, **settings: Any):
        if isinstance(db, Config):  # SearchEngine(Config(...)) means the config, not a folder named after it
            db, config = None, db if config is None else config
        if config is None:
            config = Config.from_env(db=db, **settings)
        elif db is not None or settings:
            config = replace(config, **settings, **({"db": str(db)} if db is not None else {}))
        self.config = config
        self._requested = config  # before the index's models are adopted (follow_switch starts from it)
        # Only an engine that takes all its models from the index follows a switch to new ones.
        self._follows = encoders is None and config.adopt_index_models and config.caption_model is None
        self._encoders = encoders
        self._encoders_from_config = encoders is None  # models the index may record as its own
        self._adopted = False  # whether the index was asked for its models
        self._text: TextEncoder | None = None  # loaded alone for text queries until the image model is needed
        self._caption: TextEncoder | None = None  # likewise the caption model
        self._keywords: KeywordIndex | None = None
        self._ocr_known: tuple[bool, float] | None = None  # (has text, when checked)
        self._ocr_matcher: tuple[KeywordIndex, OcrMatcher] | None = None
        self._keywords_key: tuple[int, int] = (0, 0)
        self._keywords_at = self._keywords_checked = 0.0
        self._reranker: Reranker | None = None
        self._marks: Marks | None = None  # opened on first use
        self._store: Store | None = None
        self._state_version = 0  # raised when a switch to new models replaced the INDEX_STATE
        self._lock = threading.RLock()  # guards lazy opening of the store and models
        self._index_lock = threading.Lock()

    # -- lazily opened parts ------------------------------------------------------------------------

    @property
    def signature(self) -> dict[str, str]:
        """The model ids this engine reads and writes (recorded in, and checked against, the index)."""
        self._open_for_models()
        if self._encoders is not None:
            image = self._encoders.image
            return {"image_model": image.model_id if image else NO_IMAGE_MODEL, "text_model": self._encoders.text.model_id,
                    "caption_model": self._encoders.captions.model_id}
        return model_signature(self.config)

    @property
    def has_image_vectors(self) -> bool:
        """Whether this engine's index scores images by their pixels (False in the offline profile)."""
        return has_image_vectors(self.signature)

    @property
    def store(self) -> Store:
        """The opened store; raises ``IndexMismatchError`` if other models built it."""
        with self._lock:
            if self._store is None:
                from .store.client import Store

                store = Store.from_config(self.config)
                self._adopt_models(store)
                store.check(self.signature)
                self._store = store
            return self._store

    def _check_caption_space(self) -> None:
        mismatch = self.caption_space_mismatch()
        if mismatch is not None:
            raise IndexMismatchError(
                f"the captions of the index at {self.store.path} are embedded with {mismatch[0]}, not {mismatch[1]}; "
                f"change it with `mmsearch reindex --caption-model ...` (captions are embedded again, images are not "
                f"touched, search goes on meanwhile), or leave out --caption-model / MMSEARCH_CAPTION_MODEL to use "
                f"the index's own")

    def caption_space_mismatch(self) -> tuple[str, str] | None:
        """(the index's caption model, this engine's) when they differ: ``reindex`` changes it; searches
        and index runs are refused until then."""
        stored = self.store.signature()
        wanted = self.signature["caption_model"]
        if stored is None or stored["caption_model"] == wanted:
            return None
        return stored["caption_model"], wanted

    def _adopt_models(self, store: Store) -> None:
        """Models belong to the index: without model settings of its own, the engine uses the index's."""
        self._adopted = True
        if self._encoders is not None or self._text is not None:
            return
        stored = store.models() or {}
        changes = {k: v for k, v in stored.items() if k in MODEL_FIELDS} if self.config.adopt_index_models else {}
        if self.config.caption_model is None:  # not given: the index's caption model, or none
            changes["caption_model"] = stored.get("caption_model", "")
        if changes:
            self.config = replace(self.config, **changes, adopt_index_models=False)

    @property
    def encoders(self) -> Encoders:
        """The loaded models (loaded on first access)."""
        with self._lock:
            if self._encoders is None:
                self._open_for_models()
                self._encoders = load_encoders(self.config, self._text, self._caption)
            return self._encoders

    @property
    def caption_encoder(self) -> TextEncoder:
        """The model of captions and photo text (the caption model, else the text model), loaded alone for
        text queries like ``text_encoder``."""
        with self._lock:
            if self._encoders is not None:
                return self._encoders.captions
            self._open_for_models()
            if not self.config.has_caption_model:
                return self.text_encoder
            if self._caption is None:
                self._caption = load_caption_encoder(self.config)
            assert self._caption is not None
            return self._caption

    @property
    def text_encoder(self) -> TextEncoder:
        """The text model alone: a text query does not wait for the image model to load."""
        with self._lock:
            if self._encoders is not None:
                return self._encoders.text
            if self._text is None:
                self._open_for_models()
                self._text = load_text_encoder(self.config)
            return self._text if self._text is not None else self.encoders.text

    def _open_for_models(self) -> None:
        """Open the store before loading models when the index may choose them."""
        if (self.config.adopt_index_models or self.config.caption_model is None) and not self._adopted:
            self.store  # noqa: B018

    # -- indexing -----------------------------------------------------------------------------------

    def index(self, paths: Sequence[str | Path] | str | Path, *, captions: str | Path | Sequence[str | Path] | None = None,
              batch_size: int | None = None, prune: bool = True, progress: bool = False,
              hidden: bool = False, on_progress: ProgressCallback | None = None,
              shard: Shard | str | None = None, forget_captions: bool = False, workers: int | None = None) -> IndexReport:
        """Index image files under ``paths``; only new or changed files are encoded.

        Args:
            paths: folders (recursive) and/or image files.
            captions: one or more ``.csv``/``.jsonl`` caption manifests.
            batch_size: images per encoder batch (default from the config: 32 on the CPU, 256 on CUDA).
            prune: drop index entries whose files are gone from the indexed folders.
            progress: show a progress bar on stderr.
            hidden: also index hidden files and folders (names starting with a dot).
            on_progress: called with (done, total) images after each stored batch.
            shard: ``"I/N"`` (or a ``Shard``): index only worker I's share of N; N workers together index
                everything once, concurrently, into one server (``chroma_url``).
            forget_captions: drop captions that earlier manifests gave to files no manifest of this run
                lists (by default they are kept until a manifest says otherwise).
            workers: decode workers (default from the config: one per CPU core).

        Returns:
            An ``IndexReport``; unreadable files are listed in ``failed`` with their reason.

        Raises:
            ConfigError: a path does not exist.
        """
        from .ingest.indexer import Indexer, Shard

        if isinstance(paths, (str, Path)):
            paths = [paths]
        missing = [str(p) for p in paths if not os.path.lexists(os.path.expanduser(str(p)))]
        if missing:
            more = f" (and {len(missing) - 1} more paths)" if len(missing) > 1 else ""
            raise ConfigError(f"{missing[0]} does not exist{more}")
        manifest: dict[str, list[str]] = {}
        for manifest_path in [captions] if isinstance(captions, (str, Path)) else (captions or []):
            for key, values in load_manifest(manifest_path).items():
                manifest.setdefault(key, []).extend(values)
        with self._index_lock:  # one run at a time per engine; searches go on meanwhile
            self.lock_for_writing()
            store, encoders = self.store, self.encoders
            store.create(self.signature, encoders.dim, self.config.models() if self._encoders_from_config else None)
            self._check_caption_space()
            indexer = Indexer(store, encoders, manifest, batch_size or self.config.index_batch_size, progress, hidden,
                              on_progress, Shard.parse(shard) if isinstance(shard, str) else shard, forget_captions,
                              workers=workers or self.config.decode_workers, ocr=self._ocr_for_run(store))
            report = indexer.run(list(paths), prune=prune)
            self._keywords_checked = 0.0  # the next query looks at the store again
            return report

    def reindex(self, *, batch_size: int | None = None, workers: int | None = None, progress: bool = False,
                allow_failed: bool = False, on_progress: ProgressCallback | None = None,
                stop: threading.Event | None = None) -> ReindexReport:
        """Change the index's models to this engine's without downtime: build their collections beside the
        active ones, index the files changed meanwhile, then switch in one step (``mmsearch.ingest.reindex``).
        Settings this engine leaves out (no ``text_model`` given, ...) stay the index's. Searches, in
        this process or any other, are answered by the old models until the switch.

        Args:
            batch_size, workers, progress, on_progress: as for ``index``.
            stop: set it to stop after the current batch (like Ctrl-C); the report says ``interrupted``.
            allow_failed: switch even if some indexed files cannot be read again for a new image model
                (they leave the index); by default the run stops before the switch.

        Returns:
            A ``ReindexReport``. Run again after a stop (kill -9, Ctrl-C): only what is missing is done.

        Raises:
            ReindexError: files could not be read again, or another reindex switched meanwhile.
        """
        from .ingest.reindex import Reindexer

        with self._index_lock:
            self.lock_for_writing()
            with self._lock:
                self._store = None  # built beside, checked against the new models only at the switch
            reindexer = Reindexer(self, batch_size or self.config.index_batch_size,
                                  workers or self.config.decode_workers, progress, allow_failed, on_progress)
            if stop is not None:
                reindexer.stop = stop
            return reindexer.run()

    def _switched_to(self, store: Store) -> None:
        """After this engine's own reindex switched: answer from the new generation with its models."""
        with self._lock:
            self._store, self._keywords, self._ocr_known, self._ocr_matcher, self._marks = store, None, None, None, None
            self._keywords_checked = 0.0
            self._state_version += 1

    def follow_switch(self) -> bool:
        """If a reindex (in any process, or any server sharing the Chroma server) switched the index to other
        models, load them and answer with them from now on; True when it did. Searches meanwhile use the
        old models. Only an engine that takes its models from the index follows (no model settings given).
        """
        store = self._store
        if not self._follows or store is None or self._index_lock.locked():
            return False
        if store.pointer()["active"] == store.generation:
            return False
        fresh = SearchEngine(config=self._requested)
        fresh.store  # noqa: B018 - the new collections and models, loaded before anything is swapped
        fresh.text_encoder  # noqa: B018
        fresh.caption_encoder  # noqa: B018
        if self._encoders is not None:
            fresh.encoders  # noqa: B018
        with self._lock:
            for name in INDEX_STATE:
                setattr(self, name, getattr(fresh, name))
            self._state_version += 1
        return True

    def watch_switches(self, every: float = SWITCH_CHECK, on_tick: Callable[[], None] | None = None) -> threading.Event:
        """Follow switches (``follow_switch``) in a daemon thread, looking every ``every`` seconds, as
        ``mmsearch serve`` does (calling ``on_tick`` first each time: it takes handed-over reindex jobs,
        ``mmsearch.ingest.handoff``); set the returned event to stop watching."""
        stop = threading.Event()
        if not self._follows:
            return stop

        def watch() -> None:
            warned = False
            while not stop.wait(every):
                try:
                    if on_tick is not None:
                        on_tick()
                    if self.follow_switch():
                        models = self.signature
                        print(f"mmsearch: the index switched models; answering with image model {models['image_model']}, "
                              f"text model {models['text_model']}", file=sys.stderr)
                except Exception as exc:  # a server restarting, a half-deleted collection: try again later
                    if not warned:
                        warned = True
                        print(f"mmsearch: cannot look for a model switch ({first_line(exc)}); will retry", file=sys.stderr)

        threading.Thread(target=watch, name="mmsearch-switch-watch", daemon=True).start()
        return stop

    def _ocr_for_run(self, store: Store) -> OcrEngine | None:
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

    def has_ocr_texts(self) -> bool:
        """Whether any text was read in this index's photos (then text queries use the ``ocr`` signal)."""
        now = time.monotonic()
        if self._ocr_known is None or (not self._ocr_known[0] and now - self._ocr_known[1] > KEYWORD_CHECK):
            self._ocr_known = (self.store.ready and self.store.ocr_collection() is not None, now)
        return self._ocr_known[0]

    def ocr_matcher(self) -> OcrMatcher:
        """Lexical matching over the text read in photos (``mmsearch.search.ocr_matcher.OcrMatcher``), kept with the
        keyword index (``keyword_index``) and rebuilt with it."""
        from .search.ocr_matcher import OcrMatcher

        keywords = self.keyword_index()
        with self._lock:
            if self._ocr_matcher is None or self._ocr_matcher[0] is not keywords:
                self._ocr_matcher = (keywords, OcrMatcher(keywords.ocr))
            return self._ocr_matcher[1]

    def lock_for_writing(self) -> None:
        """Become the one process that may write this database (held until the process exits).

        A Chroma server (``chroma_url``) serialises writers itself, so no lock is taken for it.

        Raises:
            DatabaseBusyError: another process indexes or serves it.
        """
        if self.config.chroma_url:
            return
        from .lock import acquire_writer_lock

        acquire_writer_lock(self.config.db)

    # -- searching ----------------------------------------------------------------------------------

    def search(self, query: str | None = None, *, image: str | Path | Image.Image | None = None, k: int = 10,
               folder: str | Path | None = None, date_from: DateLike = None, date_to: DateLike = None,
               camera: str | None = None, text_weight: float = 0.5, min_score: float = 0.0,
               positive: Sequence[str | Path] = (), negative: Sequence[str | Path] = ()) -> list[Hit]:
        """Search by text (any language the text model knows), by image, or both.

        Args:
            query: text query.
            image: query image (path or PIL image); with ``query``, both are combined.
            k: number of hits.
            folder, date_from, date_to, camera: filters (see ``mmsearch.search.filters.build_where``).
            text_weight: share of the text in a combined text + image query vector.
            min_score: drop hits whose fused score (0-1, relative to this query's candidates) is lower.
            positive, negative: indexed images that are (not) what is wanted; they refine the query by
                their stored vectors (``mmsearch.search.feedback``), and the negatives rank last. With examples
                only (no text, no image), the query is the positives' mean.

        Returns:
            Hits, best first. ``Hit.scores["image"]`` is the cosine between the query vector and the
            image vector; ``Hit.scores["caption"]`` that of the best-matching caption. Text queries rank
            by both signals (``caption_weight``); image-only queries rank by the image signal.
        """
        def run() -> list[Hit]:
            planned = self.plan(query, image=image, k=k, text_weight=text_weight, min_score=min_score, folder=folder,
                                date_from=date_from, date_to=date_to, camera=camera, positive=positive,
                                negative=negative)
            return self.serve(planned) if planned is not None else []

        return self._consistently(run)

    def _consistently(self, run: Callable[[], list[Hit]]) -> list[Hit]:
        """``run`` a search on one set of models: a search that overlapped a switch to new models
        (``follow_switch``) may have mixed old and new parts (a vector of one, the collections of the
        other), so it is run again on the new ones, even if it failed."""
        for _ in range(3):
            version = self._state_version
            try:
                hits = run()
            except MMSearchError:
                if version == self._state_version:
                    raise
                continue
            if version == self._state_version:
                return hits
        return run()

    def plan(self, query: str | None = None, *, image: str | Path | Image.Image | None = None, k: int = 10,
             text_weight: float = 0.5, min_score: float = 0.0, exclude: str | None = None,
             vector: np.ndarray | None = None, positive: Sequence[str | Path] = (), negative: Sequence[str | Path] = (),
             **filters: Any) -> Query | None:
        """The ranked query ``search`` would run (its vector encoded now); None when nothing can match.

        ``mmsearch eval`` plans and serves its queries through this too, so it measures what is served.
        """
        from .search.feedback import rocchio
        from .search.fusion import query_weights
        from .search.query import Query

        k = check_k(k)
        store = self.store  # first: an index built by other models is refused before any model loads
        self._check_caption_space()
        text = check_text((query or "").strip())
        if vector is None and not text and image is None and not positive:
            raise QueryError("give a text query, a query image, or both")
        if not store.ready or k == 0:
            if vector is None and (text or image is not None):
                self.query_vector(query, image, text_weight)  # a bad query is still an error on an empty index
            return None
        liked, unliked = self._examples(positive, negative)
        if vector is None:
            vector = self.query_vector(query, image, text_weight) if text or image is not None else liked.mean()
        refined = rocchio(vector, liked.image, unliked.image)
        captions, lexical = self._caption_query(vector, text, liked, unliked)
        weights = query_weights(self.config.caption_weight, self.config.keyword_weight, bool(text),
                                self.config.feedback_weight, self.config.ocr_weight if self.has_ocr_texts() else 0.0,
                                self.config.sparse_weight if lexical else 0.0)
        marks = self.marks.signal(vector) if text and self.config.feedback_weight > 0 else {}
        return Query(refined, text, k, weights, build_where(roots=store.roots(), **filters), min_score, exclude,
                     captions, frozenset(unliked.ids), marks, shared_captions=not self.has_caption_space, lexical=lexical)

    @property
    def has_caption_space(self) -> bool:
        """Whether captions and photo text live in a caption model's own space (``Config.caption_model``)."""
        signature = self.signature
        return signature["caption_model"] != signature["text_model"]

    def _caption_query(self, vector: np.ndarray, text: str, liked: Examples, unliked: Examples
                       ) -> tuple[np.ndarray | None, dict[int, float]]:
        """The query in the caption space, refined by the examples' caption vectors: the query vector itself
        when captions share its space; else the text embedded by the caption model (None without text or
        captioned examples: then no caption signal). And the text's lexical weights when the caption model
        gives them (BGE-M3: the sparse signal), from the same forward pass."""
        from .search.feedback import rocchio

        if not self.has_caption_space:
            return rocchio(vector, liked.caption, unliked.caption), {}
        lexical: dict[int, float] = {}
        if text:
            encoder = self.caption_encoder
            if getattr(encoder, "has_lexical", False):
                vectors, weights = encoder.encode_with_lexical([text])  # type: ignore[attr-defined]
                base, lexical = vectors[0], weights[0]
            else:
                base = encoder.encode_texts([text])[0]
        elif liked.caption:
            base = l2_normalize(np.mean(liked.caption, axis=0))[0]
        else:
            return None, {}
        return rocchio(base, liked.caption, unliked.caption), lexical

    def _examples(self, positive: Sequence[str | Path], negative: Sequence[str | Path]) -> tuple[Examples, Examples]:
        from .search.feedback import examples

        return (examples(self.store, positive, self.has_image_vectors),
                examples(self.store, negative, self.has_image_vectors))

    @property
    def marks(self) -> Marks:
        """The index's lasting feedback marks (``mmsearch.search.feedback.Marks``)."""

        from .search import feedback

        with self._lock:
            if self._marks is None:
                self._marks = feedback.Marks(self.store, lambda text: self.text_encoder.encode_texts([text])[0],
                                             self.lock_for_writing)
            return self._marks

    def feedback(self, query: str, path: str | Path, relevant: bool, strength: float = 1.0) -> Mark:
        """Remember that ``path`` was (``relevant``) or was not what ``query`` wanted. Later searches with
        similar queries lift (or sink) it through the ``feedback`` signal. Stored in the index only.
        ``strength`` scales the mark (the page records opening a hit full size as a weak 0.3 like).

        Raises:
            QueryError: ``path`` is not indexed, or the query is empty.
        """
        text = check_text((query or "").strip())
        if not text:
            raise QueryError("a mark needs the query it answers")
        path = os.path.abspath(os.path.expanduser(str(path)))
        own = image_id_of(path)
        if not self.store.ready or own not in self.store.image_vectors([own]):
            raise QueryError(f"{path} is not in the index")
        return self.marks.record(text, own, path, relevant, strength)

    def has_mark(self, query: str, path: str | Path) -> bool:
        """Whether a lasting mark exists for this query and image."""
        return self.store.ready and self.marks.has(query, image_id_of(path))

    def feedback_marks(self) -> list[Mark]:
        """Every lasting mark, oldest first."""
        return self.marks.all() if self.store.ready else []

    def forget_feedback(self, path: str | Path | None = None, query: str | None = None) -> int:
        """Remove lasting marks: of one photo, of one query, of both, or (neither given) all. Returns how many."""
        if not self.store.ready:
            return 0
        own = image_id_of(path) if path is not None else None
        return self.marks.forget(own, query)

    def serve(self, query: Query) -> list[Hit]:
        """Rank a planned query (see ``plan``) with the configured fusion rule and reranker."""
        return self.serve_rules(query, [self.config.fusion])[self.config.fusion]

    def serve_rules(self, query: Query, rules: Sequence[str], rerank: bool = True) -> dict[str, list[Hit]]:
        """Hits of one query under several fusion rules, from one set of candidates (for comparisons)."""
        from .search.fusion import pool_size
        from .search.ranking import candidates, order

        text = query.text
        keywords = self.keyword_index() if text and query.weights.get("keyword") else None
        ocr = self.ocr_matcher() if text and query.weights.get("ocr") else None
        found = candidates(self.store, query, pool_size(query.k), self.has_image_vectors, keywords, ocr)
        reranker = self.reranker if text and rerank else None
        return {rule: order(self.store, query, found, rule, reranker) for rule in rules}

    def similar(self, path: str | Path, k: int = 10, min_score: float = 0.0, **filters: Any) -> list[Hit]:
        """Images most like an indexed image ("more like this"), by its stored vector: nothing is re-encoded.

        The image itself is left out of the hits. Same filters as ``search``.

        Raises:
            QueryError: ``path`` is not indexed, or the index has no image vectors (offline profile).
        """
        if not self.has_image_vectors:
            raise QueryError("'more like this' needs image vectors; this index uses the caption-only offline profile")
        own = image_id_of(path)

        def run() -> list[Hit]:
            stored = self.store.image_vectors([own]) if self.store.ready else {}
            if own not in stored:
                raise QueryError(f"{path} is not in the index")
            planned = self.plan(None, vector=stored[own], k=k, min_score=min_score, exclude=own, **filters)
            return self.serve(planned) if planned is not None else []

        return self._consistently(run)

    def keyword_index(self) -> KeywordIndex:
        """BM25 over the images' captions, file and folder names.

        Kept on disk (``<db>/keywords.npz``, or the cache folder with a server) and rebuilt when the index
        has changed, at most every ``KEYWORD_REFRESH`` seconds while an index run is writing.
        """
        from .search.keywords import KeywordIndex

        store = self.store
        with self._lock:
            now = time.monotonic()
            if self._keywords is not None and now - self._keywords_checked < KEYWORD_CHECK:
                return self._keywords  # checked a moment ago: spare the count() round trip
            self._keywords_checked = now
            key = (store.count(), store.updated_at())
            if self._keywords is not None and (key == self._keywords_key or now - self._keywords_at < KEYWORD_REFRESH):
                return self._keywords
            path = self._keywords_path()
            index = KeywordIndex.load(path, key)
            if index is None:
                index = KeywordIndex.from_metadata(store.all_metadata())
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    index.save(path, key)
                except OSError:  # a read-only database still searches
                    pass
            self._keywords, self._keywords_key, self._keywords_at = index, key, time.monotonic()
            return index

    def _keywords_path(self) -> Path:
        """``keywords.npz`` in the database folder (the cache folder with a server), one per generation of
        models: a later generation's lexical weights are its caption model's."""
        from .store.client import FIRST

        generation = self.store.generation
        own = "" if generation == FIRST else f"-{generation}"
        if not self.config.chroma_url:
            return Path(self.config.db) / f"keywords{own}.npz"
        import hashlib

        from .config import default_cache_path

        server = hashlib.sha1(self.config.chroma_url.encode()).hexdigest()[:12]
        return Path(default_cache_path()) / f"keywords-{server}{own}.npz"

    @property
    def reranker(self) -> Reranker | None:
        """The configured cross-encoder (``rerank_model``), loaded on first use; None when off."""
        if not self.config.rerank_model:
            return None
        with self._lock:
            if self._reranker is None:
                from .search.rerank import Reranker

                self._reranker = Reranker(self.config.rerank_model, self.config.device)
            return self._reranker

    def search_image(self, image: str | Path | Image.Image, k: int = 10, **filters: Any) -> list[Hit]:
        """Images most like ``image`` (a path or PIL image); same filters as ``search``."""
        return self.search(None, image=image, k=k, **filters)

    def query_vector(self, query: str | None, image: str | Path | Image.Image | None = None,
                     text_weight: float = 0.5) -> np.ndarray:
        """The unit query vector for a text, an image, or their weighted combination."""
        text = check_text((query or "").strip())
        if not text and image is None:
            raise QueryError("give a text query, a query image, or both")
        parts: list[tuple[float, np.ndarray]] = []
        if text:
            parts.append((text_weight if image is not None else 1.0, self.text_encoder.encode_texts([text])[0]))
        if image is not None:
            if self.encoders.image is None:
                raise QueryError("image queries need an image encoder; this index uses the caption-only offline "
                                 "profile (set --clip-pretrained to a local checkpoint to enable image search)")
            from .media.images import open_rgb

            encoder = self.encoders.image
            rgb = open_rgb(image, getattr(encoder, "input_size", None))
            parts.append((1.0 - text_weight if text else 1.0, encoder.encode_images([rgb])[0]))
        return l2_normalize(sum(w * v for w, v in parts))[0]

    # -- duplicates ---------------------------------------------------------------------------------

    def duplicates(self, folder: str | Path | None = None, max_bits: int | None = None,
                   min_cosine: float | None = None, of: Sequence[str | Path] | None = None) -> list[DuplicateGroup]:
        """Groups of files that are one photo (copies, resizes, re-encodes, light edits), keeper first.

        Args:
            folder: only images inside this folder.
            max_bits: largest perceptual-hash distance of a near duplicate (default 8 of 64 bits).
            min_cosine: smallest image-vector cosine of a near duplicate (default 0.92; not used by the
                offline profile, which has no image vectors).
            of: only the groups of these indexed files (or of the files under these folders), e.g. photos
                added since the last look: they are compared with everything, not everything with everything.

        See ``mmsearch.duplicates`` for the rule.
        """
        from .duplicates import MAX_BITS, MIN_COSINE, find_groups

        store = self.store
        if not store.ready:
            return []
        roots = store.roots()
        inside = str(Path(os.path.expanduser(str(folder))).absolute()) if folder else None
        records = [(i, m) for i, m in store.all_metadata()
                   if within_any(m["path"], roots) and (inside is None or within(m["path"], inside))]
        # The offline profile's colour-layout vectors are no check: measured on photo variants, a brightness
        # change moved them more (cosine 0.33 for a grey texture) than a burst did, so the hash decides alone.
        vectors = self.store.image_vectors if self.has_image_vectors else None
        only = None
        if of is not None:
            wanted = [os.path.abspath(os.path.expanduser(str(p))) for p in of]
            only = {i for i, m in records if within_any(m["path"], wanted)}
        return find_groups(records, vectors, MAX_BITS if max_bits is None else max_bits,
                           MIN_COSINE if min_cosine is None else min_cosine, only)

    def move_duplicates(self, groups: list[DuplicateGroup], dest: str | Path) -> str:
        """Move every file of ``groups`` but the keepers under ``dest`` (keeping folder structure); the
        index follows them. Nothing is deleted. Returns the manifest that ``undo_duplicate_moves`` reverses."""
        from .duplicates import move_files, plan_moves

        self.lock_for_writing()
        moves = plan_moves(groups, str(dest), self.store.roots())
        return move_files(moves, os.path.abspath(os.path.expanduser(str(dest))), self._follow_move)

    def undo_duplicate_moves(self, manifest: str | Path) -> tuple[int, list[str]]:
        """Put back the files a ``move_duplicates`` manifest moved; returns (moved back, left where they are)."""
        from .duplicates import undo_moves

        self.lock_for_writing()
        return undo_moves(str(manifest), self._follow_move)

    def _follow_move(self, old: str, new: str) -> None:
        from .ingest.indexer import path_fields

        store = self.store
        if store.image_metadata([image_id(old)]):
            store.move(image_id(old), image_id(new), path_fields(new))

    # -- information --------------------------------------------------------------------------------

    def facets(self) -> dict[str, Any]:
        """Values the filters can take.

        Returns:
            ``folders``: every folder that holds images at any depth, from the indexed roots down (so a
            parent such as ``/usr/share/doc`` can be picked, not only the leaves); ``folder_counts``: images
            under each of them; ``cameras``: the cameras seen.
        """
        store = self.store
        if not store.ready:
            return {"folders": [], "folder_counts": {}, "cameras": []}
        roots = store.roots()
        counts: dict[str, int] = {}
        cameras: set[str] = set()
        for _, meta in store.all_metadata():
            for folder in meta.get("folders") or []:
                if within_any(folder, roots):
                    counts[folder] = counts.get(folder, 0) + 1
            if meta.get("camera"):
                cameras.add(str(meta["camera"]))
        folders = sorted(f for f in counts if os.path.isdir(f))
        return {"folders": folders, "folder_counts": {f: counts[f] for f in folders}, "cameras": sorted(cameras)}

    def stats(self) -> dict[str, Any]:
        """What the index holds: counts, models, indexed folders, last update (unix time)."""
        store = self.store
        signature = store.signature() or {**self.signature, "dim": None}
        ocr = store.ocr_collection() if store.ready else None
        pointer = store.pointer()
        return {"db": self.config.db, "images": store.count(), "captions": store.caption_count(),
                **signature, "roots": store.roots(), "updated_at": store.updated_at(),
                "ocr": store.ocr_setting(), "texts": ocr.count() if ocr is not None else 0,
                "generation": store.generation, "previous": pointer["previous"], "reindexing": pointer["building"]}


def check_k(k: Any) -> int:
    """``k`` as a number of hits between 0 and ``MAX_K``.

    Raises:
        QueryError: k is not a whole number in that range.
    """
    try:
        value = int(k)
    except (TypeError, ValueError, OverflowError):
        raise QueryError(f"k must be a whole number, got {k!r}") from None
    if not 0 <= value <= MAX_K:
        raise QueryError(f"k must be between 0 and {MAX_K}, got {value}")
    return value
