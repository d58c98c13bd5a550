"""What each camera-roll format costs to decode at the model's size, side by side with a JPEG of the same
pixels, and what a minute of 1080p and 4K video costs to sample (seconds and peak memory), in one run.

    .venv/bin/python benchmarks/media_bench.py              # photos 4032 x 3024; videos 20 s of 1080p and 4K
    .venv/bin/python benchmarks/media_bench.py --seconds 60  # longer videos

Photos: one 12 MP picture (smooth shapes and noise, like a phone photo) written as JPEG (quality 90), HEIC
(pillow-heif, quality 90; pillow-heif 1.x writes no thumbnail, so the whole picture is decoded, where an
iPhone's own file has a 320 x 240 thumbnail that is decoded instead) and AVIF, and a 6000 x 4000 DNG
mosaic (pidng, no preview: demosaiced at half size); an icon-sized SVG drawing. Each is decoded by
``mmsearch.media.files.decode_file`` at min_side 224, as indexing does; the ratio is against the JPEG.
A RAW file with an embedded preview is not measured: no package here writes one (its cost is a RAW open
plus a JPEG draft decode of the preview).

Videos: H.264 (libx264, keyframe every 250 frames, 30 fps) encoded here, then sampled by
``kinds.video.read_video`` (one frame every 2 s, at most 32) in a process of its own, which reports its peak
RSS (VmHWM) before and after decoding; "per minute" scales the measured time by 60 / length.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def photo(width: int, height: int):  # noqa: ANN201 - a PIL image
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (height // 64, width // 64, 3), dtype=np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(8))
    pen = ImageDraw.Draw(base)
    for _ in range(40):
        x, y = rng.integers(0, width), rng.integers(0, height)
        pen.ellipse((x, y, x + width // 10, y + height // 10), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    noise = rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(base, float) + noise, 0, 255).astype(np.uint8))


def timed(path: Path, repeat: int) -> float:
    from mmsearch.media.files import decode_file

    data = path.read_bytes()
    decode_file(path, data, 224)  # warm: plugins registered, libraries loaded
    start = time.perf_counter()
    for _ in range(repeat):
        decode_file(path, data, 224)
    return (time.perf_counter() - start) / repeat * 1000


def photos(folder: Path, repeat: int) -> None:
    import pillow_heif
    from test_camera_roll import SHAPES, write_dng

    picture = photo(4032, 3024)
    picture.save(folder / "p.jpg", quality=90)
    pillow_heif.from_pillow(picture).save(folder / "p.heic", quality=90)
    picture.save(folder / "p.avif", quality=70)
    write_dng(folder / "p.dng", 6000, 4000)
    (folder / "p.svg").write_text(SHAPES.format(w=64, h=64))
    jpeg = timed(folder / "p.jpg", repeat)
    print(f"{'format':<16}{'ms per file':>12}{'x JPEG':>9}{'bytes':>12}")
    for name in ("p.jpg", "p.heic", "p.avif", "p.dng", "p.svg"):
        cost = jpeg if name == "p.jpg" else timed(folder / name, max(1, repeat // (4 if name == "p.dng" else 1)))
        print(f"{name:<16}{cost:>12.1f}{cost / jpeg:>9.2f}{(folder / name).stat().st_size:>12,}")


def video(folder: Path, width: int, height: int, seconds: float) -> dict:
    import av
    from PIL import Image

    path = folder / f"v{height}.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "250"}
        base = photo(width, height)
        for n in range(int(seconds * 30)):
            shifted = Image.fromarray(np.roll(np.asarray(base), n * 4, axis=1))
            for packet in stream.encode(av.VideoFrame.from_image(shifted)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    # VmHWM (not ru_maxrss, which a child inherits from the forking parent): this process's own peak.
    code = ("import json, re, sys, time\nfrom mmsearch.media.kinds.video import read_video\nimport av, PIL.Image\n"
            "peak = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024\n"
            "before = peak()\n"
            "start = time.perf_counter(); v = read_video(sys.argv[1], 224); took = time.perf_counter() - start\n"
            "print(json.dumps({'seconds': took, 'frames': len(v.frames), 'baseline_mb': before, 'rss_mb': peak()}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                                    check=True).stdout)
    return {**out, "length": seconds, "bytes": path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each generated video")
    parser.add_argument("--repeat", type=int, default=8, help="decodes of each photo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos(folder, args.repeat)
        print(f"\n{'video':<16}{'s per minute':>13}{'frames':>8}{'peak RSS MB':>13}{'before decoding':>17}")
        for name, (width, height) in (("1080p H.264", (1920, 1080)), ("4K H.264", (3840, 2160))):
            found = video(folder, width, height, args.seconds)
            per_minute = found["seconds"] * 60 / found["length"]
            print(f"{name:<16}{per_minute:>13.2f}{found['frames']:>8}{found['rss_mb']:>13.0f}{found['baseline_mb']:>17.0f}")


if __name__ == "__main__":
    main()
