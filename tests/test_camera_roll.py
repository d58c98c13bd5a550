"""The camera roll: HEIC, AVIF, RAW and SVG photos are read, and videos are searched frame by frame and found
at the moment. All media are generated here: HEIC by pillow-heif, AVIF by Pillow, a DNG from a Bayer mosaic by
pidng, videos by PyAV."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import scene_picture, write_video

from mmsearch.cli import main
from mmsearch.ids import image_id
from mmsearch.media.files import decode_file
from mmsearch.store.client import Store

LISBON = (38.7223, -9.1393)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _gps_exif(orientation: int = 1) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 12"
    exif.get_ifd(0x8769)[0x9003] = "2019:04:05 10:11:12"
    exif[0x8825] = {1: "N", 2: (38.0, 43.0, 20.28), 3: "W", 4: (9.0, 8.0, 21.48)}
    return exif.tobytes()


def write_dng(path: Path, width: int = 384, height: int = 256) -> Path:
    """A DNG of an RGGB Bayer mosaic, left half red and right half blue (no embedded preview)."""
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, Orientation, PhotometricInterpretation

    picture = np.zeros((height, width, 3), np.uint16)
    picture[:, : width // 2], picture[:, width // 2:] = (4000, 500, 500), (500, 500, 4000)
    bayer = np.zeros((height, width), np.uint16)
    bayer[0::2, 0::2], bayer[0::2, 1::2] = picture[0::2, 0::2, 0], picture[0::2, 1::2, 1]
    bayer[1::2, 0::2], bayer[1::2, 1::2] = picture[1::2, 0::2, 1], picture[1::2, 1::2, 2]
    tags = DNGTags()
    for tag, value in ((Tag.ImageWidth, width), (Tag.ImageLength, height), (Tag.TileWidth, width),
                       (Tag.TileLength, height), (Tag.Orientation, Orientation.Horizontal),
                       (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
                       (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 12), (Tag.CFARepeatPatternDim, [2, 2]),
                       (Tag.CFAPattern, CFAPattern.RGGB), (Tag.BlackLevel, 0), (Tag.WhiteLevel, 4095),
                       (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
                       (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65), (Tag.AsShotNeutral, [[1, 1]] * 3),
                       (Tag.Make, "Testcam"), (Tag.Model, "RAW 1"), (Tag.DNGVersion, DNGVersion.V1_4),
                       (Tag.DNGBackwardVersion, DNGVersion.V1_2)):
        tags.set(tag, value)
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.convert(bayer, filename=str(path.with_suffix("")))
    return path


def test_heic_turned_by_its_orientation_is_indexed_upright_with_its_date_and_place(make_engine, tiny_encoders, tmp_path):
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    upright = scene_picture(11, (240, 320))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held upright stores it, EXIF orientation 6
    (tmp_path / "roll").mkdir()
    stored.save(tmp_path / "roll" / "IMG_0001.HEIC", exif=_gps_exif(6), quality=-1)
    engine = make_engine()
    report = engine.index([tmp_path / "roll"])
    assert report.added == 1 and report.failed == []
    own = image_id(str(tmp_path / "roll" / "IMG_0001.HEIC"))
    vector = engine.store.image_vectors([own])[own]
    expected = tiny_encoders.image.encode_images([upright])[0]
    assert _cosine(vector, expected) >= 0.999
    meta = engine.store.image_metadata([own])[own]
    assert (meta["width"], meta["height"]) == (240, 320) and meta["kind"] == "heif"
    assert meta["taken"] == "2019-04-05 10:11:12" and meta["camera"] == "Apple iPhone 12"
    assert meta["lat"] == pytest.approx(LISBON[0], abs=1e-3) and meta["lon"] == pytest.approx(LISBON[1], abs=1e-3)


def test_avif_and_a_dng_demosaiced_from_its_mosaic_are_indexed(make_engine, tmp_path):
    root = tmp_path / "roll"
    root.mkdir()
    scene_picture(12).save(root / "pixel.avif", exif=_gps_exif())
    write_dng(root / "raw.dng")
    engine = make_engine()
    report = engine.index([root])
    assert report.added == 2 and report.failed == [], report.failed
    metas = {m["name"]: m for m in engine.store.image_metadata([image_id(str(p)) for p in root.iterdir()]).values()}
    assert metas["pixel.avif"]["kind"] == "avif" and metas["pixel.avif"]["lat"] == pytest.approx(LISBON[0], abs=1e-3)
    assert metas["raw.dng"]["kind"] == "raw" and (metas["raw.dng"]["width"], metas["raw.dng"]["height"]) == (384, 256)
    assert metas["raw.dng"]["camera"] == "Testcam RAW 1"
    picture, _ = decode_file(root / "raw.dng", (root / "raw.dng").read_bytes())
    left, right = np.asarray(picture)[:, :40].mean((0, 1)), np.asarray(picture)[:, -40:].mean((0, 1))
    assert left[0] > 200 > left[2] and right[2] > 200 > right[0]  # demosaiced as the mosaic says: red, then blue


SHAPES = ('<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 64 64">'
          '<rect width="64" height="64" fill="#fff"/><rect x="4" y="4" width="56" height="24" fill="#d02020"/>'
          '<circle cx="32" cy="46" r="14" fill="#2040d0"/></svg>')


def test_an_svg_is_embedded_as_the_same_shapes_drawn_by_pillow(make_engine, tiny_encoders, tmp_path):
    from PIL import Image, ImageDraw

    root = tmp_path / "icons"
    root.mkdir()
    (root / "shapes.svg").write_text(SHAPES.format(w=64, h=64))
    side = 448  # drawn large, then shrunk: anti-aliased edges as a renderer's
    drawn = Image.new("RGB", (side, side), "white")
    pen, unit = ImageDraw.Draw(drawn), side / 64
    pen.rectangle((4 * unit, 4 * unit, 60 * unit - 1, 28 * unit - 1), fill="#d02020")
    pen.ellipse((18 * unit, 32 * unit, 46 * unit - 1, 60 * unit - 1), fill="#2040d0")
    engine = make_engine()
    assert engine.index([root]).added == 1
    own = image_id(str(root / "shapes.svg"))
    vector = engine.store.image_vectors([own])[own]
    expected = tiny_encoders.image.encode_images([drawn.resize((224, 224), Image.Resampling.LANCZOS)])[0]
    assert _cosine(vector, expected) >= 0.99


class _Counting(http.server.BaseHTTPRequestHandler):
    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        type(self).asked.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_hostile_svg_reads_and_fetches_nothing(make_engine, tmp_path):
    from PIL import Image

    server = http.server.HTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        secret = tmp_path / "secret.png"
        Image.new("RGB", (8, 8), (0, 255, 0)).save(secret)
        url = f"http://127.0.0.1:{server.server_port}"
        root = tmp_path / "hostile"
        root.mkdir()
        link = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
        (root / "remote.svg").write_text(
            f'<svg xmlns="http://www.w3.org/2000/svg" {link} width="10" height="10"><style>@import url({url}/s.css);</style>'
            f'<image width="10" height="10" xlink:href="{url}/x.png"/><rect width="10" height="10" fill="url({url}/p#x)"/></svg>')
        (root / "local.svg").write_text(
            f'<svg xmlns="http://www.w3.org/2000/svg" {link} width="10" height="10"><image width="10" height="10" '
            f'xlink:href="{secret}"/><image width="10" height="10" href="file://{secret}"/></svg>')
        entities = "".join(f'<!ENTITY e{n} "{f"&e{n - 1};" * 10 if n else "lol"}">' for n in range(8))
        (root / "laughs.svg").write_text(f'<?xml version="1.0"?><!DOCTYPE svg [{entities}]>'
                                         '<svg xmlns="http://www.w3.org/2000/svg"><text>&e7;</text></svg>')
        (root / "xxe.svg").write_text('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                                      '<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>')
        (root / "huge.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="100000000" height="100000000">'
                                       '<rect width="100%" height="100%" fill="#00f"/></svg>')
        (root / "graphviz.svg").write_text(  # a DOCTYPE naming the SVG DTD, sizes in pt: as Graphviz writes them
            '<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
            '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd"><svg xmlns="http://www.w3.org/2000/svg" '
            'width="282pt" height="141pt" viewBox="0 0 282 141"><rect width="282" height="141" fill="#0a0"/></svg>')
        report = make_engine().index([root])
        assert _Counting.asked == []  # nothing was fetched
        assert report.added == 4
        reasons = dict((Path(p).name, r) for p, r in report.failed)
        assert set(reasons) == {"laughs.svg", "xxe.svg"} and all("DTD or entities" in r for r in reasons.values())
        local, _ = decode_file(root / "local.svg", (root / "local.svg").read_bytes(), 64)
        assert local.getpixel((32, 32)) == (255, 255, 255)  # the local file named by the SVG was not drawn
        huge, _ = decode_file(root / "huge.svg", (root / "huge.svg").read_bytes(), 224)
        assert huge.size == (224, 224) and huge.getpixel((100, 100)) == (0, 0, 255)
        chart, info = decode_file(root / "graphviz.svg", (root / "graphviz.svg").read_bytes(), 224)
        assert chart.size == (448, 224) and (info.width, info.height) == (376, 188) and chart.getpixel((9, 9))[1] > 150
    finally:
        server.shutdown()


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    """Two videos of three 4 s scenes with one keyframe (at 0), H.264 and VP8, and a photo."""
    root = tmp_path / "roll"
    write_video(root / "trip.mp4", [scene_picture(s) for s in (1, 2, 3)],
                metadata={"location": "+38.7223-009.1393/", "creation_time": "2019-04-05T10:11:12Z"})
    write_video(root / "other.webm", [scene_picture(s) for s in (4, 5, 6)], codec="libvpx")
    scene_picture(7).save(root / "photo.jpg")
    return root


def test_a_video_is_found_at_the_moment_its_frame_matches(make_engine, videos, tmp_path, capsys, tiny_env):
    engine = make_engine()
    report = engine.index([videos])
    assert (report.added, report.videos, report.failed) == (3, 2, [])
    assert "added 3 (2 videos)" in report.summary()
    assert engine.stats()["videos"] == 2 and engine.stats()["images"] == 3
    for scene, low, high in ((2, 4.0, 8.0), (3, 8.0, 12.0)):
        best = engine.search(image=scene_picture(scene), k=3)[0]
        assert best.path.endswith("trip.mp4") and low <= best.time < high, (best.path, best.time)
    webm = engine.search(image=scene_picture(5), k=1)[0]
    assert webm.path.endswith("other.webm") and 4.0 <= webm.time < 8.0
    photo = engine.search(image=scene_picture(7), k=1)[0]
    assert photo.path.endswith("photo.jpg") and photo.time is None
    own = image_id(str(videos / "trip.mp4"))
    meta = engine.store.image_metadata([own])[own]
    assert meta["kind"] == "video" and meta["duration"] == pytest.approx(12.0, abs=0.2) and meta["frames"] == 6
    assert meta["lat"] == pytest.approx(38.7223) and meta["lon"] == pytest.approx(-9.1393)
    assert meta["date_source"] == "exif" and meta["taken"].startswith("2019-04-0")

    query = tmp_path / "scene2.png"
    scene_picture(2).save(query)
    assert main(["search", "--db", str(engine.config.db), "--image", str(query), "--json", "-k", "2", "--all"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results[0]["path"].endswith("trip.mp4") and 4.0 <= results[0]["time"] < 8.0
    assert main(["search", "--db", str(engine.config.db), "--image", str(query), "-k", "2", "--all"]) == 0
    table = capsys.readouterr().out
    assert f"{videos / 'trip.mp4'} @ 00:0" in table


def test_videos_move_export_import_and_duplicate_by_their_bytes(make_engine, videos, tmp_path):
    import shutil

    engine = make_engine()
    engine.index([videos])
    shutil.copy(videos / "trip.mp4", videos / "trip-copy.mp4")
    (videos / "trip.mp4").rename(videos / "renamed.mp4")
    report = engine.index([videos])
    assert (report.moved, report.added, report.removed) == (1, 1, 0)
    frames = Store(engine.config.db).frames_collection()
    assert frames.count() == 6 * 3  # the moved video kept its frames, the copy has its own, none doubled
    groups = engine.duplicates()
    assert len(groups) == 1 and {Path(m.path).name for m in groups[0].members} == {"renamed.mp4", "trip-copy.mp4"}
    best = engine.search(image=scene_picture(2), k=1, collapse=True)[0]
    assert Path(best.path).name in ("renamed.mp4", "trip-copy.mp4") and 4.0 <= best.time < 8.0

    from mmsearch.transfer import export_index, import_index

    export_index(engine.store, tmp_path / "export")
    other = make_engine(tmp_path / "db2")
    import_index(Store(tmp_path / "db2"), tmp_path / "export")
    assert Store(tmp_path / "db2").frames_collection().count() == 18
    moved = other.search(image=scene_picture(3), k=1)[0]
    assert moved.time is not None and 8.0 <= moved.time < 12.0


def test_broken_videos_are_reported_and_a_truncated_one_keeps_its_frames(make_engine, tmp_path):
    root = tmp_path / "roll"
    whole = write_video(root / "whole.mp4", [scene_picture(s) for s in (1, 2, 3)], faststart=True)
    data = whole.read_bytes()
    (root / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])  # moov first: the front part still plays
    (root / "empty.mp4").write_bytes(b"")
    (root / "noise.mov").write_bytes(bytes(range(256)) * 40)
    whole.unlink()
    report = make_engine().index([root])
    reasons = dict((Path(p).name, r) for p, r in report.failed)
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["noise.mov"].startswith("not a video FFmpeg can read")
    assert report.added == 1 and report.videos == 1
    warned = dict((Path(p).name, r) for p, r in report.warnings)
    assert "cut.mp4" in warned and "frames" in warned["cut.mp4"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_in_a_folder_of_videos_then_a_rerun_embeds_each_frame_once(tiny_clip, minilm, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from helpers import run_until

    root = tmp_path / "videos"
    for n in range(12):
        write_video(root / f"clip{n:02d}.mp4", [scene_picture(10 * n + s, (96, 64)) for s in range(3)], seconds=2.0)
    env = {**os.environ, "MMSEARCH_CLIP_MODEL": tiny_clip[0], "MMSEARCH_CLIP_PRETRAINED": tiny_clip[1],
           "MMSEARCH_TEXT_MODEL": minilm, "MMSEARCH_DB": str(tmp_path / "db"), "MMSEARCH_BATCH_SIZE": "2"}
    command = [sys.executable, "-m", "mmsearch", "index", str(root)]
    code, _ = run_until(command, env, 4, signal.SIGKILL)
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    stored = Store(tmp_path / "db").count()
    assert 4 <= stored < 12
    done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["unchanged"], report["added"], report["failed"]) == (stored, 12 - stored, [])
    store = Store(tmp_path / "db")
    frames = store.frames_collection().get(include=["metadatas"])
    assert store.count() == 12 and len(frames["ids"]) == 12 * 3 == len(set(frames["ids"]))
    per_video = {}
    for meta in frames["metadatas"]:
        per_video.setdefault(meta["image_id"], []).append(meta["time"])
    assert len(per_video) == 12 and all(sorted(t) == [1.0, 3.0, 5.0] for t in per_video.values())


@pytest.mark.slow
@pytest.mark.server
def test_the_page_plays_a_video_from_its_moment_and_shows_a_heic_as_a_rendition(make_engine, videos, tmp_path):
    import urllib.request

    from helpers import served
    from mmsearch_web.guard import original_url
    from mmsearch_web.views import hit_record, video_player
    from pillow_heif import register_heif_opener

    register_heif_opener()
    scene_picture(8).save(videos / "phone.heic")
    engine = make_engine()
    engine.index([videos])
    best = engine.search(image=scene_picture(2), k=1)[0]
    record = hit_record(best)
    player = video_player(record)
    assert f'src="{original_url(record["id"])}#t={best.time:.1f}"' in player and 4.0 <= best.time < 8.0
    assert video_player(hit_record(engine.search(image=scene_picture(7), k=1)[0])) == ""  # a photo has no player
    with served(engine) as url:
        asked = urllib.request.Request(url + original_url(record["id"]), headers={"Range": "bytes=100-299"})
        with urllib.request.urlopen(asked, timeout=30) as response:
            size = (videos / "trip.mp4").stat().st_size
            assert response.status == 206 and response.headers["Content-Type"] == "video/mp4"
            assert response.headers["Content-Range"] == f"bytes 100-299/{size}"
            assert response.read() == (videos / "trip.mp4").read_bytes()[100:300]
        heic = original_url(image_id(str(videos / "phone.heic")))
        with urllib.request.urlopen(url + heic, timeout=30) as response:
            assert response.headers["Content-Type"] == "image/jpeg" and response.read()[:3] == b"\xff\xd8\xff"


def test_a_reindex_to_another_image_model_samples_the_videos_again(tiny_clip, minilm, clip512, videos, tmp_path):
    from mmsearch import SearchEngine

    db = tmp_path / "db"
    first = SearchEngine(db, clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1], text_model=minilm)
    assert first.index([videos]).videos == 2
    report = SearchEngine(db, clip_model=clip512[0], clip_pretrained=clip512[1], text_model="clip").reindex()
    assert report.switched and report.images_encoded == 3 and report.failed == []
    now = SearchEngine(db)
    assert now.stats()["dim"] == 512 and now.stats()["videos"] == 2
    assert now.store.frames_collection().count() == 12  # 6 frames of each video, in the new model's space
    best = now.search(image=scene_picture(3), k=1)[0]
    assert best.path.endswith("trip.mp4") and 8.0 <= best.time < 12.0
