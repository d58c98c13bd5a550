"""Near-duplicate groups: real variants of real photos by perceptual hash, the vector check with
constructed vectors, no chaining, the keeper rule, and moves that the index follows and an undo reverses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from mmsearch import Config, SearchEngine
from mmsearch.cli import main
from mmsearch.duplicates import find_groups

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


@pytest.fixture
def library(tmp_path):
    """Two real photos with variants of the first, and a photo that must stay alone."""
    root = tmp_path / "library"
    (root / "phone").mkdir(parents=True)
    (root / "backup").mkdir()
    cat = Image.open(SAMPLES / "chelsea-cat.png").convert("RGB")
    cat.save(root / "phone" / "cat.png")
    shutil.copy(root / "phone" / "cat.png", root / "backup" / "cat-copy.png")
    cat.resize((cat.width // 2, cat.height // 2)).save(root / "backup" / "cat-small.jpg", quality=90)
    cat.save(root / "backup" / "cat-q30.jpg", quality=30)
    ImageEnhance.Brightness(cat).enhance(1.08).save(root / "backup" / "cat-bright.jpg", quality=92)
    shutil.copy(SAMPLES / "coffee.png", root / "phone" / "coffee.png")
    half = cat.width // 2
    cat.crop((0, 0, half, cat.height)).save(root / "phone" / "cat-left.png")  # a different picture now
    return root


def _offline(tmp_path: Path) -> SearchEngine:
    return SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))


def test_variants_of_one_photo_form_one_group_with_the_best_keeper(library, tmp_path):
    engine = _offline(tmp_path)
    engine.index([library])
    groups = engine.duplicates()
    assert len(groups) == 1
    group = groups[0]
    names = sorted(Path(f).name for f in group.files)
    assert names == ["cat-bright.jpg", "cat-copy.png", "cat-q30.jpg", "cat-small.jpg", "cat.png"]
    assert Path(group.keep).name in ("cat.png", "cat-copy.png")  # full resolution, the largest file
    kinds = {Path(m.path).name: m.kind for m in group.members}
    assert kinds[Path(group.keep).name] == "keeper" and kinds["cat-q30.jpg"] == "near"
    assert {kinds["cat.png"], kinds["cat-copy.png"]} == {"keeper", "exact"}
    assert all(m.hash_distance <= 8 and m.cosine is None for m in group.members)  # offline: the hash decides
    assert "resolution" in group.reason or "largest" in group.reason or "identical" in group.reason
    assert engine.duplicates(folder=library / "phone") == []  # the folder filter: no pair inside phone/
    new = library / "new"
    new.mkdir()
    Image.open(SAMPLES / "chelsea-cat.png").convert("RGB").save(new / "cat-again.jpg", quality=70)
    shutil.copy(SAMPLES / "rocket.jpg", new / "rocket.jpg")
    engine.index([library])
    of_new = engine.duplicates(of=[new])  # photos added later, checked against the index
    assert len(of_new) == 1 and str(new / "cat-again.jpg") in of_new[0].files
    assert engine.duplicates(of=[new / "rocket.jpg"]) == []


def test_both_signals_must_agree_and_groups_never_chain():
    def record(n: int, phash: int, size: int) -> tuple[str, dict]:
        return f"id{n}", {"path": f"/p/{n}.jpg", "phash": f"{phash:016x}", "sha256": f"sha{n}", "width": 100,
                          "height": 100, "size": size, "date": n}

    a, b, c = 0, 0x3F, 0xFFF  # b is a bridge: a~b 6 bits, b~c 6 bits, a~c 12 bits
    records = [record(0, a | 1 << 40, 500), record(1, b | 1 << 40, 400), record(2, c | 1 << 40, 300)]
    bits = [bin(x ^ y).count("1") for x, y in ((a, b), (b, c), (a, c))]
    assert bits[0] <= 8 and bits[1] <= 8 and bits[2] > 8
    groups = find_groups(records)
    assert all(not {"/p/0.jpg", "/p/2.jpg"} <= set(g.files) for g in groups)  # no chain from 0 to 2
    assert groups[0].keep == "/p/0.jpg" and groups[0].files == ["/p/0.jpg", "/p/1.jpg"]
    vectors = {"id0": np.array([1.0, 0.0]), "id1": np.array([0.0, 1.0]), "id2": np.array([0.0, 1.0])}
    groups = find_groups(records, lambda ids: {i: vectors[i] for i in ids})  # hashes agree, vectors do not (0->1)
    assert [g.files for g in groups] == [["/p/1.jpg", "/p/2.jpg"]]
    assert groups[0].members[1].cosine == 1.0


def test_move_keeps_folders_the_index_follows_and_undo_puts_everything_back(library, tmp_path, capsys, monkeypatch):
    db = str(tmp_path / "db")
    assert main(["index", str(library), "--db", db, "--offline"]) == 0
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(""))  # no one answers: nothing moves
    dest = tmp_path / "extra-copies"
    assert main(["duplicates", "--db", db, "--move-to", str(dest)]) == 1
    assert "nothing moved" in capsys.readouterr().err and not dest.exists()
    assert main(["duplicates", "--db", db, "--json"]) == 0
    group = json.loads(capsys.readouterr().out)["groups"][0]
    assert set(group) == {"files", "keep", "reason", "members"} and group["files"][0] == group["keep"]
    assert set(group["members"][1]) == {"path", "kind", "hash_distance", "cosine", "width", "height", "size"}
    assert main(["duplicates", "--db", db, "--move-to", str(tmp_path / "library" / "x"), "--yes"]) == 1  # inside
    assert main(["duplicates", "--db", db, "--move-to", str(dest), "--yes"]) == 0
    out = capsys.readouterr().out
    manifest = out.split("--undo ")[-1].strip()
    assert (dest / "library" / "backup" / "cat-q30.jpg").is_file() and not (library / "backup" / "cat-q30.jpg").exists()
    assert Path(group["keep"]).is_file()  # the keeper never moves; nothing is deleted
    engine = SearchEngine(db)
    moved = engine.search("cat-q30.jpg", k=1)[0]
    assert moved.path == str(dest / "library" / "backup" / "cat-q30.jpg")  # the index followed the file
    assert engine.duplicates() == []  # the copies are outside the indexed folders now
    assert main(["duplicates", "--db", db, "--undo", manifest]) == 0
    assert "moved 4 files back" in capsys.readouterr().out
    assert (library / "backup" / "cat-q30.jpg").is_file() and len(SearchEngine(db).duplicates()) == 1


@pytest.fixture
def dup_site(library, tmp_path):
    from helpers import served

    engine = _offline(tmp_path)
    engine.index([library])
    with served(engine) as url:
        yield {"url": url, "library": library, "tmp": tmp_path, "engine": engine}


@pytest.mark.slow
@pytest.mark.server
def test_the_page_shows_groups_and_moves_a_group_by_its_number(dup_site):
    from gradio_client import Client

    client = Client(dup_site["url"], verbose=False)
    summary, tiles, _ = client.predict(None, api_name="/duplicates")
    assert summary.startswith("**1 groups**, 4 files beside their keepers") and len(tiles) == 5
    assert tiles[0]["caption"].startswith("group 1 · KEEP")
    dest = dup_site["tmp"] / "moved"
    outcome = client.predict("group 1", str(dest), api_name="/move_duplicates")
    assert outcome.startswith(f"Moved 4 files to `{dest}`") and "mmsearch duplicates --undo" in outcome
    assert len(list(dest.rglob("cat*"))) == 4 and dup_site["engine"].duplicates() == []


@pytest.mark.slow
@pytest.mark.server
def test_no_moves_from_a_read_only_page(library, tmp_path):
    from gradio_client import Client
    from helpers import served

    engine = _offline(tmp_path)
    engine.index([library])
    with served(engine, read_only=True) as url:
        endpoints = Client(url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert "/duplicates" in endpoints and "/move_duplicates" not in endpoints


def test_the_panel_shows_whole_groups_up_to_a_bound(tmp_path):
    from mmsearch_web.duplicates_panel import SHOWN_GROUPS, group_summary, group_tiles

    from mmsearch.duplicates import DuplicateGroup, Member
    from mmsearch.media.thumbnails import ThumbnailCache

    photo = tmp_path / "p.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(photo)
    member = Member(str(photo), "near", 2, None, 8, 8, 10)
    groups = [DuplicateGroup(str(photo), "why", [member] * 3) for _ in range(SHOWN_GROUPS + 10)]
    tiles = group_tiles(groups, ThumbnailCache(tmp_path / "thumbs"), most=10)
    assert len(tiles) == 9  # three whole groups of three, never a group cut in half
    assert "and 10 more groups" in group_summary(groups)
