"""What a careless user or a hostile file can do to the indexer, the store and the command line: bounded
reads, sidecars that are not what they claim, captions that must not be lost, one-line errors."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
from pathlib import Path

import pytest
from helpers import index_photos, save_image

from mmsearch.cli import main
from mmsearch.errors import ConfigError, QueryError, StoreError
from mmsearch.media.captions import SIDECAR_MAX_BYTES


def test_sidecars_that_are_pipes_devices_huge_or_links_out_of_the_folder_are_not_read(make_engine, tmp_path):
    root = tmp_path / "photos"
    for name in ("fifo", "zero", "passwd", "huge", "latin1", "utf16", "fine"):
        save_image(root / f"{name}.jpg", (10, 20, 30))
    os.mkfifo(root / "fifo.jpg.txt")  # reading it would block the run forever
    (root / "zero.jpg.txt").symlink_to("/dev/zero")  # reading it would fill memory
    (root / "passwd.jpg.txt").symlink_to("/etc/passwd")  # would show the server's users as captions
    (root / "huge.jpg.txt").write_text("word " * SIDECAR_MAX_BYTES)
    (root / "latin1.jpg.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (root / "utf16.jpg.txt").write_text("a cup of tea", encoding="utf-16")  # with a BOM, from Windows Notepad
    (root / "fine.jpg.txt").write_text("a quiet lake")
    report = make_engine().index([root])
    assert report.added == 7 and not report.failed  # the images are indexed all the same
    problems = {Path(p).name: reason for p, reason in report.warnings}
    assert problems["fifo.jpg.txt"].startswith("sidecar is not a regular file")
    assert problems["zero.jpg.txt"].startswith("sidecar is not a regular file")
    assert problems["passwd.jpg.txt"] == "sidecar is a symbolic link to a file outside the indexed folders"
    assert problems["huge.jpg.txt"].startswith(f"sidecar is {5 * SIDECAR_MAX_BYTES:,} bytes")
    assert problems["latin1.jpg.txt"].startswith("sidecar is not UTF-8 or UTF-16 text")
    captions = {Path(h.path).name: h.metadata.get("captions") for h in make_engine().search("tea", k=10)}
    assert captions["utf16.jpg"] == ["a cup of tea"] and captions["fine.jpg"] == ["a quiet lake"]
    assert captions["passwd.jpg"] is None and captions["zero.jpg"] is None


def test_huge_and_sparse_files_are_skipped_unread_and_out_of_memory_skips_one_file(make_engine, tmp_path, monkeypatch):
    root = tmp_path / "photos"
    save_image(root / "normal.jpg", (10, 20, 30))
    save_image(root / "oom.png", (40, 50, 60))
    with open(root / "sparse.jpg", "wb") as handle:
        handle.truncate(2 * 1024**3)  # 2 GB that take no disk space: must not be read into memory
    import mmsearch.media.files

    real = mmsearch.media.files.decode_file

    def decode_file(path, data, *args, **kwargs):
        if data[:4] == b"\x89PNG":
            raise MemoryError
        return real(path, data, *args, **kwargs)

    monkeypatch.setattr(mmsearch.media.files, "decode_file", decode_file)  # the decode workers' (decoders.decode_bytes)
    report = make_engine().index([root])
    failed = {Path(p).name: reason for p, reason in report.failed}
    assert report.added == 1
    assert failed["sparse.jpg"] == f"file is {2 * 1024**3:,} bytes; image files over {512 * 1024**2:,} bytes are not read"
    assert failed["oom.png"] == "out of memory while reading or decoding this file"


def test_manifest_captions_survive_a_run_without_the_manifest_until_forgotten(make_engine, photos):
    engine = make_engine()
    index_photos(engine, photos)
    before = engine.stats()["captions"]
    again = engine.index([photos])  # as the page's "Index folder" and a plain `mmsearch index` do
    assert (again.unchanged, again.updated, again.captions_removed) == (6, 0, 0) and engine.stats()["captions"] == before
    (photos / "other.csv").write_text('path,caption\nred_bicycle.png,"a bike in the city"\n')
    changed = engine.index([photos], captions=photos / "other.csv")  # a manifest that says otherwise
    assert changed.updated == 1 and changed.captions_removed == 1
    bike = engine.search("red_bicycle.png", k=1)[0]
    assert bike.metadata["captions"] == ["a bike in the city"]
    forgotten = engine.index([photos], forget_captions=True)
    assert forgotten.captions_removed == 4 and engine.stats()["captions"] == 1  # the sidecar caption stays
    assert "captions removed 4" in forgotten.summary()


def test_store_failures_are_one_line_with_what_to_do(make_engine, photos, monkeypatch):
    engine = make_engine()
    engine.index([photos])
    store = engine.store

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store._images, "upsert", disk_full)
    save_image(photos / "new.jpg", (1, 2, 3))
    with pytest.raises(StoreError, match="free some disk space and run the command again"):
        engine.index([photos])

    def damaged(*args, **kwargs):
        raise RuntimeError("Error loading hnsw index")

    monkeypatch.setattr(store._images, "query", damaged)
    with pytest.raises(StoreError, match="mmsearch export DIR.*mmsearch import DIR"):
        engine.search("a cat")


@pytest.mark.parametrize(("argv", "message"), [
    (["search", "a cat", "-k", "1000000000"], "k must be between 0 and 10000"),
    (["search", "a cat", "--from", "0001-01-01"], "date 0001-01-01 is out of range"),
    (["search", "caf\udce9"], "the query is not valid UTF-8 text"),
    (["search", "a cat", "--folder", "/photos/\udcff"], "the folder is not valid UTF-8 text"),
    (["index", "/nonexistent/photos"], "/nonexistent/photos does not exist"),
])
def test_bad_input_is_one_line_and_exit_1(tiny_env, photos, capsys, argv, message):
    assert main(["index", str(photos)]) == 0
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"mmsearch: error: {message}" or (err.startswith("mmsearch: error: ") and message in err)
    assert len(err.splitlines()) == 1


def test_library_errors_for_the_same_inputs(make_engine, photos):
    engine = make_engine()
    engine.index([photos])
    with pytest.raises(QueryError):
        engine.search("a cat", k=10**12)
    with pytest.raises(ConfigError, match="does not exist"):
        engine.index([photos / "nope"])


def test_listings_escape_tabs_and_newlines_and_json_stays_utf8(tiny_env, tmp_path, capsys):
    root = tmp_path / "odd"
    root.mkdir()
    (root / "tab\there.jpg").write_bytes(b"")
    (root / "new\nline.jpg").write_bytes(b"")
    with open(os.fsencode(str(root)) + b"/caf\xe9.jpg", "wb") as handle:
        handle.write(b"")
    assert main(["index", str(root), "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.encode("utf-8"))  # valid UTF-8 even for a file name that is not
    assert {Path(f["path"]).name for f in report["failed"]} == {"tab\there.jpg", "new\nline.jpg", "caf\\xe9.jpg"}
    lines = (tiny_env / "skipped.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all(line.count("\t") == 1 for line in lines)
    assert any(line.startswith(f"{root}/tab\\there.jpg\t") for line in lines)
    assert any(line.startswith(f"{root}/new\\nline.jpg\t") for line in lines)


def test_unread_formats_and_pillow_warnings_are_reported_with_their_file(make_engine, tmp_path):
    from PIL import Image

    root = tmp_path / "mixed"
    save_image(root / "photo.jpg", (10, 20, 30))
    for n in range(3):
        (root / f"figure{n}.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0\n")
    (root / "readme.txt").write_text("not an image at all")  # not image-like: not mentioned
    # EXIF whose ImageDescription points 99,999 bytes into a file of a few hundred: Pillow warns
    ifd = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x010E, 2, 100, 99999)
    Image.new("RGB", (16, 16), (1, 2, 3)).save(root / "corrupt-exif.jpg", "JPEG", exif=b"Exif\x00\x00" + ifd + bytes(4))
    report = make_engine().index([root])
    assert report.added == 2
    assert sorted(Path(p).name for p, _ in report.failed) == ["figure0.eps", "figure1.eps", "figure2.eps"]
    assert report.skipped_by_kind() == [(3, ".eps", "vector image (EPS), not a raster format")]
    assert "skipped 3 (3 .eps: vector image (EPS), not a raster format)" in report.summary()
    assert report.warnings and all(Path(p).name == "corrupt-exif.jpg" for p, _ in report.warnings)
    assert report.warnings[0][1] == "UserWarning: Truncated File Read"


def test_query_images_are_decoded_small_and_bounded(tmp_path):
    import zlib

    from PIL import Image

    from mmsearch.errors import ImageReadError
    from mmsearch.media.files import open_rgb
    from mmsearch.media.images import QUERY_MAX_PIXELS

    Image.new("RGB", (4000, 3000), (200, 100, 50)).save(tmp_path / "phone.jpg", quality=80)
    assert min(open_rgb(tmp_path / "phone.jpg", 224).size) == 224  # drafted and shrunk, never 12 MP in memory

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 10_000  # 100 megapixels declared by a tiny PNG: refused from its header, before any decoding
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                                        + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match=f"exceeds the {QUERY_MAX_PIXELS:,} pixel limit"):
        open_rgb(tmp_path / "huge.png", 224)
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageReadError, match="not a regular file"):
        open_rgb(tmp_path / "pipe.png")


def test_logins_from_a_file_or_the_environment_and_hosts_on_a_network(tmp_path, monkeypatch):
    import argparse
    import socket

    from mmsearch_web.guard import allowed_hosts

    from mmsearch.cli import server_options

    args = argparse.Namespace(host="127.0.0.1", port=7860, auth=None, read_only=False, max_file_size="25mb",
                              allowed_host=None, trust_proxy=False)
    monkeypatch.setenv("MMSEARCH_AUTH", "ann:from-env")
    assert server_options(args)["auth"] == [("ann", "from-env")]  # not on the command line, so not in ps
    users = tmp_path / "users"
    users.write_text("bob:from-file\n")
    args.auth = str(users)
    assert server_options(args)["auth"] == [("bob", "from-file")]
    assert set(allowed_hosts("127.0.0.1")) == {"localhost", "127.0.0.1", "::1", "[::1]"}
    exposed = allowed_hosts("0.0.0.0", ["photos.example.org"])
    assert "photos.example.org" in exposed and socket.gethostname() in exposed and "evil.example" not in exposed
    assert "192.168.1.5" in allowed_hosts("192.168.1.5")
