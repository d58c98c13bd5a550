"""Changing an index's models without downtime: ``mmsearch reindex`` builds the new models' collections
beside the active ones, then switches; rollback, dropping the old ones, resuming after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import count_encoder_calls, folder_of_images, index_photos, make_photos, names, save_image

from mmsearch import Config, IndexMismatchError, SearchEngine
from mmsearch.cli import main
from mmsearch.errors import ReindexError
from mmsearch.store.client import Store


@pytest.fixture
def offline_index(tmp_path) -> tuple[Path, Path]:
    """An index built by the offline profile (MiniLM captions, 384-d, no image model): (db, photos)."""
    photos = make_photos(tmp_path / "photos")
    engine = SearchEngine(config=Config.offline_profile(Config.from_env(db=str(tmp_path / "db"))))
    assert index_photos(engine, photos).added == 6
    return tmp_path / "db", photos


def test_a_text_model_change_copies_the_image_vectors_and_encodes_no_image(tmp_path, tiny_clip, minilm, monkeypatch):
    photos = make_photos(tmp_path / "photos")
    models = {"clip_model": tiny_clip[0], "clip_pretrained": tiny_clip[1]}
    first = SearchEngine(tmp_path / "db", text_model=minilm, **models)
    index_photos(first, photos)
    ids = [e.id for e in first.store.entries().values()]
    before = first.store.image_vectors(ids)

    engine = SearchEngine(tmp_path / "db", text_model="clip", **models)  # CLIP's own text tower: same image space
    with pytest.raises(IndexMismatchError, match="mmsearch reindex"):
        engine.index([photos])
    images, texts = count_encoder_calls(monkeypatch, engine.encoders.image, engine.encoders.text)
    report = engine.reindex()
    assert report.switched and report.previous == "first"
    assert (report.images_encoded, report.images_copied, report.texts_embedded) == (0, 6, 5)
    assert images == [] and len(texts) == 5  # the captions only
    after = engine.store.image_vectors(ids)
    assert all(np.allclose(after[i], before[i], rtol=0, atol=1e-6) for i in ids)
    # Models belong to the index: a command without model options now uses the new ones.
    later = SearchEngine(tmp_path / "db")
    assert later.stats()["text_model"] == later.stats()["image_model"] and later.stats()["generation"] == report.generation
    assert names(later.search("a black cat sleeping on a sofa", k=1)) == ["black_cat.jpg"]


def test_a_dimension_change_rollback_and_drop_previous(offline_index, clip512, monkeypatch):
    from mmsearch.search import vector_rows

    monkeypatch.setattr(vector_rows, "TAIL_MAX", 0)  # each keyword file's image vectors in a base file beside it
    db, photos = offline_index
    old = SearchEngine(db)
    old_answers = {q: names(old.search(q, k=6)) for q in ("a cat on a couch", "the sea", "noodles")}
    assert old.stats()["dim"] == 384

    new = SearchEngine(db, clip_model=clip512[0], clip_pretrained=clip512[1], text_model="clip")
    report = new.reindex()
    assert report.switched and (report.images_encoded, report.texts_embedded) == (6, 5)
    assert report.models["dim"] == 512 and report.final.unchanged == 6
    # The engine that was searching goes on answering from the old collections until it follows the switch.
    assert names(old.search("a cat on a couch", k=6)) == old_answers["a cat on a couch"]
    assert old.follow_switch() and old.stats()["dim"] == 512 and old.has_image_vectors
    hit = old.search(image=photos / "black_cat.jpg", k=1)[0]
    assert hit.path.endswith("black_cat.jpg") and hit.scores["image"] == pytest.approx(1.0, abs=1e-4)
    stats = SearchEngine(db).stats()
    assert (stats["dim"], stats["images"], stats["captions"], stats["previous"]) == (512, 6, 5, "first")
    assert len(list(Path(db).glob(f"keywords-{report.generation}*"))) == 4  # keyword file; image, caption vectors; records

    assert main(["reindex", "--db", str(db), "--rollback"]) == 0
    back = SearchEngine(db)
    assert back.stats()["dim"] == 384 and not back.has_image_vectors
    assert {q: names(back.search(q, k=6)) for q in old_answers} == old_answers

    assert main(["reindex", "--db", str(db), "--drop-previous"]) == 0
    collections = Store(db).collection_names()
    assert not any(report.generation in name for name in collections) and "mmsearch_images" in collections
    assert not list(Path(db).glob(f"*{report.generation}*"))  # nor its keyword file and its vectors' base
    with pytest.raises(ReindexError, match="no previous models"):
        from mmsearch.ingest.reindex import rollback
        rollback(Store(db))


def test_a_search_overlapping_the_switch_is_answered_by_the_new_models(offline_index, clip512, monkeypatch):
    db, _ = offline_index
    old = SearchEngine(db)
    assert old.search("a cat", k=1)[0].scores["image"] is None
    SearchEngine(db, clip_model=clip512[0], clip_pretrained=clip512[1], text_model="clip").reindex()
    serve, calls = old.serve, []

    def switch_midway(query):  # planned with the old models (384-d), served after the switch (512-d)
        calls.append(query)
        if len(calls) == 1:
            assert old.follow_switch()
        return serve(query)

    monkeypatch.setattr(old, "serve", switch_midway)
    hits = old.search("a black cat sleeping on a sofa", k=3)
    assert len(calls) == 2 and hits[0].path.endswith("black_cat.jpg") and hits[0].scores["image"] is not None


def test_models_not_given_stay_the_indexs_and_the_same_models_do_nothing(offline_index, tiny_clip, capsys):
    db, _ = offline_index
    assert main(["reindex", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] is True
    # Only the image model given: the text model stays the index's MiniLM (384-d, the tiny CLIP's dimension).
    assert main(["reindex", "--db", str(db), "--clip-model", tiny_clip[0], "--clip-pretrained", tiny_clip[1],
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["switched"] and report["images_encoded"] == 6 and report["texts_embedded"] == 0
    assert report["models"]["text_model"].endswith("all-MiniLM-L6-v2")


def test_feedback_marks_follow_the_new_text_model(offline_index, clip512):
    db, photos = offline_index
    old = SearchEngine(db)
    old.feedback("my favourite animal", photos / "black_cat.jpg", relevant=True)
    new = SearchEngine(db, clip_model=clip512[0], clip_pretrained=clip512[1], text_model="clip")
    assert new.reindex().marks == 1
    marks = new.feedback_marks()
    assert [(m.query, Path(m.path).name, m.relevant) for m in marks] == [("my favourite animal", "black_cat.jpg", True)]
    assert new.marks.signal(new.text_encoder.encode_texts(["my favourite animal"])[0])  # found in the new space


def test_files_changed_meanwhile_are_indexed_by_the_final_pass(offline_index, tiny_clip):
    db, photos = offline_index
    save_image(photos / "new_one.png", (1, 2, 3))
    (photos / "pasta.jpg").unlink()
    report = SearchEngine(db, clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1], text_model="clip").reindex()
    assert report.switched and report.final.added == 1 and report.final.removed == 0
    assert report.failed and report.failed[0][0].endswith("pasta.jpg")  # gone: left out, as index prunes it
    assert SearchEngine(db).stats()["images"] == 6


def test_unreadable_files_stop_the_switch_unless_allowed(offline_index, tiny_clip):
    db, photos = offline_index
    (photos / "black_cat.jpg").write_bytes(b"not an image any more")
    engine = SearchEngine(db, clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1], text_model="clip")
    with pytest.raises(ReindexError, match="could not be read again.*--allow-failed"):
        engine.reindex()
    assert SearchEngine(db).stats()["image_model"] == "none"  # still the old models
    report = SearchEngine(db, clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1], text_model="clip").reindex(
        allow_failed=True)
    assert report.switched and report.resumed == 5 and len(report.failed) == 1


def _reindex_command(db: Path, clip: tuple[str, str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "mmsearch", "reindex", "--db", str(db), "--clip-model", clip[0],
            "--clip-pretrained", clip[1], "--text-model", "clip", "--batch-size", "4", *extra]


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_in_the_middle_then_the_rerun_encodes_only_what_is_missing(tmp_path, clip512):
    from helpers import run_until

    root, db = folder_of_images(tmp_path / "many", 240), tmp_path / "db"
    env = {**os.environ, "MMSEARCH_DB": str(db)}
    # In another process: this one must not hold the database's writer lock.
    subprocess.run([sys.executable, "-m", "mmsearch", "index", str(root), "--offline"], env=env, check=True,
                   capture_output=True, timeout=300)
    code, stderr = run_until(_reindex_command(db, clip512), env, 60, signal.SIGKILL)
    assert code == -signal.SIGKILL, f"the reindex finished before it could be killed: {stderr[-500:]}"
    store = Store(db)
    building = store.pointer()["building"]
    done = store.beside(building).count()
    assert 0 < done < 240 and store.pointer()["active"] == "first"  # searches still get the old models
    proc = subprocess.run(_reindex_command(db, clip512, "--json"), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["resumed"] == done and report["images_encoded"] == 240 - done and report["switched"]
    assert report["generation"] == building and report["final"]["unchanged"] == 240
    assert Store(db).count() == 240 and Store(db).pointer()["active"] == building


class Searching:
    """Text searches through gradio_client in a loop, in a thread: (time, hits, status) of each, and errors."""

    def __init__(self, client):
        import threading

        self.client, self.results, self.errors = client, [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop)

    def loop(self) -> None:
        import time

        while not self.stop.is_set():
            try:
                _, hits, status = self.client.predict("a black cat on a sofa", k=3, api_name="/search")
                self.results.append((time.monotonic(), hits, status))
            except Exception as exc:  # noqa: BLE001 - every failure is a test failure
                self.errors.append(exc)

    def pixels(self) -> list[bool]:
        """Whether each answer had an image score (the new models) or not (the offline profile)."""
        empty = [(n, status) for n, (_, hits, status) in enumerate(self.results) if not hits]
        assert not empty, f"{len(empty)} of {len(self.results)} searches came back empty: {empty[:3]}"
        return [hits[0]["scores"]["image"] is not None for _, hits, _ in self.results]

    def wait_for(self, pixels: bool, seconds: float = 30) -> float:
        """Seconds until an answer with (or without) image scores came back."""
        import time

        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if self.stop.is_set():  # the loop has stopped: ask once more
                _, hits, _ = self.client.predict("a black cat on a sofa", k=3, api_name="/search")
                latest = hits[0]["scores"]["image"] is not None
            else:
                latest = self.pixels()[-1] if self.results else None
            if latest is pixels:
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"no answer {'with' if pixels else 'without'} image scores within {seconds} s")

    def wait_answers(self, n: int = 3, seconds: float = 60) -> None:
        """Until ``n`` more answers came back (an event to wait on, not a sleep that may be too short)."""
        import time

        target, started = len(self.results) + n, time.monotonic()
        while len(self.results) < target:
            assert not self.errors and time.monotonic() - started < seconds, (self.errors, len(self.results))
            time.sleep(0.05)

    def __enter__(self) -> Searching:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _check_the_switch(searching: Searching, started: float) -> None:
    """No search failed or came back empty; old models' answers until the switch, new ones after; never back."""
    assert searching.errors == []
    results = searching.results
    assert len(results) > 10 and all(hits and hits[0]["file"].endswith("black_cat.jpg") for _, hits, _ in results)
    pixels = searching.pixels()
    assert pixels[0] is False and pixels[-1] is True and pixels == sorted(pixels)
    assert any(when < started for when, _, _ in results)  # answered by the old models before the reindex began


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.subprocess
def test_a_running_server_follows_a_reindex_run_by_another_process_through_a_chroma_server(tmp_path, chroma_server,
                                                                                          clip512):
    import time

    from gradio_client import Client
    from helpers import served

    photos = make_photos(tmp_path / "photos")
    base = Config.from_env(db=str(tmp_path / "unused"), chroma_url=chroma_server.url)
    index_photos(SearchEngine(config=Config.offline_profile(base)), photos)
    engine = SearchEngine(config=base)  # no model settings: the index's models, and it follows a switch
    with served(engine) as page:
        client = Client(page, verbose=False)
        with Searching(client) as searching:
            searching.wait_answers()
            started = time.monotonic()
            proc = subprocess.run(_reindex_command(tmp_path / "unused", clip512, "--chroma-url", chroma_server.url,
                                                   "--json"), capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            assert searching.wait_for(pixels=True) < 10  # within a few seconds, without a restart
            searching.wait_answers()
        stats = client.predict(api_name="/stats")
        # Rolling back through the server: the page follows back to the offline models' answers.
        assert main(["reindex", "--chroma-url", chroma_server.url, "--rollback"]) == 0
        searching.wait_for(pixels=False)
    _check_the_switch(searching, started)
    assert stats["dim"] == 512 and stats["image_model"].startswith("open_clip:mmsearch-tiny512")


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.subprocess
def test_reindex_beside_a_serve_of_an_embedded_database_is_handed_to_the_server(tmp_path, clip512):
    import time

    from gradio_client import Client
    from helpers import served

    photos = make_photos(tmp_path / "photos")
    db = tmp_path / "db"
    SearchEngine(config=Config.offline_profile(Config.from_env(db=str(db)))).index([photos],
                                                                                   captions=photos / "captions.csv")
    engine = SearchEngine(db)  # this process serves, so it is the database's one writer
    with served(engine) as page:
        client = Client(page, verbose=False)
        with Searching(client) as searching:
            searching.wait_answers()
            started = time.monotonic()
            proc = subprocess.run(_reindex_command(db, clip512, "--json"), capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            report = json.loads(proc.stdout)
            assert report["switched"] and report["images_encoded"] == 6 and report["models"]["dim"] == 512
            assert searching.wait_for(pixels=True) < 10
            searching.wait_answers()
        proc = subprocess.run([sys.executable, "-m", "mmsearch", "reindex", "--db", str(db), "--rollback"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "rollback done by the serving process" in proc.stdout, proc.stderr
        searching.wait_for(pixels=False)
        assert engine.stats()["dim"] == 384
    _check_the_switch(searching, started)


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.subprocess
def test_ctrl_c_on_a_handed_over_reindex_stops_the_server_after_its_batch_and_the_rerun_finishes(tmp_path, clip512,
                                                                                               monkeypatch):
    import time

    from helpers import run_until, served

    from mmsearch.ingest.handoff import STATUS
    from mmsearch.ingest.progress import HOLD_VARIABLE

    root, db = folder_of_images(tmp_path / "many", 240), tmp_path / "db"
    SearchEngine(config=Config.offline_profile(Config.from_env(db=str(db)))).index([root])
    engine = SearchEngine(db)
    with served(engine):
        monkeypatch.setenv(HOLD_VARIABLE, "60")  # the server runs the job in this process: it holds at 60 until stopped
        code, stderr = run_until(_reindex_command(db, clip512), dict(os.environ), 60, signal.SIGINT)
        monkeypatch.delenv(HOLD_VARIABLE)
        assert code == 130 and "asked the server to stop after its current batch" in stderr, stderr[-500:]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = json.loads((db / STATUS).read_text())
            if status["state"] != "running":
                break
            time.sleep(0.2)
        assert status["state"] == "done" and status["report"]["interrupted"] and not status["report"]["switched"]
        assert engine.stats()["generation"] == "first" and engine.stats()["reindexing"]
        stored = 60 <= status["done"] < 240
        proc = subprocess.run(_reindex_command(db, clip512, "--json"), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert stored and report["switched"] and report["resumed"] >= 60
        assert report["resumed"] + report["images_encoded"] == 240
