"""Killing the indexer (SIGKILL at several points, or Ctrl-C) and running it again loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_until, save_image

from mmsearch.store.client import Store

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]  # make test runs them

N = 480  # enough batches of 4 that each stop lands mid-run


@pytest.fixture
def many(tmp_path: Path) -> Path:
    root = tmp_path / "many"
    rows = ["path,caption"]
    for n in range(N):
        save_image(root / f"d{n % 7}" / f"img{n:04d}.png", (n % 256, (7 * n) % 256, (13 * n) % 256), size=(40, 30))
        if n % 2 == 0:
            rows.append(f"d{n % 7}/img{n:04d}.png,picture number {n}")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(params=["threads", "ocr", "processes"], ids=["", "ocr", "processes"])
def env(tiny_clip, minilm, tmp_path, request) -> dict[str, str]:
    """The environment of the index runs: decoding in threads, with reading text in photos (MMSEARCH_OCR),
    and decoding in worker processes (MMSEARCH_DECODE)."""
    return {**os.environ, "MMSEARCH_CLIP_MODEL": tiny_clip[0], "MMSEARCH_CLIP_PRETRAINED": tiny_clip[1],
            "MMSEARCH_TEXT_MODEL": minilm, "MMSEARCH_DB": str(tmp_path / "db"), "MMSEARCH_BATCH_SIZE": "4",
            "MMSEARCH_OCR": "1" if request.param == "ocr" else "0",
            "MMSEARCH_DECODE": "process" if request.param == "processes" else "thread"}


def _command(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mmsearch", "index", str(root), "--captions", str(root / "captions.csv"), *extra]


def _stored(db: Path) -> tuple[int, int]:
    store = Store(db)
    return store.count(), store.caption_count()


def test_sigkill_at_several_points_then_rerun_ends_with_exactly_one_entry_per_file(many, env, tmp_path):
    db = tmp_path / "db"
    counts = []
    for done in (4, 120, 300):
        code, _ = run_until(_command(many), env, done, signal.SIGKILL)
        assert code == -signal.SIGKILL, "the run finished before it could be killed"
        counts.append(_stored(db)[0])
    assert 0 < counts[0] < counts[1] < counts[2] < N

    before = _stored(db)[0]
    proc = subprocess.run(_command(many, "--json"), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["unchanged"] == before  # what was stored is not encoded again
    assert report["added"] == N - before and report["failed"] == [] and report["removed"] == 0
    assert _stored(db) == (N, N // 2)  # one record per image and per caption: none missing, none duplicated
    store = Store(db)
    assert sorted(store.entries()) == sorted(str(p) for p in many.rglob("*.png"))


def test_ctrl_c_stops_after_the_current_batch_and_says_how_to_resume(many, env, tmp_path):
    code, stderr = run_until(_command(many), env, 40, signal.SIGINT)
    assert code == 130
    assert "stopping after the current batch" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    images, captions = _stored(tmp_path / "db")
    assert 40 <= images < N and images % 4 == 0  # whole batches only
    proc = subprocess.run(_command(many, "--json"), env=env, capture_output=True, text=True, timeout=300)
    assert json.loads(proc.stdout)["unchanged"] == images
    assert _stored(tmp_path / "db") == (N, N // 2)
