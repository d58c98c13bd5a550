"""Reading images: orientation, transparency, embedded captions, EXIF facts, unreadable input."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from PIL import Image, PngImagePlugin

from mmsearch.errors import ImageReadError
from mmsearch.media.images import read_image, to_rgb


def _jpeg(image: Image.Image, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif or Image.Exif(), quality=95)
    return out.getvalue()


def test_exif_orientation_is_applied_before_encoding():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    rgb, info = read_image(_jpeg(image, exif))
    assert rgb.size == (20, 40) and (info.width, info.height) == (20, 40)
    top = rgb.getpixel((10, 5))
    assert top[2] > 200 and top[0] < 60  # the blue half is on top after rotation


def test_transparency_becomes_white_not_black():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.getpixel((5, 5)) == (255, 255, 255)


def test_exif_captions_date_and_camera_are_read():
    exif = Image.Exif()
    exif[0x010E] = "A lighthouse on a cliff"
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"
    exif[0x9C9C] = "灯塔".encode("utf-16-le")
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2021:07:14 18:30:00"
    sub[0x9286] = b"ASCII\x00\x00\x00Summer holiday"
    _, info = read_image(_jpeg(Image.new("RGB", (8, 8)), exif))
    assert info.captions == ["A lighthouse on a cliff", "灯塔", "Summer holiday"]
    assert info.camera == "Canon EOS 5D"
    assert info.taken == datetime(2021, 7, 14, 18, 30)


def test_png_text_chunks_are_captions():
    chunk = PngImagePlugin.PngInfo()
    chunk.add_text("Description", "A harbour at dawn")
    chunk.add_text("Software", "not a caption")
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG", pnginfo=chunk)
    _, info = read_image(out.getvalue())
    assert info.captions == ["A harbour at dawn"]


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty file"),
    (b"this is not an image at all", "not an image"),
    (_jpeg(Image.new("RGB", (64, 64)))[:200], "cannot decode"),
])
def test_unreadable_input_raises_image_read_error_with_reason(data, reason):
    with pytest.raises(ImageReadError, match=reason):
        read_image(data)


def test_decompression_bomb_is_refused_from_the_header_without_decoding():
    out = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(out, "PNG")  # 144 M pixels declared, ~20 kB on disk
    with pytest.raises(ImageReadError, match="exceeds the 120,000,000 pixel limit"):
        read_image(out.getvalue())
