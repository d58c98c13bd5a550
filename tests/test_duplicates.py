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


def test_the_groups_of_new_photos_read_only_the_records_that_pair_with_them(library, tmp_path, monkeypatch):
    from mmsearch.duplicates import library_groups

    engine = _offline(tmp_path)
    new = library / "new"
    new.mkdir()
    Image.open(SAMPLES / "chelsea-cat.png").convert("RGB").save(new / "cat-again.jpg", quality=70)
    shutil.copy(library / "phone" / "coffee.png", new / "coffee-copy.png")  # the same bytes
    engine.index([library])
    every_record = library_groups(engine.store, False, of=[new])  # the rule over every record
    # files and folders, a name that only starts a folder's ("ph"), the whole library, within a folder
    cases = [([new / "cat-again.jpg"], None), ([library / "ph"], None), ([new / "coffee-copy.png", library / "backup"], None),
             ([library], library / "backup"), ([library / "backup"], library), ([library / "phone"], library / "phone")]
    wants = [library_groups(engine.store, False, folder, of=of) for of, folder in cases]
    assert [len(w) for w in wants] == [1, 0, 2, 1, 1, 0]
    engine.session.keyword_index(fresh=True)
    read = []
    metadata = type(engine.store).image_metadata
    monkeypatch.setattr(engine.store, "all_metadata", lambda: pytest.fail("every record read"))
    monkeypatch.setattr(type(engine.store), "image_metadata", lambda self, ids: read.extend(ids) or metadata(self, ids))
    assert engine.duplicates(of=[new]) == every_record and len(every_record) == 2
    assert engine.duplicates(of=[new], folder=library / "phone") == []  # the folder still bounds it
    names = {Path(m["path"]).name for m in metadata(engine.store, read).values()}
    assert "cat-left.png" not in names and {"cat-again.jpg", "cat.png", "coffee.png"} <= names
    assert [engine.duplicates(of=of, folder=folder) for of, folder in cases] == wants


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
    assert set(group["members"][1]) == {"path", "kind", "hash_distance", "cosine", "width", "height", "size", "sha256"}
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


def test_the_panel_pages_through_every_group(tmp_path):
    from mmsearch_web.duplicates_panel import group_of_tile, group_tiles, page_line, pages

    from mmsearch.duplicates import DuplicateGroup, Member
    from mmsearch.media.thumbnails import ThumbnailCache

    photo = tmp_path / "p.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(photo)
    sizes = [3, 2, 4, 2, 2, 5, 3]  # members per group
    groups = [DuplicateGroup(str(photo), "why", [Member(str(photo), "near", 2, None, 8, 8, 10)] * n) for n in sizes]
    spans = pages(groups, most=6)
    assert spans == [(0, 2), (2, 4), (4, 5), (5, 6), (6, 7)]  # whole groups; a group bigger than a page gets one
    assert [g for first, end in spans for g in range(first, end)] == list(range(len(groups)))  # every group, once
    thumbs = ThumbnailCache(tmp_path / "thumbs")
    second = group_tiles(groups, thumbs, most=6, page=1)
    assert [t[1].split(" · ")[0] for t in second] == ["group 3"] * 4 + ["group 4"] * 2  # numbered as in the summary
    assert group_of_tile(groups, 0, most=6, page=1) == 3 and group_of_tile(groups, 5, most=6, page=1) == 4
    assert group_of_tile(groups, 6, most=6, page=1) == 0 and group_tiles(groups, thumbs, most=6, page=9) == []
    assert page_line(groups, 1, most=6) == "groups 3–4 of 7 (page 2 of 5)"
    assert page_line(groups[:1], 0, most=6) == ""  # one page: nothing to say


def battery(level: int, size: int = 48) -> Image.Image:
    """A battery icon at ``level`` % charge: the outline stays, the green fill grows."""
    from PIL import ImageDraw

    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rectangle((14, 8, 34, 44), outline=(60, 60, 60, 255), width=2)
    draw.rectangle((20, 4, 28, 8), fill=(60, 60, 60, 255))
    draw.rectangle((17, 42 - int(32 * level / 100), 31, 41), fill=(40, 200, 40, 255))
    return icon


@pytest.fixture
def lookalikes(tmp_path):
    """Different pictures that hash alike (flat colours, one icon at four charge levels, a blank graph) and
    a photo with its half-size JPEG 40 copy."""
    from PIL import ImageDraw

    root = tmp_path / "lookalikes"
    (root / "flat").mkdir(parents=True)
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 40, 220)), ("white", (255, 255, 255))):
        Image.new("RGB", (64, 64), colour).save(root / "flat" / f"{name}.png")
    graph = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(graph)
    for x in range(0, 400, 40):
        draw.line((x, 0, x, 300), fill=(225, 225, 225))
    graph.save(root / "flat" / "blank-graph.png")
    (root / "icons").mkdir()
    for level in (20, 40, 60, 80):
        battery(level).save(root / "icons" / f"battery-{level}.png")
    shutil.copy(SAMPLES / "chelsea-cat.png", root / "cat.png")
    with Image.open(SAMPLES / "chelsea-cat.png") as cat:
        cat.convert("RGB").resize((cat.width // 2, cat.height // 2)).save(root / "cat-small.jpg", quality=40)
    return root


@pytest.mark.parametrize("profile", ["offline", "image model"])
def test_different_pictures_that_hash_alike_never_group_and_a_small_copy_does(lookalikes, tmp_path, profile,
                                                                                 tiny_config, tiny_encoders):
    from mmsearch.likeness import Look, hash_bits

    if profile == "offline":
        engine = _offline(tmp_path)
    else:
        engine = SearchEngine(tmp_path / "db", config=tiny_config, encoders=tiny_encoders)
    engine.index([lookalikes])
    looks = {Path(m["path"]).name: Look.of(m) for _, m in engine.store.all_metadata()}
    assert hash_bits(looks["red.png"], looks["blue.png"]) <= 8  # the greyscale hash cannot tell them apart
    assert min(hash_bits(looks["battery-20.png"], looks[f"battery-{n}.png"]) for n in (40, 60, 80)) <= 8
    groups = engine.duplicates()
    assert [sorted(Path(f).name for f in g.files) for g in groups] == [["cat-small.jpg", "cat.png"]]


def test_the_rule_of_one_photo():
    from mmsearch.likeness import Look, encode_look, same_photo

    def look(colour: tuple[int, int, int], square: int = 0, sha: str = "") -> Look:
        grid = np.zeros((8, 8, 3), np.uint8) + np.array(colour, np.uint8)
        grid[:square, :square] //= 2
        grey = Image.fromarray(grid).convert("L").resize((16, 16), Image.Resampling.NEAREST)
        meta = {"phash": "8000000000000000", "sha256": sha, "look": encode_look(grid.tobytes(), grey.tobytes())}
        return Look.of(meta)

    white, blue = look((255, 255, 255)), look((20, 40, 220))
    assert white.flat and not same_photo(white, blue) and not same_photo(white, look((254, 254, 254)))
    assert same_photo(white, look((255, 255, 255)))
    assert same_photo(white, look((10, 10, 10), sha="same"), None) is False
    assert same_photo(look((10, 10, 10), sha="s"), look((200, 30, 30), sha="s"))  # same bytes: always one
    photo = look((200, 120, 60), square=4)
    assert same_photo(photo, look((216, 130, 65), square=4))  # +8 % brightness
    assert not same_photo(photo, look((60, 120, 200), square=4))  # recoloured: another picture
    assert not same_photo(photo, look((200, 120, 60), square=4), cosine=0.5)  # the image model disagrees
    assert same_photo(Look("", 0x1234, None, None), Look("", 0x1235, None, None))  # before looks: the hash rule


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.subprocess
def test_undo_beside_a_running_serve_is_handed_to_it(library, tmp_path):
    import subprocess
    import sys

    from helpers import served

    db = tmp_path / "db"
    _offline(tmp_path).index([library])
    engine = SearchEngine(db)  # this process serves: the database's one writer
    with served(engine):
        groups = engine.duplicates()
        moved = [m.path for g in groups for m in g.members[1:]]
        manifest = engine.move_duplicates(groups, tmp_path / "moved")
        assert len(moved) == 4 and not any(Path(p).exists() for p in moved)
        proc = subprocess.run([sys.executable, "-m", "mmsearch", "duplicates", "--db", str(db), "--undo", manifest],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("moved 4 files back (by the serving process, pid ")
        assert all(Path(p).exists() for p in moved) and len(engine.duplicates()[0].files) == 5


@pytest.mark.parametrize("max_bits", [0, 1, 2, 3, 5, 6, 8])
def test_pairs_found_by_lookup_are_exactly_the_pairs_of_comparing_every_hash(max_bits, monkeypatch):
    """Multi-index hashing (what a large library uses) finds the pairs that comparing every pair finds:
    random hashes, clusters of near copies 0-10 bits apart, one crowded cluster (dark photos hash alike),
    images without a hash, and the pairs of a few photos only (``duplicates --of``)."""
    from mmsearch.hamming import every_pair, indexed_pairs

    rng = np.random.default_rng(max_bits)
    hashes = rng.integers(0, 2**63, 3000, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 3000, dtype=np.uint64)
    for n in range(0, 3000, 7):  # a near copy of the hash before it, 0 to 10 bits away
        flips = rng.choice(64, rng.integers(0, 11), replace=False)
        hashes[n] = hashes[n - 1] ^ np.uint64(sum(1 << int(b) for b in flips))
    base = hashes[10]
    for n in range(2000, 2300):  # one crowded cluster
        hashes[n] = base ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, rng.integers(0, 6), replace=False)))
    has = rng.random(3000) > 0.05
    brute, indexed = every_pair(hashes, has, max_bits), indexed_pairs(hashes, has, max_bits)
    assert indexed == brute and sum(len(v) for v in brute.values()) > 0
    rows = [5, 6, 7, 2100, 2999]
    assert indexed_pairs(hashes, has, max_bits, rows) == every_pair(hashes, has, max_bits, rows)
    monkeypatch.setattr("mmsearch.hamming.PIECE", 37)  # the candidates compared a few at a time
    assert indexed_pairs(hashes, has, max_bits) == brute
