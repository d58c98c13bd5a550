"""The indexing pipeline: preprocessing in the decode workers (bit-identical to open_clip's), the writer
thread (order, joined batches, failures), device-aware defaults and precision."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from helpers import save_image
from PIL import Image

from mmsearch import Config, SearchEngine, StoreError
from mmsearch.encoders import PreparingImageEncoder
from mmsearch.encoders.pixels import ArrayTransform
from mmsearch.ingest.pipeline import Batch as _Batch
from mmsearch.ingest.pipeline import Writer as _Writer

SIZES = [(224, 224), (640, 480), (300, 1000), (100, 50), (225, 224), (224, 225), (1, 500), (4032, 3024)]


def _random_image(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("image_size", [64, 224])
def test_worker_preprocessing_is_bit_identical_to_open_clips_transform(image_size):
    import open_clip

    transform = open_clip.image_transform(image_size, is_train=False)
    arrays = ArrayTransform.from_torchvision(transform)
    assert arrays is not None
    for n, size in enumerate(SIZES):
        image = _random_image(size, n)
        got, want = arrays(image), transform(image).numpy()
        assert got.dtype == np.float32 and got.shape == (3, image_size, image_size)
        assert np.array_equal(got, want), size


def test_an_unknown_transform_step_is_not_guessed():
    from torchvision import transforms

    assert ArrayTransform.from_torchvision(transforms.Compose([transforms.RandomHorizontalFlip()])) is None
    assert ArrayTransform.from_torchvision(object()) is None


def test_the_open_clip_encoder_prepares_in_workers_and_encodes_the_same(tiny_encoders):
    encoder = tiny_encoders.image
    assert isinstance(encoder, PreparingImageEncoder)
    images = [_random_image(size, n) for n, size in enumerate(SIZES[:5])]
    prepared = np.stack([encoder.prepare(im) for im in images])
    assert np.array_equal(prepared, np.stack([encoder.preprocess(im).numpy() for im in images]))
    vectors = encoder.encode_prepared(prepared)
    assert vectors.dtype == np.float32 and vectors.shape == (5, encoder.dim)
    assert np.array_equal(vectors, encoder.encode_images(images))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_indexer_runs_the_model_only_on_worker_prepared_arrays(make_engine, photos, monkeypatch):
    engine = make_engine()
    encoder = engine.encoders.image
    threads, batches = set(), []
    prepare, encode = encoder.prepare, encoder.encode_prepared

    def spy_prepare(image):
        threads.add(threading.current_thread().name)
        return prepare(image)

    def spy_encode(pixels):
        batches.append((threading.current_thread().name, pixels.shape))
        return encode(pixels)

    monkeypatch.setattr(encoder, "prepare", spy_prepare)
    monkeypatch.setattr(encoder, "encode_prepared", spy_encode)
    monkeypatch.setattr(encoder, "encode_images", lambda images: pytest.fail("PIL images reached the model thread"))
    report = engine.index([photos], captions=photos / "captions.csv", batch_size=4, workers=3)
    assert report.added == 6
    assert threads and all(name.startswith("mmsearch-decode") for name in threads)
    assert [shape[0] for _, shape in batches] == [4, 2]
    assert {name for name, _ in batches} == {threading.current_thread().name}


class _RecordingStore:
    """Stands in for ``Store``: records puts and other writes, optionally slowly or failing."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None):
        self.delay, self.fail_on = delay, fail_on
        self.log: list[object] = []

    def put(self, ids, vectors, metas, captions, caption_vectors, ocr=None, frames=None) -> None:
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in ids:
            raise StoreError("cannot write the database at X: disk is full")
        assert len(ids) == len(vectors) == len(metas) == len(captions)
        self.log.append(list(ids))


def _batch(*ids: int) -> _Batch:
    return _Batch(list(ids), np.ones((len(ids), 4), np.float32), [{} for _ in ids], [[] for _ in ids],
                  np.zeros((0, 4), np.float32))


def test_the_writer_stores_in_order_and_joins_batches_that_queued_behind_a_slow_write():
    store = _RecordingStore(delay=0.05)
    writer = _Writer(store)  # type: ignore[arg-type]
    for n in range(8):
        writer.put(_batch(2 * n, 2 * n + 1))
        if n == 3:
            writer.call(store.log.append, "move")
    writer.close()
    flat = [x for entry in store.log if entry != "move" for x in entry]
    assert flat == list(range(16))
    assert store.log.index("move") > max(i for i, e in enumerate(store.log) if e != "move" and 7 in e)
    assert len(store.log) < 9  # 8 batches + 1 move, but batches that waited were written together


def test_a_failed_write_stops_the_run_and_later_batches_are_not_written():
    store = _RecordingStore(fail_on=4)
    writer = _Writer(store)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="disk is full"):
        for n in range(10):
            writer.put(_batch(2 * n, 2 * n + 1))
            time.sleep(0.01)
        writer.close()
    writer.close(drain=False)
    written = [x for entry in store.log for x in entry]
    assert 4 not in written and written == list(range(len(written)))


def test_a_store_failure_during_indexing_is_reported_and_what_was_stored_stays(make_engine, tmp_path, monkeypatch):
    folder = tmp_path / "img"
    for n in range(10):
        save_image(folder / f"{n}.png", (20 * n, 100, 200 - 15 * n))
    engine = make_engine()
    store = engine.store
    put, calls = store.put, []

    def failing_put(ids, *args):
        calls.append(len(ids))
        if len(calls) == 2:
            raise StoreError("cannot write the database at X: disk is full")
        put(ids, *args)

    monkeypatch.setattr(store, "put", failing_put)
    with pytest.raises(StoreError, match="disk is full"):
        engine.index([folder], batch_size=3)
    stored = engine.stats()["images"]
    assert stored == calls[0] and 0 < stored < 10
    monkeypatch.setattr(store, "put", put)
    report = engine.index([folder], batch_size=3)
    assert (report.added, report.unchanged) == (10 - stored, stored)


def test_batch_size_and_workers_follow_the_device_and_the_cores(monkeypatch):
    monkeypatch.delenv("MMSEARCH_BATCH_SIZE", raising=False)
    monkeypatch.delenv("MMSEARCH_WORKERS", raising=False)
    assert Config(db="x").index_batch_size == 32
    assert Config(db="x", device="cuda").index_batch_size == 256
    assert Config(db="x", device="cuda:1", batch_size=64).index_batch_size == 64
    import os

    assert Config(db="x").decode_workers == len(os.sched_getaffinity(0))
    config = Config.from_env({"MMSEARCH_WORKERS": "5", "MMSEARCH_BATCH_SIZE": "8", "MMSEARCH_PRECISION": "bf16"}, db="x")
    assert (config.decode_workers, config.index_batch_size, config.precision) == (5, 8, "bf16")
    from mmsearch import ConfigError

    with pytest.raises(ConfigError, match="workers must be at least 1"):
        Config(db="x", workers=0)
    with pytest.raises(ConfigError, match="precision must be one of"):
        Config(db="x", precision="int4")


def test_autocast_precision_runs_the_same_model_close_to_fp32(tiny_clip):
    from mmsearch.encoders.openclip import OpenClipEncoder

    fp32 = OpenClipEncoder(tiny_clip[0], tiny_clip[1])
    bf16 = OpenClipEncoder(tiny_clip[0], tiny_clip[1], precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    pixels = np.stack([fp32.prepare(_random_image(size, n)) for n, size in enumerate(SIZES)])
    a, b = fp32.encode_prepared(pixels), bf16.encode_prepared(pixels)
    assert b.dtype == np.float32 and not np.array_equal(a, b)  # it really ran in bf16
    assert np.sum(a * b, axis=1).min() >= 0.99


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda_matches_fp32_on_the_same_checkpoint(tiny_clip, tmp_path):
    from mmsearch.encoders.openclip import OpenClipEncoder

    cpu = OpenClipEncoder(tiny_clip[0], tiny_clip[1])
    cuda = OpenClipEncoder(tiny_clip[0], tiny_clip[1], device="cuda")
    assert cuda.precision == "fp16"
    pixels = np.stack([cpu.prepare(_random_image(size, n)) for n, size in enumerate(SIZES)])
    assert np.sum(cpu.encode_prepared(pixels) * cuda.encode_prepared(pixels), axis=1).min() >= 0.999


def test_indexing_uses_the_configured_workers(make_engine, photos, monkeypatch):
    import mmsearch.ingest.pipeline as pipeline

    seen = []
    real = pipeline.ThreadPoolExecutor

    def pool(workers, **kwargs):
        seen.append(workers)
        return real(workers, **kwargs)

    monkeypatch.setattr(pipeline, "ThreadPoolExecutor", pool)
    engine: SearchEngine = make_engine(workers=3)
    assert engine.index([photos]).added == 6
    assert seen == [3]


def test_progress_counts_stored_images_only(make_engine, tmp_path):
    folder = tmp_path / "img"
    for n in range(9):
        save_image(folder / f"{n}.png", (25 * n, 90, 200 - 20 * n))
    engine = make_engine()
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total, engine.store.count()))

    assert engine.index([folder], batch_size=2, on_progress=progress).added == 9
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen) and seen[-1][:2] == (9, 9)
    assert all(stored >= done for done, _, stored in seen)  # reported only once the writer stored them


def test_torch_threads_yield_to_the_workers_while_decoding_is_the_slower_stage():
    import torch

    from mmsearch.ingest.pipeline import ThreadBalance

    start = torch.get_num_threads()
    if start < 2:
        torch.set_num_threads(2)
    try:
        balance = ThreadBalance()
        balance.update(waited=0.50, encoded=0.05)  # the model waits for decoded images
        assert torch.get_num_threads() == 1
        balance.update(waited=0.01, encoded=2.00)  # the model is the slower stage again
        balance.update(waited=0.01, encoded=2.00)
        assert torch.get_num_threads() == balance.full
        balance.update(waited=3.0, encoded=0.01)
        balance.restore()
        assert torch.get_num_threads() == balance.full
    finally:
        torch.set_num_threads(start)
