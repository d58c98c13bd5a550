"""Decoding photos in worker processes, for the decode threads of an index run.

The decode threads hold the GIL for their Python parts (EXIF parsing, Pillow's glue, hashing small
files), and so does the main thread (the model's glue, Chroma's upsert, 0.6-1.4 ms per record): on many
cores, threads stop scaling. With ``MMSEARCH_DECODE=process`` each decode thread hands a photo's CPU work
(read, sha256, EXIF orientation, draft decode, shrink, perceptual hash, look print, the model's
preprocessing) to a process of its own pool and waits for the answer without the GIL. What comes back is
the model's input (a 3x224x224 float32 array, 0.6 MB), never the decoded photo.

Everything else stays in the threads, which keep every guarantee of a run: renames are claimed before
anything is decoded, videos and OCR are read there, warnings are recorded with the file that raised them
(a process sends its warnings back and the thread records them), order, Ctrl-C (the processes ignore
SIGINT; the run stops after its batch) and kill -9 (each process exits within ``PARENT_CHECK`` seconds of
its parent's end).
A process that dies on a file (a decoder's crash) is replaced, and the files it was decoding are tried once
more, each alone in a process of its own: the one that kills that too is skipped with the reason.

Threads are the default (``auto``): on a 2-core machine processes measured slower
(``benchmarks/pipeline_bench.py --images 600``: ``engine.index`` with a near-free model 128 images/s against
175 in threads; the per-file work alone 190 in a process pool against 216 in threads), and no machine
with more cores has measured them yet. ``process`` turns them on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

def use_processes(mode: str, files: int, portable: bool) -> bool:
    """Whether a run of ``files`` photos decodes them in processes: when asked for (``Config.decode``,
    ``MMSEARCH_DECODE``; "auto" means threads for now), and never without a preprocessing step that can
    travel to a process (``portable``)."""
    return portable and files > 0 and mode == "process"


@dataclass
class Decoded:
    """A photo decoded in a worker process."""

    sha256: str
    info: Any  # mmsearch.media.images.ImageInfo
    phash: str
    look: str
    pixels: np.ndarray | None  # the model's input; None without a preprocessing step (then ``image``)
    image: Any = None  # the small decoded image (no image model: layout vectors are made from it)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (category, message), as raised


def decode_photo(path: str, min_side: int | None, prepare: Any) -> Decoded | str:
    """Read, hash and decode one photo, then make the model's input; a failure is its reason. Runs in a
    worker process (and works anywhere)."""
    from ..media.images import read_capped

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data, sha256 = read_capped(path)
            image, info, phash, look, pixels = decode_bytes(path, data, min_side, prepare)
        except Exception as exc:
            return failure(exc)
    said = [(w.category.__name__, str(w.message)) for w in caught
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]  # hidden in threads too
    return Decoded(sha256, info, phash, look, pixels, None if pixels is not None else image, said)


def decode_bytes(path: str, data: bytes, min_side: int | None, prepare: Any) -> tuple[Any, Any, str, str, Any]:
    """A photo's bytes decoded at the model's size: (image, its ``ImageInfo``, perceptual hash, look print,
    the model's input or None without a preprocessing step). The work of a decode worker, thread or
    process."""
    from ..media.files import decode_file
    from ..media.images import look_print, perceptual_hash

    image, info = decode_file(path, data, min_side)
    phash, look = perceptual_hash(image), look_print(image)  # on the already small image
    return image, info, phash, look, prepare(image) if prepare is not None else None


def failure(exc: Exception) -> str:
    """Why a photo could not be read or decoded, as the run reports it: one odd file never stops a run."""
    from ..errors import ImageReadError

    if isinstance(exc, ImageReadError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory while reading or decoding this file"
    return f"cannot decode: {type(exc).__name__}: {exc}"  # e.g. a Pillow bug on one odd file


PARENT_CHECK = 0.5  # seconds between a worker's checks that the run's process is still there


def _worker_start(parent: int) -> None:
    """A worker process ignores Ctrl-C (its parent stops the run after the batch in hand) and exits as soon
    as its parent is gone: a run killed with kill -9 leaves no process behind (nor a pipe held open)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # the pid is someone else's now: the parent is gone
                os._exit(0)

    threading.Thread(target=watch, name="mmsearch-parent-watch", daemon=True).start()


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn: clean processes, children of this one (not forks of it with torch's and Chroma's threads
    # running, nor of a forkserver that would outlive it).
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start,
                               initargs=(os.getpid(),))


class ProcessDecoder:
    """A pool of decode processes shared by a run's decode threads; ``decode`` blocks its thread only."""

    def __init__(self, workers: int):
        self.workers = workers
        self._lock = threading.Lock()
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return _pool(self.workers)

    def decode(self, path: str, min_side: int | None, prepare: Any) -> Decoded | str:
        """``decode_photo`` of ``path`` in a worker process. When the pool breaks (a process died: every file
        it was decoding fails), the pool is replaced and the file is decoded again alone, in a process of
        its own, so only the file that kills its decoder is skipped."""
        pool = self._pool
        try:
            return pool.submit(decode_photo, path, min_side, prepare).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:  # the first thread to see it replaces the pool
                    logger.warning("a decode process died (reading %s or a file beside it); starting another", path)
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._start()
        alone = _pool(1)
        try:
            return alone.submit(decode_photo, path, min_side, prepare).result()
        except BrokenProcessPool:
            return "the decoder crashed on this file (its process died)"
        finally:
            alone.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            self._pool.shutdown(wait=True, cancel_futures=True)
