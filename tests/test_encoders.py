"""Encoders: exact agreement with open_clip, normalisation, MiniLM semantics, load and dimension errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import TINY_CLIP, save_image
from PIL import Image

from mmsearch import Config, DimensionMismatchError, ModelLoadError
from mmsearch.encoders import load_encoders, model_signature


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_image_and_text_vectors_equal_open_clips_own(tiny_clip, tiny_encoders, tmp_path):
    import open_clip
    import torch

    model, _, preprocess = open_clip.create_model_and_transforms("mmsearch-tiny", pretrained=tiny_clip[1])
    model.eval()
    images = [Image.open(save_image(tmp_path / f"{i}.png", (40 * i, 90, 200 - 30 * i), size=(80 + 9 * i, 50)))
              .convert("RGB") for i in range(5)]
    texts = ["a red bicycle", "一只猫", "ein Hund am Strand", ""]
    with torch.no_grad():
        want_images = model.encode_image(torch.stack([preprocess(im) for im in images])).numpy()
        want_texts = model.encode_text(open_clip.get_tokenizer("mmsearch-tiny")(texts)).numpy()

    got_images = tiny_encoders.image.encode_images(images)
    got_texts = tiny_encoders.image.encode_texts(texts)

    assert got_images.shape == (5, 384) and got_texts.shape == (4, 384)
    assert got_images.dtype == np.float32 and got_texts.dtype == np.float32
    assert _cosines(got_images, want_images).min() >= 0.9999
    assert _cosines(got_texts, want_texts).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got_images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got_texts, axis=1), 1.0, atol=1e-5)


def test_minilm_vectors_are_normalised_and_semantic(tiny_encoders):
    text = tiny_encoders.text
    vectors = text.encode_texts(["a kitten napping on the couch", "a black cat sleeping on a sofa",
                                 "a plate of spaghetti with tomato sauce"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert text.encode_texts([]).shape == (0, 384)


def test_signature_names_models_without_loading_them(tiny_config):
    sig = model_signature(tiny_config)
    # the packaged MiniLM's folder is recognised as the model it is, not named after its folder ("model")
    minilm = "sentence-transformers:sentence-transformers/all-MiniLM-L6-v2"
    assert sig == {"image_model": "open_clip:mmsearch-tiny/mmsearch-tiny.pt", "text_model": minilm,
                   "caption_model": minilm}  # no caption model: captions in the text model's space
    clip_text = Config(db="x", clip_model="ViT-B-32", clip_pretrained="openai", text_model="clip")
    clip = "open_clip:ViT-B-32/openai"
    assert model_signature(clip_text) == {"image_model": clip, "text_model": clip, "caption_model": clip}
    assert model_signature(Config(db="x", text_model="clip", caption_model="BAAI/bge-m3"))["caption_model"] == \
        "sentence-transformers:BAAI/bge-m3"
    assert model_signature(Config.offline_profile(clip_text))["image_model"] == "none"


def test_text_model_clip_uses_the_clip_text_tower(tiny_config, tiny_encoders):
    from dataclasses import replace

    encoders = load_encoders(replace(tiny_config, text_model="clip"))
    np.testing.assert_allclose(encoders.text.encode_texts(["a red bicycle"]),
                               tiny_encoders.image.encode_texts(["a red bicycle"]), atol=1e-6)


def test_dimension_mismatch_names_both_models_and_dimensions(tmp_path, tiny_clip, minilm):
    import open_clip
    import torch

    config_path = tmp_path / "mmsearch-tiny256.json"
    config_path.write_text(json.dumps({**TINY_CLIP, "embed_dim": 256}))
    open_clip.add_model_config(config_path)
    checkpoint = tmp_path / "tiny256.pt"
    torch.save(open_clip.create_model("mmsearch-tiny256").state_dict(), checkpoint)
    config = Config(db=str(tmp_path / "db"), clip_model=str(config_path), clip_pretrained=str(checkpoint), text_model=minilm)
    with pytest.raises(DimensionMismatchError) as err:
        load_encoders(config)
    message = str(err.value)
    assert "384" in message and "256" in message
    assert "mmsearch-tiny256" in message and "all-MiniLM-L6-v2" in message


def test_missing_checkpoint_file_says_what_to_set(tiny_clip, minilm):
    config = Config(db="x", clip_model=tiny_clip[0], clip_pretrained="/nowhere/ViT-B-32.pt", text_model=minilm)
    with pytest.raises(ModelLoadError, match="MMSEARCH_CLIP_PRETRAINED") as err:
        load_encoders(config)
    assert "/nowhere/ViT-B-32.pt" in str(err.value) and "\n" not in str(err.value)


def test_hub_weights_offline_fail_fast_with_the_setting_to_use():
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as err:
        load_encoders(Config(db="x"))  # ViT-B-32 / openai, hub switched off by conftest
    message = str(err.value)
    assert "ViT-B-32" in message and "openai" in message and "MMSEARCH_CLIP_PRETRAINED" in message
    assert "unreachable" in message and "\n" not in message
    assert time.monotonic() - start < 30  # no minute-long retry loop (generous bound; typical 0.1 s)


def test_unknown_text_model_folder_says_what_to_set(tiny_clip):
    config = Config(db="x", clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1], text_model="./no-such-model")
    with pytest.raises(ModelLoadError, match="MMSEARCH_TEXT_MODEL"):
        load_encoders(config)


def test_unknown_tag_lists_known_tags(tiny_clip, minilm):
    with pytest.raises(ModelLoadError, match="unknown pretrained tag 'nonsense'.*openai"):
        load_encoders(Config(db="x", clip_model="ViT-B-32", clip_pretrained="nonsense", text_model=minilm))


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_reports_unloadable_weights_in_one_line_with_exit_1(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    (tmp_path / "db").mkdir()  # an (empty) index folder: a search of one that does not exist says so first
    # A text search loads only the text model; indexing loads the image model first.
    for command, message in [(["search", "a cat"], "cannot load text model 'sentence-transformers/clip-ViT-B-32-multilingual"
                                                   "-v1': not in the local cache"),
                             (["index", str(tmp_path)], "cannot load open_clip weights 'openai' for ViT-B-32")]:
        proc = subprocess.run([sys.executable, "-m", "mmsearch", *command, "--db", str(tmp_path / "db")],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"mmsearch: error: {message}"), lines[0]
        assert "Traceback" not in proc.stderr


SAMPLES = ("astronaut.png", "china-temple.jpg", "chelsea-cat.png", "coffee.png")


def _phone_photo(name: str, size: tuple[int, int] = (4032, 3024)) -> bytes:
    """A sample photo scaled up to phone size, saved as a JPEG (what draft decoding is for)."""
    import io
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "sample_images"
    buffer = io.BytesIO()
    Image.open(root / name).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_shrinking_in_the_decode_threads_gives_open_clip_exactly_the_same_input(tiny_encoders):
    import torch

    from mmsearch.media.images import read_image, shrink_to

    encoder = tiny_encoders.image
    assert encoder.input_size == TINY_CLIP["vision_cfg"]["image_size"]
    for size in [(640, 480), (481, 1033), (65, 64), (3000, 97), (64, 50)]:
        image = Image.open(save_image_bytes(size)).convert("RGB")
        assert torch.equal(encoder.preprocess(shrink_to(image, encoder.input_size)), encoder.preprocess(image)), size
    # Non-JPEGs decode in full and are only shrunk: identical vectors.
    png = save_image_bytes((900, 700), "PNG").getvalue()
    full, small = read_image(png)[0], read_image(png, encoder.input_size)[0]
    assert np.array_equal(encoder.encode_images([full]), encoder.encode_images([small]))


def save_image_bytes(size: tuple[int, int], fmt: str = "PNG"):
    import io

    rng = np.random.default_rng(size[0] * 7 + size[1])
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, fmt)
    buffer.seek(0)
    return buffer


def test_draft_decoding_of_phone_jpegs_keeps_vit_b_32_vectors_within_0_99_cosine():
    """Reduced-scale JPEG decoding (the default indexing path) against a full decode, on ViT-B-32's real
    architecture and preprocess (random weights: no hub here; the input difference is what is measured)."""
    import open_clip
    import torch

    from mmsearch.media.images import read_image

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
    model.eval()
    for name in SAMPLES:
        data = _phone_photo(name)
        (full, _), (fast, info) = read_image(data), read_image(data, 224)
        assert (info.width, info.height) == (4032, 3024) and min(fast.size) == 224
        a, b = preprocess(full), preprocess(fast)
        assert float((a - b).abs().mean()) < 0.03, name  # normalised pixel units (std ~1)
        with torch.inference_mode():
            va, vb = model.encode_image(torch.stack([a, b])).numpy()
        assert _cosines(va[None], vb[None])[0] >= 0.99, name
