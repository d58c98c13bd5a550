"""The indexing pipeline: ``run_batches`` (the loop of ``index`` and ``reindex``), the writer thread that
stores encoded batches while the model encodes the next ones, and the balance between torch's threads and
the decode workers."""

from __future__ import annotations

import functools
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from ..store.client import FrameSet, OcrRecord, Store

T = TypeVar("T")  # one batch of work as the caller describes it (candidates, a page of records)


@dataclass
class Batch:
    """One encoded batch, as ``Store.put`` takes it."""

    ids: list[str]
    vectors: np.ndarray
    metas: list[dict[str, Any]]
    captions: list[list[tuple[str, str]]]
    caption_vectors: np.ndarray
    ocr: list[OcrRecord | None] | None = None  # text read in each photo (None: OCR off in this run)
    text_updates: list[tuple[str, dict, OcrRecord | None]] = field(default_factory=list)  # ``Store.set_ocr``
    frames: list[FrameSet | None] | None = None  # each video's sampled frames (None for photos, or no videos)
    stored: Callable[[], None] | None = None  # called in the writer thread once the batch is stored

    @classmethod
    def join(cls, batches: list[Batch]) -> Batch:
        """Several batches as one (the writer stores batches that queued up behind a slow write in one call)."""
        if len(batches) == 1:
            return batches[0]
        callbacks = [b.stored for b in batches if b.stored is not None]
        ocr = None if any(b.ocr is None for b in batches) else [r for b in batches for r in b.ocr]  # type: ignore[union-attr]
        frames = [f for b in batches for f in (b.frames or [None] * len(b.ids))]
        return cls([i for b in batches for i in b.ids], np.concatenate([b.vectors for b in batches]),
                   [m for b in batches for m in b.metas], [c for b in batches for c in b.captions],
                   np.concatenate([b.caption_vectors for b in batches]), ocr,
                   text_updates=[u for b in batches for u in b.text_updates],
                   frames=frames if any(f is not None for f in frames) else None,
                   stored=functools.partial(_call_all, callbacks))


def _call_all(functions: list[Callable[[], None]]) -> None:
    for function in functions:
        function()


class Writer:
    """Stores encoded batches, in order, in its own thread, so the model never waits for the store.

    At most ``depth`` jobs wait (memory stays flat; the model waits only when the store is the slower
    side). Batches that queued up behind a slow write are stored in one ``Store.put``, which pays a
    write's fixed cost once. Each put keeps ``Store.put``'s guarantee (an image record exists only once
    all its captions do), so kill -9 and Ctrl-C resume exactly as before. A failed write stops the run:
    the next ``put``/``call``/``close`` raises it.
    """

    def __init__(self, store: Store, depth: int = 2):
        self.store = store
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._drop = False
        self._thread = threading.Thread(target=self._loop, name="mmsearch-writer", daemon=True)
        self._thread.start()

    def put(self, batch: Batch) -> None:
        """Queue a batch for ``Store.put``; its ``stored`` callback runs once it is stored."""
        self._submit(batch)

    def call(self, function: Callable[..., Any], *args: Any) -> None:
        """Queue another store write, kept in order with the batches (e.g. ``Store.move``)."""
        self._submit(lambda: function(*args))

    def close(self, drain: bool = True) -> None:
        """Wait for the queued writes (or, with ``drain=False``, only the one in progress); raise a failure."""
        self._drop = self._drop or not drain
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        if drain:
            self._raise()

    def _submit(self, job: Batch | Callable[[], None]) -> None:
        self._raise()
        self._jobs.put(job)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if isinstance(job, Batch):
                batches, job = self._queued_batches(job)
                self._run(functools.partial(self._store, Batch.join(batches)))
            if job is None:
                return
            if job is not _NOTHING:
                self._run(job)

    def _queued_batches(self, first: Batch) -> tuple[list[Batch], Any]:
        """``first`` and the batches queued right behind it; then the next other job, or ``_NOTHING``."""
        batches = [first]
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return batches, _NOTHING
            if not isinstance(job, Batch):
                return batches, job
            batches.append(job)

    def _run(self, job: Callable[[], None]) -> None:
        if self._error is None and not self._drop:
            try:
                job()
            except BaseException as exc:  # raised in the indexing thread at its next put/close
                self._error = exc

    def _store(self, batch: Batch) -> None:
        if batch.ids:
            self.store.put(batch.ids, batch.vectors, batch.metas, batch.captions, batch.caption_vectors, batch.ocr,
                           batch.frames)
        if batch.text_updates:
            ids, updates, records = (list(v) for v in zip(*batch.text_updates))
            self.store.set_ocr(ids, updates, records)
        if batch.stored is not None:
            batch.stored()


_NOTHING = object()  # the writer's queue held no other job


class ThreadBalance:
    """Gives torch's intra-op threads the cores while the model is the slower stage, and one thread while
    the decode workers are (a near-free model, or a GPU doing the work).

    Decode workers and torch's threads share the cores. When the model sets the pace (ViT-B-32 on a CPU)
    it should have all of them; the workers need a small share. When the workers set the pace, torch's
    extra threads only spin and take CPU from decoding: on 2 cores, with a near-free model, one torch
    thread indexed 155 -> 197 images/s. The indexer reports, per batch, how long it waited for the
    workers and how long the model ran; the balance switches with hysteresis and is restored at the end.
    Does nothing when torch was never imported (no torch model in the process).
    """

    WINDOW = 3  # batches looked at

    def __init__(self) -> None:
        self._torch = sys.modules.get("torch")
        self.full = self._torch.get_num_threads() if self._torch is not None else 1
        self.current = self.full
        self._recent: list[tuple[float, float]] = []

    def update(self, waited: float, encoded: float) -> None:
        """After a batch: seconds spent waiting for decoded images, seconds spent in the models."""
        if self._torch is None or self.full == 1:
            return
        self._recent = (self._recent + [(waited, encoded)])[-self.WINDOW:]
        wait, work = (sum(v) for v in zip(*self._recent))
        if self.current > 1 and wait > 2 * work:
            self._set(1)
        elif self.current == 1 and work > wait:
            self._set(self.full)

    def restore(self) -> None:
        """Give torch its thread count back."""
        if self._torch is not None and self.current != self.full:
            self._set(self.full)

    def _set(self, threads: int) -> None:
        assert self._torch is not None
        self._torch.set_num_threads(threads)
        self.current = threads


def run_batches(store: Store, workers: int, batches: Iterable[T], decode: Callable[[ThreadPoolExecutor, T], list[Future]],
                collect: Callable[[T, list[Future], Writer], Any], encode: Callable[[T, Any], Batch],
                stop: threading.Event) -> None:
    """The loop of ``index`` and ``reindex``: the decode workers read the next batch's files while the model
    encodes this one in the calling thread, and a writer thread stores each encoded batch.

    For each batch, ``decode`` submits its files to the pool, ``collect`` waits for them (and may queue
    other writes on the writer), ``encode`` runs the models and returns what to store (its ``stored``
    callback runs in the writer thread). Torch's threads are balanced against the workers by how long
    each stage took. When ``stop`` is set, the batch in hand is finished and the decoding of the next one
    is cancelled; on an error, only the write in progress completes (queued ones are redone next run).
    """
    writer, balance = Writer(store), ThreadBalance()
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="mmsearch-decode") as pool:
            items = iter(batches)

            def start(item: T | None) -> tuple[T, list[Future]] | None:
                return None if item is None else (item, decode(pool, item))

            pending = start(next(items, None))
            while pending is not None and not stop.is_set():
                item, futures = pending
                pending = start(next(items, None))  # the workers decode the next batch while this one is encoded
                waited = time.perf_counter()
                collected = collect(item, futures, writer)
                encoding = time.perf_counter()
                writer.put(encode(item, collected))
                balance.update(encoding - waited, time.perf_counter() - encoding)
            for future in pending[1] if pending is not None else []:
                future.cancel()
        writer.close()  # the last batches are stored before the run goes on (pruning, the report, the switch)
    except BaseException:
        writer.close(drain=False)
        raise
    finally:
        balance.restore()
