"""SearchEngine: the library entry point, a facade over one ``IndexSession`` (store + models of one
generation) and the modules that do the work (``ingest``, ``search``, ``duplicates``, ``info``)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import MIN_RELEVANCE, MODEL_FIELDS, Config
from .encoders import Encoders
from .errors import ConfigError, MMSearchError, QueryError
from .ids import image_id_of
from .lock import lock_for_writing
from .records import Hit, IndexReport, ReindexReport
from .search import planner
from .search.filters import DateLike, check_text
from .search.places import PlaceBook
from .search.understand import Understood, understand
from .session import IndexSession

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .albums import Album, AlbumPhoto
    from .duplicates import DuplicateGroup
    from .ingest.indexer import Shard
    from .ingest.progress import ProgressCallback
    from .ingest.watch import LibraryWatcher
    from .search.feedback import Mark
    from .search.keywords import KeywordIndex
    from .search.ocr_matcher import OcrMatcher
    from .search.query import Query
    from .search.rerank import Reranker

logger = logging.getLogger(__name__)
SWITCH_CHECK = 2.0  # seconds between looks at the index's active models while serving (mmsearch reindex)


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
        self.requested = config  # before the index's models are adopted (a switch starts again from it)
        self._own_encoders = encoders is not None
        self._follows_known: bool | None = None
        self.session = IndexSession(config, encoders)  # replaced as one reference when following a switch
        self._reranker: Reranker | None = None
        self._state_version = 0  # raised when the session was replaced or switched
        self._lock = threading.RLock()
        self._index_lock = threading.Lock()

    # -- the session's parts ------------------------------------------------------------------------

    config = property(lambda self: self.session.config, doc="The settings, with the models the index records.")
    signature = property(lambda self: self.session.signature, doc="The model ids this engine reads and writes.")
    has_image_vectors = property(lambda self: self.session.has_image_vectors,
                                 doc="Whether the index scores images by pixels (False in the offline profile).")
    has_caption_space = property(lambda self: self.session.has_caption_space,
                                 doc="Whether captions live in a caption model's own space.")

    store = property(lambda self: self.session.store, doc="The opened store (``IndexMismatchError`` if other models built it).")
    encoders = property(lambda self: self.session.encoders, doc="The loaded models (loaded on first access).")
    text_encoder = property(lambda self: self.session.text_encoder, doc="The text model alone, for text queries.")
    caption_encoder = property(lambda self: self.session.caption_encoder,
                               doc="The model of captions and photo text (the caption model, else the text model).")
    marks = property(lambda self: self.session.marks, doc="The lasting feedback marks (``search.feedback.Marks``).")

    def caption_space_mismatch(self) -> tuple[str, str] | None:
        """(the index's caption model, this engine's) when they differ (``IndexSession``)."""
        return self.session.caption_space_mismatch()

    def keyword_index(self) -> KeywordIndex:
        """BM25 over the images' captions, file and folder names (``IndexSession.keyword_index``)."""
        return self.session.keyword_index()

    def has_ocr_texts(self) -> bool:
        """Whether any text was read in this index's photos (then text queries use the ``ocr`` signal)."""
        return self.session.has_ocr_texts()

    def ocr_matcher(self) -> OcrMatcher:
        """Lexical matching over the text read in photos, kept with the keyword index."""
        return self.session.ocr_matcher()

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

    def warm_up(self) -> None:
        """Start loading the vector indexes (``Store.warm_up``) and the text model in the background, so that
        a new process's first search does not wait for each in turn: the command line's ``search`` and the
        page call it first. An index that does not exist yet is left alone."""
        if self.store.ready:  # not ``count``: Chroma counts by loading the images' vector index, in this thread
            self.store.warm_up()
            threading.Thread(target=self._load_text_model, name="mmsearch-text-model").start()

    def _load_text_model(self) -> None:
        try:
            self.session.text_encoder  # noqa: B018 - loaded now, while the caller reads the keyword index
        except Exception as exc:  # only a head start: the search that needs the model says what is wrong
            logger.debug("the text model was not loaded ahead: %s", exc)

    def lock_for_writing(self) -> None:
        """Become the one process that may write this database (``mmsearch.lock.lock_for_writing``)."""
        lock_for_writing(self.config)

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
        from .ingest.indexer import index_into

        with self._index_lock:  # one run at a time per engine; searches go on meanwhile
            self.lock_for_writing()
            report = index_into(self.session, paths, captions=captions, batch_size=batch_size, prune=prune,
                                progress=progress, hidden=hidden, on_progress=on_progress, shard=shard,
                                forget_captions=forget_captions, workers=workers)
        if not report.interrupted and (report.added or report.updated or report.moved or report.removed):
            if shard is None:  # shards write into one server together; each would read all of it
                self._keep_keywords()
            self._keep_entries()
            self._fit_search()
            self.refresh_albums()  # albums fill themselves with what the run brought
        return report

    def _keep_keywords(self) -> None:
        """Bring the keyword index up to date with what the run wrote and keep it on disk, so the first
        search after a run reads ``keywords.npz`` instead of every record (minutes at a million photos)."""
        try:
            self.session.keyword_index(fresh=True)
        except MMSearchError as exc:  # the run itself is done and stored; a search builds it later
            logger.warning("the keyword index was not brought up to date: %s", exc)

    def _fit_search(self) -> None:
        """Keep recall as the library grows: the images' vector index searches wider in a larger library
        (``Store.fit_search``), from the next process that loads it."""
        try:
            self.store.fit_search()
        except MMSearchError as exc:
            logger.warning("the vector index's search width was not updated: %s", exc)

    def _keep_entries(self) -> None:
        """Keep what the run leaves indexed in the entries file, so the next run (in another process) reads
        it and what changed since instead of every record (``Store.entries``). After ``_keep_keywords`` this
        reads nothing more: the keyword index's read brought the entries up to date too."""
        try:
            self.store.keep_entries()
        except MMSearchError as exc:
            logger.warning("the entries file was not written: %s", exc)

    def reindex(self, *, batch_size: int | None = None, workers: int | None = None, progress: bool = False,
                allow_failed: bool = False, on_progress: ProgressCallback | None = None,
                stop: threading.Event | None = None) -> ReindexReport:
        """Change the index's models to this engine's without downtime: build their collections beside the
        active ones, index the files changed meanwhile, then switch in one step (``mmsearch.ingest.reindex``).
        Settings this engine leaves out stay the index's. Searches, in this process or any other, are
        answered by the old models until the switch.

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
            self.session.detach()  # built beside, checked against the new models only at the switch
            reindexer = Reindexer(self.session, batch_size or self.config.index_batch_size,
                                  workers or self.config.decode_workers, progress, allow_failed, on_progress)
            if stop is not None:
                reindexer.stop = stop
            report = reindexer.run()
            if report.switched:
                self._state_version += 1
            return report

    @property
    def follows(self) -> bool:
        """Whether this engine follows a switch of the index to other models: it takes all its models from the
        index, or the models it was given (``MMSEARCH_*_MODEL``, options) are the index's own. An engine given
        encoders, or other models, keeps answering with those."""
        if self._follows_known is None:
            requested = self.requested
            if self._own_encoders:
                self._follows_known = False
            elif requested.adopt_index_models and requested.caption_model is None:
                self._follows_known = True
            else:  # the same models, given again: follow as if they had been left out
                try:
                    stored = self.store.models() if self.store.ready else None
                except MMSearchError:  # other models built it: this engine answers with none of its own
                    stored = None
                self._follows_known = bool(stored) and all(getattr(requested, k) == stored.get(k) for k in MODEL_FIELDS)
                if self._follows_known:
                    self.requested = replace(requested, adopt_index_models=True, caption_model=None)
        return self._follows_known

    # -- smart albums ------------------------------------------------------------------------------

    def add_album(self, name: str, query: str, *, min_relevance: float = MIN_RELEVANCE, **filters: Any) -> Album:
        """Save a search as an album that fills itself (``mmsearch.albums``): ``query`` (read as ``search``
        reads it: "beach Lisbon 2019" works), ``filters`` (folder, date_from, date_to, place, camera) and
        the relevance floor. Its photos are computed now and after every index or watch run.

        Raises:
            QueryError: the name is taken or not a name, or the query or a filter is not valid.
        """
        from . import albums
        from .store.client import AlbumStore

        self.lock_for_writing()
        meta = albums.record(name, check_text(query or "", "query").strip(), filters, float(min_relevance))
        shelf = AlbumStore(self.store)
        if albums.album_id(name) in shelf.all():
            raise QueryError(f"there is an album called {name.strip()!r} already (mmsearch album remove it first)")
        album = albums.from_record(meta)
        albums.members(album, self.search, self.feedback_marks())  # a query or filter that cannot run is refused now, not later
        shelf.put(albums.album_id(name), self._album_vector(album.query), meta)
        self.refresh_albums()
        return self.albums_by_name()[album.name.casefold()]

    def _album_vector(self, query: str) -> np.ndarray:
        """An album's record vector: its query embedded by the text model (zeros but one for a query of
        filters only), so ``reindex`` has something to re-embed and a server something to store."""
        import numpy as np

        if query:
            return self.session.text_encoder.encode_texts([query])[0]
        vector = np.zeros(self.session.text_encoder.dim, np.float32)
        vector[0] = 1.0
        return vector

    @property
    def albums(self) -> list[Album]:
        """The index's albums, by name."""
        return sorted(self.albums_by_name().values(), key=lambda a: a.name.casefold())

    def albums_by_name(self) -> dict[str, Album]:
        """Case-folded name -> album."""
        from . import albums
        from .store.client import AlbumStore

        if not self.store.ready:
            return {}
        found = [albums.from_record(m) for m in AlbumStore(self.store).all().values()]
        return {a.name.casefold(): a for a in found}

    def album(self, name: str, look: bool = True) -> tuple[Album, list[AlbumPhoto]]:
        """An album and its photos now, best first, each marked ``new`` when it joined since the album was
        last looked at; with ``look`` (as ``mmsearch album show`` does) what is shown counts as seen.

        Raises:
            QueryError: there is no album of that name.
        """
        from . import albums
        from .store.client import AlbumStore

        album = self._album_named(name)
        hits = albums.members(album, self.search, self.feedback_marks())
        previous = set(album.photos) - set(album.new)
        ids = albums.ids_of(hits)
        photos = [albums.AlbumPhoto(h.path, h.relevance, i not in previous) for h, i in zip(hits, ids)]
        if look:
            AlbumStore(self.store).update(albums.album_id(album.name), {"photos": json.dumps(ids), "seen": json.dumps(ids)})
        return albums.Album(album.name, album.query, album.filters, album.min_relevance, album.created, ids,
                            [i for i in ids if i not in previous]), photos

    def _album_named(self, name: str) -> Album:
        found = self.albums_by_name().get(str(name).strip().casefold())
        if found is None:
            known = ", ".join(a.name for a in self.albums) or "none yet"
            raise QueryError(f"there is no album called {name!r} (albums: {known}); mmsearch album add makes one")
        return found

    def remove_album(self, name: str) -> None:
        """Delete an album (its photos stay indexed).

        Raises:
            QueryError: there is no album of that name.
        """
        from . import albums
        from .store.client import AlbumStore

        self.lock_for_writing()
        AlbumStore(self.store).delete(albums.album_id(self._album_named(name).name))

    def export_album(self, name: str, target: str | Path, copy: bool = False) -> tuple[int, int]:
        """Symbolic links (or copies) of an album's photos in ``target``: (made, already there). Safe to repeat;
        never overwrites, never writes inside the indexed folders or the database.

        Raises:
            QueryError: there is no album of that name. ConfigError: ``target`` is inside a root or the database.
        """
        from . import albums
        from .ingest.indexer import database_folders

        _, photos = self.album(name, look=False)
        return albums.export([p.path for p in photos], target, [*self.store.roots(), *database_folders(self.config)],
                             copy)

    def refresh_albums(self) -> None:
        """Compute every album's photos again (after an index or watch run), keeping what was seen."""
        from . import albums
        from .store.client import AlbumStore

        shelf = AlbumStore(self.store)
        saved = shelf.all()
        if not saved:
            return
        self.session.changed()  # what the run just wrote, in the keyword index and the samples too
        marks = self.feedback_marks()
        for album_id, meta in saved.items():
            try:
                ids = albums.ids_of(albums.members(albums.from_record(meta), self.search, marks))
            except MMSearchError as exc:  # a place no photo is in any more: the album is empty for now
                logger.info("album %s: %s", meta.get("name"), exc)
                ids = []
            shelf.update(album_id, {"photos": json.dumps(ids)})

    def watcher(self, paths: Sequence[str | Path] | None = None, *, poll: bool = False,
                on_run: Callable[[IndexReport], None] | None = None) -> LibraryWatcher:
        """A watcher that keeps this index current with its folders (``paths``, else the index's recorded
        roots): what changes is indexed as ``index`` would (``mmsearch.ingest.watch``). ``run(stop)`` blocks
        until the event is set; ``status`` says what it does. ``poll`` for file systems without events.

        Raises:
            ConfigError: there is no folder to watch.
        """
        from .ingest.indexer import database_folders
        from .ingest.watch import LibraryWatcher

        roots = [os.path.abspath(os.path.expanduser(str(p))) for p in paths] if paths else self.store.roots()
        if not roots:
            raise ConfigError("nothing to watch: index a folder first (mmsearch index FOLDER), or name folders to watch")
        hidden = any("/." in path for path in self.store.entries()) if self.store.ready else False
        return LibraryWatcher(lambda folders: self.index(folders, hidden=hidden), roots,
                              [*database_folders(self.config), self.config.thumbnail_dir], poll, on_run, hidden)

    def follow_switch(self) -> bool:
        """If a reindex (in any process, or any server sharing the Chroma server) switched the index to other
        models, load them and answer with them from now on; True when it did. Searches meanwhile use the
        old models. Only an engine that takes its models from the index follows (no model settings given).
        """
        if not self.follows or self._index_lock.locked():
            return False
        fresh = self.session.successor(self.requested)
        if fresh is None:
            return False
        with self._lock:
            self.session = fresh
            self._state_version += 1
        return True

    def watch_switches(self, every: float = SWITCH_CHECK, on_tick: Callable[[], None] | None = None) -> threading.Event:
        """Follow switches (``follow_switch``) in a daemon thread, looking every ``every`` seconds, as
        ``mmsearch serve`` does (calling ``on_tick`` first each time: it takes handed-over reindex jobs,
        ``mmsearch.ingest.handoff``); set the returned event to stop watching."""
        from .ingest.handoff import watch

        return watch(self.follow_switch, lambda: self.signature, every, on_tick)

    # -- searching ----------------------------------------------------------------------------------

    def search(self, query: str | None = None, *, image: str | Path | Image.Image | None = None, k: int = 10,
               folder: str | Path | None = None, date_from: DateLike = None, date_to: DateLike = None,
               camera: str | None = None, text_weight: float = 0.5, min_score: float = 0.0,
               positive: Sequence[str | Path] = (), negative: Sequence[str | Path] = (),
               min_relevance: float | None = None, collapse: bool = False, place: str | None = None,
               near: tuple[float, float, float] | None = None, sort: str = "best", literal: bool = False) -> list[Hit]:
        """Search by text (any language the text model knows), by image, or both.

        Args:
            query: text query. Dates, places the index holds, ``-words`` and ``camera:``/``folder:``/``place:``
                in it are filters (``mmsearch.search.understand``; ``understand`` shows what was read), unless
                ``literal``. A query that is only filters ("Osaka 2019") lists what they keep, newest first.
            image: query image (path or PIL image); with ``query``, both are combined.
            k: number of hits.
            folder, date_from, date_to, camera: filters (see ``mmsearch.search.filters.build_where``).
            text_weight: share of the text in a combined text + image query vector.
            min_score: drop hits whose fused score (0-1, relative to this query's candidates) is lower.
            positive, negative: indexed images that are (not) what is wanted; they refine the query by
                their stored vectors (``mmsearch.search.feedback``), and the negatives rank last. With examples
                only (no text, no image), the query is the positives' mean.
            min_relevance: leave out hits whose calibrated ``Hit.relevance`` is lower (the command line and
                the page use 0.5); None (default) returns the nearest ``k`` whatever their relevance.
            collapse: fold copies of one photo into their best-ranked hit (``Hit.similar``), as the command
                line and the page do; off by default, so every file is ranked.
            place: keep photos taken in this city, region or country (a name in any language the index's
                place data has: "Lisbon", "里斯本", "Portugal"; or a key of ``places``, as the page's facet sends).
            near: (latitude, longitude, km): keep photos taken inside this circle (great-circle distance).
            sort: "best" (default), "date" (newest first) or "date-asc".
            literal: take the query as text only, without reading filters in it.

        Returns:
            Hits, best first. ``Hit.scores`` holds each signal (``mmsearch.search.signals``): ``image`` is
            the cosine between the query vector and the image vector, ``caption`` that of the best-matching
            caption. Text queries rank by all signals; image-only queries rank by the image signal.
            ``Hit.relevance`` says how sure the match is, on one scale for every query.
        """
        def run() -> list[Hit]:
            understood = self.understand(query) if query and not literal else None
            read = understood or Understood(query or "")
            places = [self._place_keys(typed, keys) for typed, keys in read.places]
            if place:
                book = self.places
                places.append(self._place_keys(place, book.lookup(place) or ([place] if place in book.labels else [])))
            options: dict[str, Any] = dict(
                k=k, text_weight=text_weight, min_score=min_score, folder=folder or read.folder,
                date_from=date_from or read.date_from, date_to=date_to or read.date_to, camera=camera or read.camera,
                positive=positive, negative=negative, min_relevance=min_relevance, collapse=collapse, places=places,
                near=near, excluded=read.excluded, sort=sort)
            if understood is not None and understood.parsed and not read.text and image is None and not positive:
                return self._browse(**options)  # only filters: nothing semantic to rank by
            planned = self.plan(read.text if understood is not None else query, image=image, **options)
            return self.serve(planned) if planned is not None else []

        return self._consistently(run)

    @property
    def places(self) -> PlaceBook:
        """The places the index holds, by name in every language its place data has (``mmsearch.search.places``)."""
        return self.session.keyword_index().places if self.store.ready else PlaceBook()

    def understand(self, query: str) -> Understood:
        """What ``search`` reads in a query: its dates, places, ``-words`` and field words, and the text left
        (``mmsearch.search.understand``); ``describe()`` says it in one line."""
        if not isinstance(query, str):
            raise QueryError(f"the query is text, got {query!r}")
        return understand(check_text(query, "query"), self.places)

    @staticmethod
    def _place_keys(typed: str, keys: list[str]) -> list[str]:
        if not keys:
            raise QueryError(f"no photo of this index was taken in a place called {typed!r}")
        return keys

    def _browse(self, *, k: int, sort: str, places: list[list[str]], near: Any, excluded: Sequence[str],
                **filters: Any) -> list[Hit]:
        """Every image the filters keep, newest first (or ``sort``), each a full match (relevance 1)."""
        from .search.filters import build_where, check_near
        from .search.planner import check_k, check_sort
        from .search.ranking import browse

        wanted = {name: filters[name] for name in ("folder", "date_from", "date_to", "camera")}
        where = build_where(roots=self.store.roots(), places=places, near=check_near(near), **wanted)
        return browse(self.store, where, check_near(near), tuple(excluded), check_k(k),
                      "date" if check_sort(sort) == "best" else sort,
                      self.session.keyword_index() if self.store.ready else None)

    def _consistently(self, run: Callable[[], list[Hit]]) -> list[Hit]:
        """``run`` a search on one session: a search that overlapped a switch to new models may have mixed
        old and new parts, so it is run again on the new ones, even if it failed."""
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

    def plan(self, query: str | None = None, **options: Any) -> Query | None:
        """The ranked query ``search`` would run (``mmsearch.search.planner.plan``); None when nothing can
        match. ``mmsearch eval`` plans and serves its queries through this too, so it measures what is served."""
        return planner.plan(self.session, query, **options)

    def query_vector(self, query: str | None, image: str | Path | Image.Image | None = None,
                     text_weight: float = 0.5) -> np.ndarray:
        """The unit query vector for a text, an image, or their weighted combination."""
        return planner.query_vector(self.session, query, image, text_weight)

    def serve(self, query: Query) -> list[Hit]:
        """Rank a planned query (see ``plan``) with the configured fusion rule and reranker."""
        return self.serve_rules(query, [self.config.fusion])[self.config.fusion]

    def serve_rules(self, query: Query, rules: Sequence[str], rerank: bool = True) -> dict[str, list[Hit]]:
        """Hits of one query under several fusion rules, from one set of candidates (for comparisons)."""
        from .search.fusion import pool_size
        from .search.ranking import candidates, order

        session, text = self.session, query.text
        keywords = session.keyword_index() if text and query.weights.get("keyword") else None
        ocr = session.ocr_matcher() if text and query.weights.get("ocr") else None
        found = candidates(session.store, query, pool_size(query.k), session.has_image_vectors, keywords, ocr,
                           session.background())
        reranker = self.reranker if text and rerank else None
        return {rule: order(session.store, query, found, rule, reranker) for rule in rules}

    def search_image(self, image: str | Path | Image.Image, k: int = 10, **filters: Any) -> list[Hit]:
        """Images most like ``image`` (a path or PIL image); same filters as ``search``."""
        return self.search(None, image=image, k=k, **filters)

    def similar(self, path: str | Path, k: int = 10, min_score: float = 0.0, min_relevance: float | None = None,
                collapse: bool = False, **filters: Any) -> list[Hit]:
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
            planned = self.plan(None, vector=stored[own], k=k, min_score=min_score, exclude=own,
                                min_relevance=min_relevance, collapse=collapse, **filters)
            return self.serve(planned) if planned is not None else []

        return self._consistently(run)

    # -- feedback -----------------------------------------------------------------------------------

    def feedback(self, query: str, path: str | Path, relevant: bool, strength: float = 1.0) -> Mark:
        """Remember that ``path`` was (``relevant``) or was not what ``query`` wanted. Later searches with
        similar queries lift (or sink) it through the ``feedback`` signal. Stored in the index only.
        ``strength`` scales the mark (the page records opening a hit full size as a weak 0.3 like).

        Raises:
            QueryError: ``path`` is not indexed, or the query is empty.
        """
        from .search.feedback import mark

        return mark(self.session, query, path, relevant, strength)

    def has_mark(self, query: str, path: str | Path) -> bool:
        """Whether a lasting mark exists for this query and image."""
        return self.store.ready and self.marks.has(query, image_id_of(path))

    def feedback_marks(self) -> list[Mark]:
        """Every lasting mark, oldest first."""
        return self.marks.all() if self.store.ready else []

    def forget_feedback(self, path: str | Path | None = None, query: str | None = None) -> int:
        """Remove lasting marks: of one photo, of one query, of both, or (neither given) all. Returns how many.

        Raises:
            QueryError: ``path`` or ``query`` is given but empty or blank (it would have matched everything),
                or is not text.
        """
        for name, value in (("path", path), ("query", query)):
            if value is not None and (not isinstance(value, (str, os.PathLike)) or not str(value).strip()):
                raise QueryError(f"forget_feedback: an empty or blank {name} names no marks; leave it out (None) "
                                 f"to forget the marks of every {name}")
        if not self.store.ready:
            return 0
        return self.marks.forget(image_id_of(path) if path is not None else None, query)

    # -- duplicates and information -----------------------------------------------------------------

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
        from .duplicates import library_groups

        library = self.session.keyword_index(fresh=True) if of is not None and self.store.ready else None
        return library_groups(self.store, self.has_image_vectors, folder, max_bits, min_cosine, of, library)

    def move_duplicates(self, groups: list[DuplicateGroup], dest: str | Path) -> str:
        """Move every file of ``groups`` but the keepers under ``dest`` (keeping folder structure); the
        index follows them. Nothing is deleted. Returns the manifest that ``undo_duplicate_moves`` reverses."""
        from .duplicates import changed_since_found, follower, manifest_key, move_files, plan_moves
        from .ids import image_id

        if not isinstance(dest, (str, os.PathLike)) or not str(dest).strip():
            raise ConfigError(f"move_duplicates needs the folder to move the copies to, got {dest!r}")
        self.lock_for_writing()
        roots = self.store.roots()
        moves = plan_moves(groups, str(dest), roots, self.config.local_dir)
        store = self.store
        changed = changed_since_found(groups, lambda path: store.image_metadata([image_id(path)]).get(image_id(path)))
        if changed:
            raise ConfigError(f"nothing moved: {len(changed)} file(s) changed since the duplicates were found "
                              f"({', '.join(os.path.basename(p) for p in changed[:3])}); run `mmsearch index`, "
                              "then find duplicates again")
        try:
            return move_files(moves, os.path.abspath(os.path.expanduser(str(dest))), follower(self.store),
                              manifest_key(self.config.local_dir), roots)
        finally:
            self._moved()

    def undo_duplicate_moves(self, manifest: str | Path) -> tuple[int, list[str]]:
        """Put back the files a ``move_duplicates`` manifest moved; returns (moved back, left where they are).
        Only what this index moved goes back (``mmsearch.duplicates.undo_moves``).

        Raises:
            ConfigError: the manifest is unreadable, not a duplicates manifest, or not signed by this index.
        """
        from .duplicates import follower, manifest_key, read_manifest, undo_moves

        key = manifest_key(self.config.local_dir)
        entries = read_manifest(str(manifest), key)  # a bad manifest is told as such, before the index is opened
        self.lock_for_writing()
        store = self.store

        def recorded(image: str) -> str | None:
            return store.image_metadata([image]).get(image, {}).get("path")

        try:
            return undo_moves(entries, follower(store), recorded, store.roots())
        finally:
            self._moved()

    def _moved(self) -> None:
        """Files moved with their records: the keyword index (names, folders) and the counts are stale."""
        self.store.touch()
        self.session.changed()

    def facets(self) -> dict[str, Any]:
        """Values the filters can take.

        Returns:
            ``folders``: every folder that holds images at any depth, from the indexed roots down (so a
            parent such as ``/usr/share/doc`` can be picked, not only the leaves); ``folder_counts``: images
            under each of them; ``cameras``: the cameras seen.
        """
        from .info import facets

        return facets(self.session)

    def stats(self) -> dict[str, Any]:
        """What the index holds: counts, models, indexed folders, last update (unix time)."""
        from .info import stats

        return stats(self.session)
