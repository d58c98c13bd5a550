"""The command line: JSON output, tables, exit codes, instant --help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmsearch.cli import main

HEAVY = ("torch", "open_clip", "chromadb", "gradio", "sentence_transformers", "transformers")


@pytest.mark.slow
@pytest.mark.subprocess
def test_help_imports_no_heavy_library():
    code = ("import sys\nfrom mmsearch.cli import build_parser\nbuild_parser().format_help()\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    proc = subprocess.run([sys.executable, "-m", "mmsearch", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "index" in proc.stdout and "search" in proc.stdout


def test_index_search_stats_json(tiny_env, photos, capsys):
    assert main(["index", str(photos), "--captions", str(photos / "captions.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"added": 6, "updated": 0, "unchanged": 0, "moved": 0, "removed": 0, "failed": [],
                      "interrupted": False, "warnings": [], "captions_removed": 0,
                      "ocr_read": 0, "ocr_found": 0, "ocr_failed": [], "videos": 0}

    assert main(["search", "a kitten napping on the couch", "-k", "3", "--json"]) == 0
    close = json.loads(capsys.readouterr().out)["results"]  # by default only the close matches
    assert [r["path"].rsplit("/", 1)[-1] for r in close] == ["black_cat.jpg"] and close[0]["relevance"] >= 0.5
    assert main(["search", "a kitten napping on the couch", "-k", "3", "--json", "--all"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 3 and all(r["relevance"] < 0.5 for r in results if not r["path"].endswith("black_cat.jpg"))
    assert set(results[0]) == {"path", "score", "relevance", "scores", "caption", "similar", "time", "metadata"}
    assert results[0]["time"] is None  # photos have no moment
    assert set(results[0]["scores"]) == {"image", "caption"}  # "on the" are stop words: no keyword matches
    best_caption = max(results, key=lambda r: r["scores"]["caption"] or -1)
    assert best_caption["path"].endswith("black_cat.jpg")

    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["images"] == 6 and stats["image_model"] == "open_clip:mmsearch-tiny/mmsearch-tiny.pt"


def test_human_output_and_skipped_files(tiny_env, photos, capsys, tmp_path):
    (photos / "broken.png").write_bytes(b"garbage")
    assert main(["index", str(photos)]) == 0
    captured = capsys.readouterr()
    assert "added 6, updated 0, unchanged 0, moved 0, removed 0, skipped 1" in captured.out
    assert f"skipped {photos / 'broken.png'}: not an image" in captured.err
    listing = tmp_path / "cli-db" / "skipped.tsv"
    assert f"1 file skipped; full list: {listing}" in captured.err
    assert listing.read_text() == f"{photos / 'broken.png'}\tnot an image Pillow can identify\n"
    assert main(["search", "spaghetti", "-k", "2", "--folder", str(photos)]) == 0
    close = capsys.readouterr().out.splitlines()  # only the close match: the pasta
    assert [t.split()[-1].rsplit("/", 1)[-1] for t in close if t[:2].strip().isdigit()] == ["pasta.jpg"]
    assert main(["search", "xyzzyqwerty", "--folder", str(photos)]) == 0
    assert capsys.readouterr().out.strip() == "no close matches for 'xyzzyqwerty'; --all shows the nearest"
    assert main(["search", "spaghetti", "-k", "2", "--folder", str(photos), "--all"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["#", "relev.", "score", "image", "caption"]
    assert len([t for t in table if t[:2].strip().isdigit()]) == 2


def test_errors_are_one_line_with_exit_1(tiny_env, photos, capsys, tmp_path):
    assert main(["search", "cat"]) == 1
    assert capsys.readouterr().err.strip().startswith("mmsearch: error: there is no index at")
    assert main(["index", str(photos), "--captions", str(tmp_path / "missing.csv")]) == 1
    assert "captions file" in capsys.readouterr().err
    assert main(["index", str(photos)]) == 0
    capsys.readouterr()
    assert main(["search"]) == 1
    assert capsys.readouterr().err.strip() == "mmsearch: error: give a text query, a query image, or both"
    assert main(["search", "cat", "--text-model", "clip"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmsearch: error: the index at") and len(err.splitlines()) == 1


def test_serve_rejects_malformed_auth_before_loading_anything(tiny_env, capsys):
    assert main(["serve", "--auth", "no-password-here"]) == 1
    err = capsys.readouterr().err
    assert "--auth takes user:password" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.subprocess
def test_a_search_or_stats_program_leaves_without_tearing_down_with_its_output_whole(tiny_env, photos, capsys):
    assert main(["index", str(photos), "--captions", str(photos / "captions.csv")]) == 0
    capsys.readouterr()
    code = ("import atexit, sys\nfrom mmsearch.cli import run\n"
            "atexit.register(lambda: print('torn down', file=sys.stderr))\nrun(sys.argv[1:])")

    def program(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)

    searched = program("search", "a kitten napping on the couch", "-k", "3", "--json", "--all")
    assert searched.returncode == 0 and "torn down" not in searched.stderr
    assert len(json.loads(searched.stdout)["results"]) == 3  # piped and whole: flushed before leaving
    stats = program("stats", "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["images"] == 6 and "torn down" not in stats.stderr
    missing = program("search", "cat", "--db", str(tiny_env.parent / "no-such-db"))
    assert missing.returncode == 1 and "mmsearch: error:" in missing.stderr and "torn down" not in missing.stderr
    indexed = program("index", str(photos), "--db", str(tiny_env.parent / "other-db"), "--json")
    assert indexed.returncode == 0 and json.loads(indexed.stdout)["added"] == 6  # a command that writes ends
    assert "torn down" in indexed.stderr  # the usual way
