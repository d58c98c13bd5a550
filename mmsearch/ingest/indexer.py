"""Indexing: walk folders, diff against the store, decode and encode in batches, upsert, report."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import signal
import stat
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..encoders import Encoders, PreparingImageEncoder
from ..encoders.sparse import pack
from ..errors import ConfigError, ImageReadError, first_line
from ..ids import image_id
from ..media.captions import Manifest, load_manifest, merge_captions, sidecar_captions
from ..media.files import decode_file, read_for_ocr
from ..media.images import (
    ImageInfo,
    detail,
    hash_file,
    layout_vector,
    look_print,
    perceptual_hash,
    read_capped,
)
from ..media.kinds import is_video, kind_of
from ..media.kinds.video import read_video
from ..media.ocr import OcrEngine, OcrText
from ..media.places import locate
from ..paths import folders_of, within_any
from ..records import IndexReport
from ..store.client import Entry, FrameSet, OcrRecord, Store
from .decoders import ProcessDecoder, decode_bytes, failure, use_processes
from .meter import Meter
from .pipeline import Batch, Writer, run_batches
from .progress import ProgressCallback, stored
from .scan import scan

if TYPE_CHECKING:
    from ..config import Config
    from ..session import IndexSession

logger = logging.getLogger(__name__)

LAYOUT_DECODE_SIDE = 64  # decode size when no image model reads the pixels (offline profile: layout vectors)


@dataclass(frozen=True)
class Candidate:
    """An image file found on disk, with what decides whether it must be (re)encoded."""

    path: str
    size: int
    mtime_ns: int
    captions: list[tuple[str, str]]  # (text, source) from sidecars and the manifest
    caption_sig: str
    text_only: bool = False  # indexed and unchanged; only the text in it is to be read (OCR turned on)


@dataclass
class Prepared:
    """A decoded image ready for the encoder."""

    candidate: Candidate
    image: Any  # PIL.Image.Image, or None once ``pixels`` holds the model's input
    info: ImageInfo
    sha256: str
    phash: str = ""  # perceptual hash (images.perceptual_hash), for near-duplicates
    look: str = ""  # its small thumbnails (images.look_print), the duplicate rule's second view
    captions: list[str] = field(default_factory=list)  # all of them, as stored
    pixels: np.ndarray | None = None  # the image model's preprocessed input, made in the decode worker
    ocr: OcrText | None = None  # text read in the photo (None: none found, or OCR off or failed)
    ocr_error: str = ""  # why reading its text failed ("" when it did not)
    video: VideoFacts | None = None  # a video: its sampled frames (model inputs) and container facts


@dataclass
class VideoFacts:
    """What a video adds to a ``Prepared`` item: each sampled frame's time and model input (a
    preprocessed array or a small PIL image), its length, and why frames are missing ("" when none are)."""

    times: list[float]
    inputs: list[Any]
    duration: float
    codec: str = ""
    problem: str = ""
    poster: float = 0.0  # the time of the frame with the most detail: the video's picture before any search


@dataclass(frozen=True)
class TextOnly:
    """The text read in an indexed, unchanged photo (``Candidate.text_only``)."""

    candidate: Candidate
    ocr: OcrText | None
    ocr_error: str


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count``: owns the files whose path hash falls in its share.

    Deterministic (a hash of the absolute path, nothing random or order-dependent), so N workers started
    with ``0/N`` .. ``N-1/N`` on the same paths cover every file exactly once, on any machine that sees
    the files under the same absolute paths.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` with 0 <= I < N."""
        from ..errors import ConfigError

        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"--shard takes I/N (e.g. 0/4), got {text!r}") from None
        if not 0 <= index < count:
            raise ConfigError(f"--shard {text}: I must be between 0 and N-1")
        return cls(index, count)

    def owns(self, path: str) -> bool:
        """Whether this worker indexes (and may prune) ``path``."""
        return int(image_id(path)[:12], 16) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class Indexer:
    """One index run over some paths into a store.

    Args:
        store: the opened store.
        encoders: the models.
        manifest: captions from ``--captions`` files, by absolute path.
        batch_size: images per encoder batch.
        progress: show a progress bar on stderr.
        hidden: also index hidden files and folders.
        on_progress: called with (done, total) after each stored batch (e.g. a web progress bar), in the
            writer thread.
        shard: index only this worker's share of the files (and prune only within it).
        forget_captions: drop manifest captions of files that no manifest of this run lists (by default
            they are kept until a manifest says otherwise).
        workers: decode worker threads (reading, hashing, decoding and preprocessing; Pillow and numpy
            release the GIL for the heavy parts, and no worker uses torch's thread pool).
        ocr: read the text in photos with this engine (``mmsearch.media.ocr``), in the decode workers; indexed
            photos whose text no engine of this kind has read yet get it read, without re-encoding.
        decode: ``Config.decode``; "process" hands each photo's decoding to a worker process
            (``mmsearch.ingest.decoders``).
    """

    def __init__(self, store: Store, encoders: Encoders, manifest: Manifest | None = None,
                 batch_size: int = 32, progress: bool = False, hidden: bool = False,
                 on_progress: ProgressCallback | None = None, shard: Shard | None = None,
                 forget_captions: bool = False, workers: int = 2, ocr: OcrEngine | None = None,
                 skip: Sequence[str] = (), decode: str = "auto"):
        self.workers = workers
        self.decode = decode
        self.skip = list(skip)
        self.ocr = ocr
        self.forget_captions = forget_captions
        self.store = store
        self.encoders = encoders
        self.manifest = manifest or {}
        self.batch_size = batch_size
        self.progress = progress
        self.on_progress = on_progress
        self.shard = shard
        self.hidden = hidden
        self.stop = threading.Event()  # set by Ctrl-C (or by the caller): stop after the current batch

    def run(self, paths: Sequence[str | Path], prune: bool = True) -> IndexReport:
        """Index ``paths``; returns what was added, updated, unchanged, removed and skipped.

        Ctrl-C (in the main thread) stops the run after the batch being stored; the report says
        ``interrupted`` and the same call resumes where it stopped.
        """
        report = IndexReport()
        with stop_on_sigint(self.stop), warnings_per_file(report.warnings):
            return self._run(paths, prune, report)

    def _run(self, paths: Sequence[str | Path], prune: bool, report: IndexReport) -> IndexReport:
        roots = [os.path.abspath(os.path.expanduser(str(p))) for p in paths]
        self.roots = roots
        known = self.store.entries()
        seen: set[str] = set()
        todo: list[Candidate] = []
        scanning = Meter("scanning", unit="files", enabled=self.progress)
        for path in scan(roots, report.failed, self.hidden, self.skip):
            scanning.update(1)
            if self.shard is not None and not self.shard.owns(str(path)):
                continue
            seen.add(str(path))
            entry = known.get(str(path))
            candidate = self._candidate(path, entry, report)
            if candidate is None:
                continue
            if entry is not None and _unchanged(entry, candidate):
                report.unchanged += 1
                if self.ocr is not None and _engine_kind(entry.ocr_sig) != _engine_kind(self.ocr.signature):
                    todo.append(replace(candidate, text_only=True))
            else:
                todo.append(candidate)
        scanning.close()
        # Only under roots that exist: an unmounted drive must not empty the index.
        present = [r for r in roots if os.path.exists(r)]
        gone = {p: known[p] for p in known  # paths first: the entries of the few gone only
                if p not in seen and within_any(p, present) and (self.shard is None or self.shard.owns(p))} if prune else {}
        moves = _MoveTable(gone.values())
        self._encode_all(todo, known, moves, report)
        if self.stop.is_set():
            report.interrupted = True
            return report  # no pruning: entries of files not reached yet may still be claimed as moves
        if prune:
            remaining = [e.id for e in gone.values() if not moves.claimed(e)]
            self.store.delete_images(remaining)
            report.removed = len(remaining)
        self.store.add_roots([r for r in roots if os.path.isdir(r)])
        return report

    def _candidate(self, path: Path, entry: Entry | None, report: IndexReport) -> Candidate | None:
        reason = _unusable(path)
        if reason:
            report.failed.append((str(path), reason))
            return None
        info = path.stat()
        listed = self.manifest.get(str(path))
        if listed is None:  # no manifest of this run names the file: keep what an earlier manifest said
            listed = [] if self.forget_captions or entry is None else list(entry.manifest_captions)
        captions = merge_captions([(c, "manifest") for c in listed],
                                  [(c, "sidecar") for c in sidecar_captions(path, self.roots, report.warnings)])
        sig = hashlib.sha1("\n".join(t for t, _ in captions).encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return Candidate(str(path), info.st_size, info.st_mtime_ns, captions, sig)

    def _encode_all(self, todo: list[Candidate], known: Mapping[str, Entry], moves: _MoveTable, report: IndexReport) -> None:
        """The pipeline: decode workers (read, hash, decode, shrink, preprocess) run one batch ahead of the
        model in this thread, and a writer thread stores each encoded batch while the next one is encoded."""
        # The rate is the decode workers' (with OCR, the slow stage); the summary line that follows stays.
        bar = Meter("indexing", len(todo), enabled=self.progress and bool(todo))
        # Decode only the pixels the model uses; without an image model, decode small (metadata only).
        min_side, prepare = model_input(self.encoders)
        batches = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        decoder = self._decoder(todo, moves, min_side)

        def decode(pool: ThreadPoolExecutor, batch: list[Candidate]) -> list[Future]:
            return bar.reads_of([pool.submit(_prepare, c, None if c.path in known else moves, min_side, prepare,
                                             self.ocr, decoder) for c in batch])

        def encode(batch: list[Candidate], ready: list[Prepared | TextOnly]) -> Batch:
            encoded = self._encode(ready)
            encoded.stored = functools.partial(self._stored, len(batch), len(todo), bar)
            self._count(ready, known, report)
            return encoded

        try:
            run_batches(self.store, self.workers, batches, decode,
                        lambda _batch, futures, writer: self._collect(futures, report, writer), encode, self.stop)
        finally:
            bar.close()
            if decoder is not None:
                decoder.close()

    def _decoder(self, todo: list[Candidate], moves: _MoveTable, min_side: int | None) -> Decoding | None:
        """Photos decoded in worker processes (``mmsearch.ingest.decoders``), or None: in the decode threads.
        Not while files vanished (a rename is claimed before anything is decoded) or with OCR (it reads the
        file in the thread, and is the slow stage anyway)."""
        portable, prepare = portable_input(self.encoders)
        photos = sum(not is_video(c.path) and not c.text_only for c in todo)
        if self.ocr is not None or moves or not use_processes(self.decode, photos, portable):
            return None
        logger.info("decoding %d photos in %d worker processes", photos, self.workers)
        return Decoding(ProcessDecoder(self.workers), min_side, prepare)

    def _stored(self, count: int, total: int, bar: Meter) -> None:
        """After a batch is stored (in the writer thread): the progress line and ``on_progress`` move on."""
        bar.update(count)
        stored(bar.n, total, self.on_progress, self.stop, bar.show)

    def _count(self, ready: list[Prepared | TextOnly], known: Mapping[str, Entry], report: IndexReport) -> None:
        for item in ready:
            if self.ocr is not None:
                report.ocr_read += not item.ocr_error
                report.ocr_found += item.ocr is not None
                if item.ocr_error:
                    report.ocr_failed.append((item.candidate.path, item.ocr_error))
            if isinstance(item, TextOnly):
                continue
            old = known.get(item.candidate.path)
            if item.video is not None and item.video.problem:
                report.warnings.append((item.candidate.path, item.video.problem))
            if item.info.gps_problem:
                report.warnings.append((item.candidate.path, item.info.gps_problem))
            if old is not None:
                report.updated += 1
                report.captions_removed += len(set(old.captions) - set(item.captions))
            else:
                report.added += 1
                report.videos += item.video is not None

    def _collect(self, futures: list[Future], report: IndexReport, writer: Writer) -> list[Prepared | TextOnly]:
        ready: list[Prepared | TextOnly] = []
        for future in futures:
            result = future.result()
            if isinstance(result, (Prepared, TextOnly)):
                ready.append(result)
            elif isinstance(result, Moved):
                writer.call(self.store.move, result.entry.id, image_id(result.candidate.path), _file_fields(result.candidate))
                report.moved += 1
            else:
                report.failed.append(result)
        return ready

    def _encode(self, ready: list[Prepared | TextOnly]) -> Batch:
        """Run the models over a decoded batch (in this thread); the result is stored by the writer."""
        batch = [p for p in ready if isinstance(p, Prepared)]
        vectors, frames = item_vectors(self.encoders, batch)
        captions = [merge_captions(p.candidate.captions, [(c, "embedded") for c in p.info.captions]) for p in batch]
        for item, pairs in zip(batch, captions):
            item.captions = [t for t, _ in pairs]
        texts = [t for items in captions for t, _ in items]
        caption_vectors, weights = embed_texts(self.encoders, texts)
        lexical = iter(weights)
        records, ocr_lexical = self._ocr_records(ready)
        metas = [_metadata(p, [t for t, _ in items], self._ocr_fields(p, ocr_lexical[n]), [next(lexical) for _ in items])
                 for n, p, items in zip([n for n, p in enumerate(ready) if isinstance(p, Prepared)], batch, captions)]
        out = Batch([image_id(p.candidate.path) for p in batch], vectors, metas, captions, caption_vectors,
                    ocr=[records[n] for n, p in enumerate(ready) if isinstance(p, Prepared)] if self.ocr else None,
                    frames=frames if any(f is not None for f in frames) else None)
        out.text_updates = [(image_id(p.candidate.path), self._ocr_fields(p, ocr_lexical[n]), records[n])
                            for n, p in enumerate(ready) if isinstance(p, TextOnly) and not p.ocr_error]
        return out

    def _ocr_records(self, ready: list[Prepared | TextOnly]) -> tuple[list[OcrRecord | None], list[str]]:
        """Each photo's text with its vector in the caption space (embedded like a caption), or None; and
        its packed lexical weights ("" without)."""
        vectors, weights = embed_texts(self.encoders, [p.ocr.text for p in ready if p.ocr is not None])
        found, lexical = iter(zip(vectors, weights)), []
        records: list[OcrRecord | None] = []
        for p in ready:
            vector, packed = next(found) if p.ocr is not None else (None, "")
            records.append((p.ocr.text, vector) if p.ocr is not None else None)
            lexical.append(packed)
        return records, lexical

    def _ocr_fields(self, item: Prepared | TextOnly, lexical: str = "") -> dict[str, Any]:
        """Metadata of the text read in a photo: ``ocr`` and ``ocr_confidence`` (shown in hits), ``ocr_sig``
        (which engine read it; absent when OCR was off or failed, so a later run reads it), and its lexical
        weights (``ocr_lexical``, BGE-M3 caption models only)."""
        if self.ocr is None or item.ocr_error:
            return {}
        fields: dict[str, Any] = {"ocr_sig": self.ocr.signature, "ocr": "", "ocr_confidence": 0.0, "ocr_lexical": ""}
        if item.ocr is not None:
            fields.update(ocr=item.ocr.text, ocr_confidence=item.ocr.confidence, ocr_lexical=lexical)
        return fields


@contextmanager
def stop_on_sigint(stop: threading.Event) -> Iterator[None]:
    """While indexing in the main thread, the first Ctrl-C sets ``stop``; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        logger.warning("stopping after the current batch (Ctrl-C again to stop now)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _unusable(path: Path) -> str:
    """Why a listed file cannot be indexed, or ``""``. Checked before any read, so a FIFO never blocks."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8; rename the file to index it"
    try:
        info = path.stat()
    except OSError as exc:
        return "broken symbolic link" if path.is_symlink() else f"cannot stat: {exc.strerror or exc}"
    return "" if stat.S_ISREG(info.st_mode) else "not a regular file"


@dataclass(frozen=True)
class Moved:
    """A new path whose content and captions match an entry whose file is gone: a rename."""

    candidate: Candidate
    entry: Entry


class _MoveTable:
    """Entries of vanished files by content hash; each can be claimed once, from any decode thread."""

    def __init__(self, gone: Iterable[Entry]):
        self._by_hash: dict[str, list[Entry]] = {}
        for entry in gone:
            if entry.sha256:
                self._by_hash.setdefault(entry.sha256, []).append(entry)
        self._claimed: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, sha256: str, caption_sig: str) -> Entry | None:
        with self._lock:
            for entry in self._by_hash.get(sha256, []):
                if entry.id not in self._claimed and entry.caption_sig == caption_sig:
                    self._claimed.add(entry.id)
                    return entry
        return None

    def claimed(self, entry: Entry) -> bool:
        return entry.id in self._claimed

    def __bool__(self) -> bool:
        """Whether any vanished entry could be claimed (any file vanished with a known hash)."""
        return bool(self._by_hash)


@dataclass(frozen=True)
class Decoding:
    """Where a run's photos are decoded when not in its threads: the processes, at the model's size, with
    the model's preprocessing as an object that travels to them."""

    pool: ProcessDecoder
    min_side: int | None
    prepare: Any

    def close(self) -> None:
        self.pool.close()


def _prepare(candidate: Candidate, moves: _MoveTable | None = None, min_side: int | None = None,
             prepare: Callable[[Any], np.ndarray] | None = None, ocr: OcrEngine | None = None,
             decoding: Decoding | None = None) -> Prepared | Moved | TextOnly | tuple[str, str]:
    """Read, hash and decode one file (at the size the model needs), then run the model's preprocessing
    (``prepare``) on it; a failure becomes ``(path, reason)``. Runs in a decode worker; with ``decoding``,
    a photo's CPU work is done in a worker process while this thread waits.

    A new file with the content and captions of a vanished entry is a rename: it is not decoded.
    """
    reading(candidate.path)  # warnings raised while reading this file name it
    if is_video(candidate.path):
        try:
            return _prepare_video(candidate, moves, min_side, prepare)
        except ImageReadError as exc:
            return candidate.path, str(exc)
        except MemoryError:
            return candidate.path, "out of memory while reading this video"
        except Exception as exc:  # an FFmpeg oddity on one file must not stop the run
            return candidate.path, f"cannot decode: {type(exc).__name__}: {exc}"
        finally:
            reading(None)
    try:
        if decoding is not None and not candidate.text_only:
            return _decoded_elsewhere(candidate, decoding)
        data, sha256 = read_capped(candidate.path)
        if candidate.text_only:
            return TextOnly(candidate, *_read_text(data, ocr, candidate.path))
        entry = moves.claim(sha256, candidate.caption_sig) if moves is not None else None
        if entry is not None:
            return Moved(candidate, entry)
        image, info, phash, look, pixels = decode_bytes(candidate.path, data, min_side, prepare)
        text, error = _read_text(data, ocr, candidate.path)
    except Exception as exc:  # ImageReadError, MemoryError, a Pillow bug on one odd file of 50,000
        return candidate.path, failure(exc)
    finally:
        reading(None)
    # With the model's input made, the decoded image is not needed any more.
    return Prepared(candidate, None if pixels is not None else image, info, sha256, phash, look, pixels=pixels, ocr=text,
                    ocr_error=error)


def _decoded_elsewhere(candidate: Candidate, decoding: Decoding) -> Prepared | tuple[str, str]:
    """A photo decoded in a worker process; its warnings are recorded here, with its name (``reading``)."""
    result = decoding.pool.decode(candidate.path, decoding.min_side, decoding.prepare)
    if isinstance(result, str):
        return candidate.path, result
    for category, message in result.warnings:
        warnings.showwarning(message, _warning_class(category), candidate.path, 0)
    return Prepared(candidate, result.image, result.info, result.sha256, result.phash, result.look, pixels=result.pixels)


def _warning_class(name: str) -> type[Warning]:
    """The class of a warning a decode process reported by name (only its name is shown)."""
    import builtins

    found = getattr(builtins, name, None)
    return found if isinstance(found, type) and issubclass(found, Warning) else type(name, (UserWarning,), {})


def _prepare_video(candidate: Candidate, moves: _MoveTable | None, min_side: int | None,
                   prepare: Callable[[Any], np.ndarray] | None) -> Prepared | Moved | TextOnly:
    """A video: hashed as it streams (never read whole), frames sampled in time (``kinds.video``), each made
    into the model's input; its poster (the frame with the most detail) gives its pHash and look. Videos
    have no text read (``TextOnly`` marks one as read when OCR is turned on)."""
    sha256 = hash_file(candidate.path)
    if candidate.text_only:
        return TextOnly(candidate, None, "")
    entry = moves.claim(sha256, candidate.caption_sig) if moves is not None else None
    if entry is not None:
        return Moved(candidate, entry)
    video = read_video(candidate.path, min_side)
    times = [t for t, _ in video.frames]
    pictures = [p for _, p in video.frames]
    best = max(range(len(pictures)), key=lambda n: detail(pictures[n]))
    poster = pictures[best]
    facts = VideoFacts(times, [prepare(p) for p in pictures] if prepare is not None else pictures,
                       video.info.duration, video.info.codec, video.problem, times[best])
    info = ImageInfo(video.info.width, video.info.height, video.info.taken, None, [], video.info.lat, video.info.lon)
    return Prepared(candidate, poster, info, sha256, perceptual_hash(poster), look_print(poster), video=facts)


def decode_for_model(path: str, min_side: int | None, prepare: Callable[[Any], np.ndarray] | None) -> Any:
    """A file decoded at the size the image model needs, and made into its input when it has a
    ``prepare`` step (``record_vectors`` takes either, or a video's ``VideoFacts``). Raises
    ``ImageReadError`` and Pillow's errors."""
    if is_video(path):
        video = read_video(path, min_side)
        pictures = [p for _, p in video.frames]
        return VideoFacts([t for t, _ in video.frames], [prepare(p) for p in pictures] if prepare is not None else pictures,
                          video.info.duration, video.info.codec, video.problem)
    image, _ = decode_file(path, read_capped(path)[0], min_side)
    return prepare(image) if prepare is not None else image


def model_input(encoders: Encoders) -> tuple[int | None, Callable[[Any], np.ndarray] | None]:
    """(the decode size, the preprocessing step for the decode workers) of these encoders' image model."""
    image = encoders.image
    min_side = getattr(image, "input_size", None) if image is not None else LAYOUT_DECODE_SIDE
    return min_side, image.prepare if isinstance(image, PreparingImageEncoder) else None


def portable_input(encoders: Encoders) -> tuple[bool, Any]:
    """(whether photos can be prepared in a decode process, the preprocessing that travels there: None
    without an image model, whose layout vectors are made from the small decoded image)."""
    image = encoders.image
    if image is None:
        return True, None
    portable = getattr(image, "portable_prepare", None) if isinstance(image, PreparingImageEncoder) else None
    return portable is not None, portable


ENCODE_CHUNK = 256  # model inputs encoded at once (a batch of videos holds up to 32 frames each)


def item_vectors(encoders: Encoders, items: Sequence[Prepared]) -> tuple[np.ndarray, list[FrameSet | None]]:
    """The record vector of each decoded item, and each video's frames (``record_vectors``)."""
    return record_vectors(encoders, [p.video if p.video is not None else p.pixels if p.pixels is not None else p.image
                                     for p in items])


def record_vectors(encoders: Encoders, decoded: Sequence[Any]) -> tuple[np.ndarray, list[FrameSet | None]]:
    """The record vector of each decoded file (a model input, or a video's ``VideoFacts``), and each video's
    frames. A photo's vector is its image's; a video's is the unit mean of its frames' (what "more like
    this" and duplicates compare), and its frames keep their own vectors for search (None for photos, and
    without an image model, whose layout vectors are never searched)."""
    inputs = [x for d in decoded for x in (d.inputs if isinstance(d, VideoFacts) else [d])]
    rows = np.concatenate([image_vectors(encoders, inputs[start:start + ENCODE_CHUNK])
                           for start in range(0, len(inputs), ENCODE_CHUNK)] or [np.zeros((0, encoders.dim), np.float32)])
    vectors, frames, at = [], [], 0
    for item in decoded:
        count = len(item.inputs) if isinstance(item, VideoFacts) else 1
        own = rows[at:at + count]
        at += count
        if not isinstance(item, VideoFacts):
            vectors.append(own[0])
            frames.append(None)
            continue
        mean = own.mean(axis=0)
        vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        frames.append((item.times, own) if encoders.image is not None else None)
    return np.asarray(vectors, dtype=np.float32).reshape(len(decoded), encoders.dim), frames


def image_vectors(encoders: Encoders, decoded: Sequence[Any]) -> np.ndarray:
    """Image vectors of decoded files: model inputs made by ``prepare`` (arrays) or PIL images. Without
    an image model, each file's colour layout keeps its record (see ``images.layout_vector``)."""
    image, dim = encoders.image, encoders.dim
    if not decoded:
        return np.zeros((0, dim), np.float32)
    if image is not None and all(isinstance(d, np.ndarray) for d in decoded):
        return image.encode_prepared(np.stack(decoded))  # type: ignore[attr-defined]
    if image is not None:
        return image.encode_images(list(decoded))
    return np.asarray([layout_vector(d, dim) for d in decoded], dtype=np.float32)


def _read_text(data: bytes, ocr: OcrEngine | None, path: str = "") -> tuple[OcrText | None, str]:
    """The text in a photo and ``""``, or None and why reading it failed; a failure never stops the run
    (the photo is indexed without text, and a later run tries again)."""
    if ocr is None:
        return None, ""
    try:
        return ocr.read(read_for_ocr(data, ocr.side, path)), ""
    except MemoryError:
        return None, "OCR: out of memory"
    except Exception as exc:  # an engine error on one odd photo must not stop the run
        return None, f"OCR: {type(exc).__name__}: {first_line(exc)}"


def _engine_kind(signature: str) -> str:
    """``rapidocr`` of ``rapidocr-1.4.4/960``: another version or size does not read the library again."""
    return signature.split("-", 1)[0].split("/", 1)[0]


_current = threading.local()  # the file a decode thread is reading, for warnings raised meanwhile


def reading(path: str | None) -> None:
    """Name the file this decode thread reads now (None: no file), so a warning raised meanwhile names it."""
    _current.path = path


@contextmanager
def warnings_per_file(found: list[tuple[str, str]]) -> Iterator[None]:
    """Pillow's warnings during a run (e.g. "Corrupt EXIF data") are recorded with the file that raised
    them, every time, instead of being printed once without a name in the middle of the progress bar."""
    lock = threading.Lock()
    seen: set[tuple[str, str]] = set(found)

    with warnings.catch_warnings():
        warnings.filterwarnings("always", module=r"PIL(\.|$)")
        previous = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                 line: str | None = None) -> None:
            path = getattr(_current, "path", None)
            if path is None:
                previous(message, category, filename, lineno, file, line)
                return
            item = (path, f"{category.__name__}: {message}")
            with lock:
                if item not in seen:  # the same file read twice (for the model and for OCR) warns once
                    seen.add(item)
                    found.append(item)

        warnings.showwarning = show
        yield


def path_fields(path: str) -> dict[str, Any]:
    """Metadata that depends on the file's path only (what a move changes)."""
    where = Path(path)
    return {"path": path, "name": where.name, "folder": str(where.parent), "folders": folders_of(path)}


def _file_fields(c: Candidate) -> dict[str, Any]:
    """Metadata that depends on the file's path and stat (all that changes when a file is renamed)."""
    return {**path_fields(c.path), "size": c.size, "mtime_ns": str(c.mtime_ns), "caption_sig": c.caption_sig}


def embed_texts(encoders: Encoders, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """Captions or photo texts embedded by the caption model (else the text model), with their lexical
    weights packed for the metadata (``encoders.sparse``; "" each unless the model is BGE-M3)."""
    captioner = encoders.captions
    if not texts:
        return np.zeros((0, captioner.dim), np.float32), []
    if not getattr(captioner, "has_lexical", False):
        return captioner.encode_texts(texts), [""] * len(texts)
    vectors, weights = captioner.encode_with_lexical(texts)  # type: ignore[attr-defined]
    return vectors, [pack(w) for w in weights]


def _metadata(item: Prepared, captions: list[str], ocr: dict[str, Any], lexical: list[str] | None = None) -> dict[str, Any]:
    c, info = item.candidate, item.info
    meta: dict[str, Any] = {
        **_file_fields(c), **ocr, "sha256": item.sha256, "phash": item.phash, "look": item.look, "width": info.width,
        "height": info.height,
        "date": int(info.taken.timestamp()) if info.taken else c.mtime_ns // 1_000_000_000,
        "date_source": "exif" if info.taken else "mtime",
    }
    if info.taken:
        meta["taken"] = info.taken.isoformat(sep=" ")
    if info.camera:
        meta["camera"] = info.camera
    if info.lat is not None and info.lon is not None:
        meta["lat"], meta["lon"] = info.lat, info.lon
        place = locate(info.lat, info.lon)
        if place is not None:
            meta.update(place.fields())
    kind = kind_of(c.path)
    if kind is not None:
        meta["kind"] = kind.name
    if item.video is not None:
        meta.update(duration=round(item.video.duration, 3), frames=len(item.video.times), codec=item.video.codec,
                    poster=item.video.poster)
    if captions:
        meta["captions"] = captions
    if lexical and any(lexical):
        meta["lexical"] = lexical  # one packed string per caption (BGE-M3 caption models)
    manifest = [t for t, source in c.captions if source == "manifest"]
    if manifest:
        meta["manifest_captions"] = manifest
    return meta


def _unchanged(entry: Entry, candidate: Candidate) -> bool:
    return (entry.size == candidate.size and entry.mtime_ns == str(candidate.mtime_ns)
            and entry.caption_sig == candidate.caption_sig)


def index_into(session: IndexSession, paths: Sequence[str | Path] | str | Path, *,
               captions: str | Path | Sequence[str | Path] | None = None, batch_size: int | None = None,
               prune: bool = True, progress: bool = False, hidden: bool = False,
               on_progress: ProgressCallback | None = None, shard: Shard | str | None = None,
               forget_captions: bool = False, workers: int | None = None) -> IndexReport:
    """One index run into a session's store with its models (``SearchEngine.index`` documents the options;
    the caller holds the writer lock)."""
    if paths is None or (not isinstance(paths, (str, os.PathLike)) and not all(isinstance(p, (str, os.PathLike))
                                                                            for p in paths)):
        raise ConfigError(f"index takes folders or image files (paths), got {paths!r}")
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    missing = [str(p) for p in paths if not os.path.lexists(os.path.expanduser(str(p)))]
    if missing:
        more = f" (and {len(missing) - 1} more paths)" if len(missing) > 1 else ""
        raise ConfigError(f"{missing[0]} does not exist{more}")
    manifest: dict[str, list[str]] = {}
    for manifest_path in [captions] if isinstance(captions, (str, Path)) else (captions or []):
        for key, values in load_manifest(manifest_path).items():
            manifest.setdefault(key, []).extend(values)
    config, store, encoders = session.config, session.store, session.encoders
    store.create(session.signature, encoders.dim, config.models() if session.encoders_from_config else None)
    session.check_caption_space()
    indexer = Indexer(store, encoders, manifest, batch_size or config.index_batch_size, progress, hidden,
                      on_progress, Shard.parse(shard) if isinstance(shard, str) else shard, forget_captions,
                      workers=workers or config.decode_workers, ocr=session.ocr_for_run(store), decode=config.decode,
                      skip=database_folders(config))
    followed = session.follow_first_run()  # a new library: its keyword index from the run's own writes
    try:
        report = indexer.run(paths, prune=prune)
    finally:
        followed()
    session.changed()
    return report


def database_folders(config: Config) -> list[str]:
    """The folders an index run never enters: the database and the index's own files (its thumbnails)."""
    return [folder for folder in dict.fromkeys([config.db if not config.chroma_url else "", config.local_dir])
            if folder]
