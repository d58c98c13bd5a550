"""Changing an index's models without downtime: ``mmsearch reindex``.

The new models' collections (a generation, see ``mmsearch.store.client``) are built beside the active ones while
searches go on against those:

- images are encoded again from their files only when the image model (or the dimension) changes; otherwise
  their vectors are copied;
- captions and the text read in photos are stored, so they are embedded again from the store when the
  caption model changes, and copied otherwise; feedback marks get their queries embedded by the new text
  model;
- a final incremental pass indexes the files that changed meanwhile (and prunes the gone ones), then the
  pointer switches in one metadata write. A reader sees the old generation or the new one, never a
  half-built one.

Each image record is written after its captions and text (``Store.put``), so a run stopped anywhere (kill -9,
Ctrl-C) resumes with what is missing. The old generation stays until ``drop_previous``; ``rollback``
switches back to it. (Elasticsearch, Qdrant and Milvus do the same with aliases; Chroma has none.)
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, ImageReadError, ReindexError, first_line
from ..ids import caption_id
from ..paths import within_any
from ..records import IndexReport, ReindexReport
from .meter import Meter
from .pipeline import Batch, run_batches
from .progress import stored

if TYPE_CHECKING:
    from ..config import Config
    from ..encoders import Encoders
    from ..session import IndexSession
    from ..store.client import Store
    from .progress import ProgressCallback

Page = list[tuple[str, dict]]  # (image id, stored metadata) of images still to carry over


class Reindexer:
    """One reindex of an index into a session's models (see the module docstring).

    Args:
        session: a session whose config names the new models; settings it leaves out are the index's.
        batch_size: images per encoder batch.
        workers: decode workers (when images are encoded again).
        progress: show a progress bar on stderr.
        allow_failed: switch even when some files could not be read again (they leave the index).
    """

    def __init__(self, session: IndexSession, batch_size: int, workers: int, progress: bool = False,
                 allow_failed: bool = False, on_progress: ProgressCallback | None = None):
        from ..store.client import Store

        self.session, self.batch_size, self.workers = session, batch_size, workers
        self.progress, self.allow_failed, self.on_progress = progress, allow_failed, on_progress
        self.source = Store.from_config(session.config)  # the active generation
        self.stop = threading.Event()  # set by Ctrl-C or by the caller: stop after the current batch
        self.done = 0

    def run(self) -> ReindexReport:
        """Build, pass, switch; Ctrl-C stops after the batch being stored (``interrupted``)."""
        from ..store.collections import generation_name
        from .indexer import stop_on_sigint, warnings_per_file

        started = time.perf_counter()
        source, session = self.source, self.session
        old = source.signature()
        if old is None:
            raise ConfigError(f"the index at {source.path} is empty: index it with `mmsearch index` and these models")
        session.adopt_models(source)  # settings the session leaves out stay the index's
        encoders = session.encoders
        new = {**session.signature, "dim": encoders.dim}
        generation = generation_name(new, encoders.dim)
        report = ReindexReport(new, generation, source.generation)
        if all(old[k] == new[k] for k in ("image_model", "text_model", "caption_model", "dim")):
            report.unchanged = True
            return report
        source.set_pointer(building=generation)
        target = source.beside(generation)
        target.create(session.signature, encoders.dim, session.config.models() if session.encoders_from_config else None)
        target.set_ocr_setting(source.ocr_setting())
        target.add_roots(source.roots())
        # Pillow's warnings ("Corrupt EXIF data") were reported when the files were indexed: not again here.
        with stop_on_sigint(self.stop), warnings_per_file([]):
            self._carry_over(target, encoders, old, report)
            if not self.stop.is_set():
                report.marks = self._carry_marks(target, encoders)
                self._carry_albums(target, encoders)
                report.final = self._final_pass(target, encoders, report)
        report.interrupted = self.stop.is_set() or (report.final is not None and report.final.interrupted)
        if not report.interrupted:
            self._switch(target, report)
        report.seconds = time.perf_counter() - started
        return report

    # -- carrying the records over ------------------------------------------------------------------

    def _carry_over(self, target: Store, encoders: Encoders, old: dict[str, Any], report: ReindexReport) -> None:
        """Every image of the active generation into the new one, batch by batch, skipping those a stopped
        run already stored; the decode workers read the next batch's files while this one is encoded."""
        from .indexer import decode_for_model, model_input

        images_changed = old["image_model"] != report.models["image_model"] or old["dim"] != report.models["dim"]
        texts_changed = old["caption_model"] != report.models["caption_model"]
        total = self.source.count()
        bar = Meter("reindexing", total, enabled=self.progress)
        advance = functools.partial(self._advance, bar, total)
        min_side, prepare = model_input(encoders)

        def decode(pool: ThreadPoolExecutor, page: Page) -> list[Future]:
            paths = [meta["path"] for _, meta in page] if images_changed else []
            return bar.reads_of([pool.submit(_decode, path, min_side, prepare, decode_for_model) for path in paths])

        def encode(page: Page, decoded: list[Any] | None) -> Batch:
            batch = self._batch(page, decoded, encoders, texts_changed, report)
            batch.stored = functools.partial(advance, len(page))
            return batch

        try:
            run_batches(target, self.workers, self._missing(target, report, advance), decode,
                        lambda _page, futures, _writer: [f.result() for f in futures] if images_changed else None,
                        encode, self.stop)
        finally:
            bar.close()

    def _advance(self, bar: Meter, total: int, count: int) -> None:
        """``count`` more images are in the new collections (in the writer thread, after a stored batch)."""
        bar.update(count)
        self.done += count
        stored(self.done, total, self.on_progress, self.stop, bar.show)

    def _missing(self, target: Store, report: ReindexReport, advance: Callable[[int], None]) -> Iterator[Page]:
        """Batches of the active generation's images that the new one lacks."""
        for ids, metas in self.source.pages():
            have = target.existing(ids)
            report.resumed += len(have)
            advance(len(have))
            page = [(i, m) for i, m in zip(ids, metas) if i not in have]
            for start in range(0, len(page), self.batch_size):
                yield page[start:start + self.batch_size]

    def _batch(self, page: Page, decoded: list[Any] | None, encoders: Encoders, texts_changed: bool,
               report: ReindexReport) -> Batch:
        """One batch for ``Store.put``: image vectors encoded (``decoded`` given) or copied, texts embedded
        again or copied."""
        from .indexer import embed_texts, record_vectors

        if decoded is not None:
            kept = [n for n, d in enumerate(decoded) if not isinstance(d, _Failure)]
            report.failed.extend((page[n][1]["path"], decoded[n].reason) for n in range(len(page)) if n not in kept)
            page = [page[n] for n in kept]
            vectors, frames = record_vectors(encoders, [decoded[n] for n in kept])
            report.images_encoded += len(page)
        else:
            stored = self.source.image_vectors([i for i, _ in page])
            vectors = np.asarray([stored[i] for i, _ in page], dtype=np.float32).reshape(len(page), -1)
            sets = self.source.frame_sets([i for i, m in page if m.get("kind") == "video"])
            frames = [sets.get(i) for i, _ in page]
            report.images_copied += len(page)
        ids = [i for i, _ in page]
        captions = self.source.caption_sources(ids)
        pairs = [captions.get(i, []) for i in ids]
        ocr = self.source.ocr_records(ids)
        texts = [text for items in pairs for text, _ in items] + [ocr[i][0] for i in ids if i in ocr]
        metas = [m for _, m in page]
        if texts_changed:  # new vectors, and new lexical weights (BGE-M3) or none
            embedded, packed = embed_texts(encoders, texts)
            metas = _relexical(metas, [len(items) for items in pairs], [i in ocr for i in ids], packed)
            report.texts_embedded += len(texts)
        else:
            copied = self.source.caption_vectors_by_id([caption_id(i, n) for i, items in zip(ids, pairs)
                                                        for n in range(len(items))])
            rows = [copied[caption_id(i, n)] for i, items in zip(ids, pairs) for n in range(len(items))]
            rows += [ocr[i][1] for i in ids if i in ocr]
            embedded = np.asarray(rows, dtype=np.float32).reshape(len(texts), encoders.captions.dim)
            report.texts_copied += len(texts)
        count = sum(len(items) for items in pairs)
        text_vectors = iter(embedded[count:])
        records = [(ocr[i][0], next(text_vectors)) if i in ocr else None for i in ids]
        return Batch(ids, vectors, metas, pairs, embedded[:count], records,
                     frames=frames if any(f is not None for f in frames) else None)

    def _carry_marks(self, target: Store, encoders: Encoders) -> int:
        """The feedback marks, their query vectors embedded by the new text model."""
        from ..ids import mark_id
        from ..store.client import FeedbackStore

        marks = FeedbackStore(self.source).all()
        if marks:
            vectors = encoders.text.encode_texts([str(m["query"]) for m in marks])
            destination = FeedbackStore(target)
            for meta, vector in zip(marks, vectors):
                destination.add(mark_id(str(meta["query"]), str(meta["image_id"])), vector, meta)
        return len(marks)

    def _carry_albums(self, target: Store, encoders: Encoders) -> None:
        """The albums, their queries embedded by the new text model (their photos are computed again once
        the new models answer)."""
        from ..store.client import AlbumStore

        albums = AlbumStore(self.source).all()
        destination = AlbumStore(target)
        for album_id, meta in albums.items():
            query = str(meta.get("query") or "")
            vector = encoders.text.encode_texts([query])[0] if query else np.eye(1, encoders.dim, dtype=np.float32)[0]
            destination.put(album_id, vector, meta)

    def _final_pass(self, target: Store, encoders: Encoders, report: ReindexReport) -> IndexReport:
        """Index the indexed folders into the new generation: files changed since they were last indexed
        (or during this run) are encoded, new ones added, gone ones pruned."""
        from ..media.ocr import load_ocr
        from .indexer import Indexer

        roots = target.roots()
        if not roots:
            return IndexReport()
        setting = target.ocr_setting()
        hidden = any("/." in path for path in target.entries())  # the indexed folders' hidden files stay
        indexer = Indexer(target, encoders, None, self.batch_size, self.progress, hidden, workers=self.workers,
                          ocr=load_ocr(setting) if setting else None)
        indexer.stop = self.stop
        present = [r for r in roots if os.path.exists(r)]
        if report.failed and not self.allow_failed:
            unreadable = [(p, r) for p, r in report.failed if os.path.exists(p) or not within_any(p, present)]
            if unreadable:
                path, reason = unreadable[0]
                raise ReindexError(
                    f"{len(unreadable)} indexed files could not be read again for the new image model (first: {path}: "
                    f"{reason}); the index still answers with its old models. Make them readable (a drive not "
                    f"mounted?) and run the same command again, or add --allow-failed to switch without them")
        return indexer.run(roots, prune=True)

    def _switch(self, target: Store, report: ReindexReport) -> None:
        """Make the new generation the active one, in one write, unless another reindex switched meanwhile."""
        pointer = self.source.pointer()
        if pointer["active"] != self.source.generation:
            raise ReindexError(f"another reindex switched the index at {self.source.path} to other models "
                                     "while this one ran; run it again to re-embed into these models")
        self.source.set_pointer(active=report.generation, previous=self.source.generation, building="")
        report.switched = True
        self.session.switched_to(target)


def _relexical(metas: list[dict], captions: list[int], has_text: list[bool], packed: list[str]) -> list[dict]:
    """Image metadata with the new caption model's lexical weights: ``packed`` holds every caption's, in
    order, then every photo text's."""
    ocr = iter(packed[sum(captions):])
    start, out = 0, []
    for meta, count, text in zip(metas, captions, has_text):
        meta = {k: v for k, v in meta.items() if k not in ("lexical", "ocr_lexical")}
        mine, start = packed[start:start + count], start + count
        if any(mine):
            meta["lexical"] = mine
        if text:
            meta["ocr_lexical"] = next(ocr)
        out.append(meta)
    return out


class _Failure:
    """A file that could not be decoded again."""

    def __init__(self, reason: str):
        self.reason = reason


def _decode(path: str, min_side: int | None, prepare: Any, decode: Any) -> Any:
    """``decode_for_model`` in a decode worker; a failure becomes a ``_Failure`` with its reason."""
    from .indexer import reading

    reading(path)  # the file a warning raised while decoding belongs to
    try:
        return decode(path, min_side, prepare)
    except ImageReadError as exc:
        return _Failure(str(exc))
    except Exception as exc:  # one odd file must not stop the run
        return _Failure(f"cannot decode: {type(exc).__name__}: {first_line(exc)}")
    finally:
        reading(None)


def target_config(config: Config, given: dict[str, str], stored: dict[str, str]) -> Config:
    """The new models of a reindex: the model settings ``given`` (``MODEL_FIELDS`` and ``caption_model``),
    the index's (``stored``, ``Store.models``) for the others; the caption model, unless given, is the
    index's (adopted when the store opens). Nothing given: the index's models, so nothing changes."""
    from ..config import MODEL_FIELDS

    if not given:
        return replace(config, adopt_index_models=True, caption_model=None)
    fields = {f: stored[f] for f in MODEL_FIELDS if f in stored}
    fields.update({f: given[f] for f in MODEL_FIELDS if f in given})
    return replace(config, **fields, caption_model=given.get("caption_model"), adopt_index_models=False)


def rollback(store: Store) -> str:
    """Switch the index back to its previous models (while their collections exist); returns that
    generation. The previous models answer as of when they were replaced: ``mmsearch index`` brings
    them up to date.

    Raises:
        ReindexError: there is nothing to switch back to.
    """
    pointer = store.pointer()
    previous = pointer["previous"]
    if not previous or previous == pointer["active"] or not store.has_generation(previous):
        raise ReindexError(f"the index at {store.path} has no previous models to switch back to")
    store.set_pointer(active=previous, previous=pointer["active"])
    return previous


def drop_previous(store: Store, config: Config | None = None) -> list[str]:
    """Delete the collections of the previous models and of an abandoned reindex, and (given the
    ``config``) their keyword index files; returns their generations. The active ones are never touched.
    ``rollback`` is impossible afterwards."""
    from ..store.collections import FIRST

    pointer = store.pointer()
    dropped = [g for g in {pointer["previous"], pointer["building"]}
               if g and g != pointer["active"] and store.has_generation(g)]
    for generation in dropped:
        store.drop_generation(generation)
        if config is not None:
            for path in config.keyword_files("" if generation == FIRST else generation):
                path.unlink(missing_ok=True)
    store.set_pointer(previous="", building="")
    return sorted(dropped)
