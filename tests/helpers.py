"""Helpers the tests import: a tiny open_clip config, generated photos, free ports, servers. Fixtures that
use them are in ``conftest.py``."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch import Config, SearchEngine
from mmsearch.encoders import Encoders
from mmsearch.records import IndexReport

TINY_CLIP = {
    "embed_dim": 384,  # MiniLM's dimension, so the packaged MiniLM can be the text embedder
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

def tiny_clip_files(folder: Path, dim: int, seed: int) -> tuple[str, str]:
    """A tiny open_clip model of ``dim`` dimensions, registered from a JSON config in ``folder``, with fixed
    random weights: (config path, checkpoint path)."""
    import json

    import open_clip
    import torch

    name = f"mmsearch-tiny{dim}-{seed}"
    config = folder / f"{name}.json"
    config.write_text(json.dumps({**TINY_CLIP, "embed_dim": dim}))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    checkpoint = folder / f"{name}.pt"
    torch.save(open_clip.create_model(name).state_dict(), checkpoint)
    return str(config), str(checkpoint)


# (relative path, colour, caption source, caption)
PHOTOS = [
    ("red_bicycle.png", (200, 30, 30), "manifest", "a red bicycle leaning against a brick wall"),
    ("black_cat.jpg", (20, 20, 20), "manifest", "a black cat sleeping on a sofa"),
    ("pasta.jpg", (230, 180, 60), "sidecar", "a plate of spaghetti with tomato sauce"),
    ("holidays/beach.jpg", (240, 220, 150), "manifest", "waves rolling onto a sandy beach at sunset"),
    ("holidays/mountain.png", (200, 210, 250), "manifest", "snowy mountain peaks under a clear blue sky"),
    ("holidays/uncaptioned.jpg", (10, 120, 10), None, ""),
]


def save_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (96, 64), **save: object) -> Path:
    """A small image with a colour field and a darker square, so it is not uniform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    image.paste(tuple(c // 2 for c in colour), (8, 8, 40, 40))
    image.save(path, **save)
    return path


def make_photos(root: Path) -> Path:
    """Write the ``PHOTOS`` set under ``root`` (see the ``photos`` fixture)."""
    rows = ["path,caption"]
    for rel, colour, source, caption in PHOTOS:
        path = save_image(root / rel, colour)
        if source == "manifest":
            rows.append(f'{rel},"{caption}"')
        elif source == "sidecar":
            path.with_name(path.name + ".txt").write_text(caption + "\n")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root


CAMERA = "Canon EOS 5D"


def index_photos(engine: SearchEngine, photos: Path) -> IndexReport:
    """Index a ``make_photos`` folder with its manifest, as a user would (``mmsearch index DIR --captions``)."""
    return engine.index([photos], captions=photos / "captions.csv")


def names(hits: list) -> list[str]:
    """File names of hits, best first: ``Hit`` records (the library) or the page's dicts (``file``)."""
    return [Path(h["file"] if isinstance(h, dict) else h.path).name for h in hits]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_big_photo(root: Path) -> Path:
    """A 3000x2000 JPEG with EXIF camera and date, captioned through a sidecar."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"
    exif.get_ifd(0x8769)[0x9003] = "2021:07:14 18:30:00"
    noise = np.random.default_rng(1).integers(0, 255, (2000, 3000, 3), dtype=np.uint8)
    path = root / "big" / "harbour.jpg"
    path.parent.mkdir(parents=True)
    Image.fromarray(noise).save(path, quality=90, exif=exif)
    path.with_name("harbour.jpg.txt").write_text("fishing boats moored in a harbour\n")
    return path


@contextmanager
def served(engine: SearchEngine, **options: object) -> Iterator[str]:
    """The page of ``engine`` on a free 127.0.0.1 port, as ``mmsearch serve`` launches it; yields its URL."""
    from mmsearch_web.app import launch

    port = free_port()
    demo = launch(engine, port=port, prevent_thread_lock=True, quiet=True, **options)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def launch_site(base: Path, config: Config, encoders: Encoders, signs: dict[str, list[str]] | None = None
                ) -> Iterator[dict]:
    """Index ``make_photos`` plus a big photo (and photos of ``signs``: file name -> lines of text) under
    ``base``, reading text in photos (``--ocr``), and serve it with ``web.app.launch`` exactly as
    ``mmsearch serve`` does (plus a 200 kB upload limit); yields url, engine, photos, base; stops the server."""
    photos = make_photos(base / "photos")
    add_big_photo(photos)
    for name, lines in (signs or {}).items():
        render_text_photo(photos / name, lines, size=(900, 600), font_size=56)
    (base / "secret.txt").write_text("not for the browser")
    engine = SearchEngine(base / "db", config=config, encoders=encoders, caption_weight=1.0, ocr=True)
    index_photos(engine, photos)
    with served(engine, max_file_size="200kb") as url:
        yield {"url": url, "engine": engine, "photos": photos, "base": base}


def folder_of_images(root: Path, n: int) -> Path:
    """``n`` small distinct PNGs in ``root``."""
    for i in range(n):
        save_image(root / f"img{i:04d}.png", ((37 * i) % 256, (11 * i) % 256, 90), size=(40, 30))
    return root


class ChromaServer:
    """A real ``chroma run`` on a free 127.0.0.1 port; ``stop()``/``start()`` restart it on the same data and port."""

    def __init__(self, path: Path):
        self.path, self.port = path, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        chroma = Path(sys.executable).with_name("chroma")
        self.proc = subprocess.Popen([str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("chroma run did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def unit(vector: np.ndarray) -> np.ndarray:
    """Normalised copy of a vector."""
    return vector / np.linalg.norm(vector)


FONTS = {"latin": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
         "cjk": "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"}  # fonts-dejavu-core, fonts-noto-cjk


def render_text_photo(path: Path, lines: list[str], *, size: tuple[int, int] = (1200, 800), angle: float = 0.0,
                      busy: bool = False, quality: int = 90, seed: int = 0, font_size: int = 64) -> Path:
    """A photo-like JPEG with ``lines`` of text on a sign: optional busy background (noise and shapes), a
    slight rotation and JPEG compression. CJK lines use Noto Sans CJK, others DejaVu Sans Bold."""
    from PIL import ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    if busy:
        noise = rng.integers(60, 200, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        image = Image.fromarray(noise).resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
            draw.ellipse((x, y, x + int(rng.integers(40, 200)), y + int(rng.integers(40, 200))),
                         fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    else:
        image = Image.new("RGB", size, (int(rng.integers(150, 230)), int(rng.integers(150, 230)), 200))
    sign = Image.new("RGB", (size[0] - 160, 40 + len(lines) * (font_size + 30)), (245, 245, 240))
    draw = ImageDraw.Draw(sign)
    for n, line in enumerate(lines):
        cjk = any("\u3400" <= c <= "\u9fff" for c in line)
        font = ImageFont.truetype(FONTS["cjk" if cjk else "latin"], font_size)
        draw.text((30, 20 + n * (font_size + 30)), line, font=font, fill=(20, 20, 30))
    if angle:
        sign = sign.rotate(angle, expand=True, fillcolor=(245, 245, 240), resample=Image.Resampling.BICUBIC)
    image.paste(sign, (80, max(0, (size[1] - sign.height) // 2)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality)
    return path


def tiny_sentence_model(folder: Path, minilm: str, arch: str, pooling: str, dense: dict | None = None,
                        hidden: int = 64, normalize: bool = False, activation: str = "gelu") -> Path:
    """A small sentence-transformers folder with random weights: ``arch`` ``bert`` (M3E-shaped with mean
    pooling), ``distilbert`` or ``xlmr`` (BGE-M3-shaped with CLS pooling and ``normalize``), the MiniLM
    tokenizer, ``pooling`` mode, optional Dense layer (to 32 dims), the layers' ``activation``."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    torch.manual_seed(7)
    backbone = folder / "backbone"
    vocab = 30522  # the MiniLM tokenizer's
    if arch == "bert":
        model = BertModel(BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, hidden_act=activation), add_pooling_layer=False)
    elif arch == "distilbert":
        model = DistilBertModel(DistilBertConfig(vocab_size=vocab, dim=hidden, n_layers=2, n_heads=4, hidden_dim=128,
                                                 activation=activation))
    else:
        model = XLMRobertaModel(XLMRobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2,
                                                 num_attention_heads=4, intermediate_size=128, pad_token_id=0,
                                                 max_position_embeddings=80, hidden_act=activation),
                                add_pooling_layer=False)
    with torch.no_grad():  # random LayerNorm and bias values, so that a wrong parameter shows
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.3)
    model.save_pretrained(backbone)
    AutoTokenizer.from_pretrained(minilm).save_pretrained(backbone)
    modules = [models.Transformer(str(backbone), max_seq_length=48), models.Pooling(hidden, pooling)]
    if dense:
        modules.append(models.Dense(hidden, 32, **dense))
    if normalize:
        modules.append(models.Normalize())
    out = folder / "model"
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (for character error rates of OCR)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def add_lexical_head(folder: Path, hidden: int, seed: int = 3) -> Path:
    """Give a BGE-M3-shaped folder BGE-M3's ``sparse_linear.pt`` (and ``colbert_linear.pt``, which
    FlagEmbedding loads too), with random weights and a positive bias so that most tokens weigh something."""
    import torch

    torch.manual_seed(seed)
    head = torch.nn.Linear(hidden, 1)
    with torch.no_grad():
        head.bias.fill_(0.6)
    torch.save(head.state_dict(), folder / "sparse_linear.pt")
    torch.save(torch.nn.Linear(hidden, hidden).state_dict(), folder / "colbert_linear.pt")
    return folder


def bge_m3_flag_model() -> type:
    """FlagEmbedding's ``BGEM3FlagModel``, the reference for lexical weights. FlagEmbedding 1.4.2 imports its
    decoder-only rerankers when it is imported, and they import transformers internals that transformers 5
    removed (``transformers.modeling_attn_mask_utils``); the embedder does not use them, so the reranker
    package is stood in for before the import."""
    import types

    if "FlagEmbedding" not in sys.modules:
        def stand_in(name: str) -> type:
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {})

        rerankers = types.ModuleType("FlagEmbedding.inference.reranker")
        rerankers.__path__, rerankers.__file__ = [], "stand-in"
        rerankers.__getattr__ = stand_in  # type: ignore[method-assign]
        sys.modules["FlagEmbedding.inference.reranker"] = rerankers
        sys.modules["FlagEmbedding.inference.reranker.model_mapping"] = rerankers
    from FlagEmbedding import BGEM3FlagModel

    return BGEM3FlagModel


def count_encoder_calls(monkeypatch: object, image: object, text: object) -> tuple[list, list[str]]:
    """Record what reaches an image encoder (which then encodes nothing) and a text encoder (which still
    encodes): (image batches, texts)."""
    images: list = []
    texts: list[str] = []
    for method in ("encode_images", "encode_prepared"):
        monkeypatch.setattr(image, method, lambda x: images.append(x))  # type: ignore[attr-defined]
    encode = text.encode_texts  # type: ignore[attr-defined]
    monkeypatch.setattr(text, "encode_texts", lambda t: texts.extend(t) or encode(t))  # type: ignore[attr-defined]
    return images, texts


def scene_picture(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A distinct picture (blocks of colour from ``seed``), a scene of a generated video."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)


def write_video(path: Path, scenes: list[Image.Image], seconds: float = 4.0, fps: int = 10, codec: str = "libx264",
                gop: int = 1000, metadata: dict[str, str] | None = None, faststart: bool = False) -> Path:
    """A video of ``scenes`` shown ``seconds`` each, encoded by PyAV with one keyframe every ``gop`` frames
    (longer than a scene by default: frames must be found by time, not at keyframes)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else None) as container:
        for key, value in (metadata or {}).items():
            container.metadata[key] = value
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = scenes[0].size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for scene in scenes:
            for _ in range(int(seconds * fps)):
                for packet in stream.encode(av.VideoFrame.from_image(scene)):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def run_until(cmd: list[str], env: dict[str, str], done: int, sig: int) -> tuple[int, str]:
    """Start an index run; once its progress line (``mmsearch.ingest.meter``) passes ``done`` images, send
    ``sig``. Returns (code, stderr).

    The run holds at ``done`` images until it is stopped (``MMSEARCH_HOLD_AT``), so the signal always lands
    mid-run, however fast the machine."""
    from mmsearch.ingest.meter import METER_LINE
    from mmsearch.ingest.progress import HOLD_VARIABLE

    proc = subprocess.Popen(cmd, env={**env, HOLD_VARIABLE: str(done)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    seen = bytearray()

    def watch() -> None:
        sent = False
        while chunk := proc.stderr.read1(4096):  # type: ignore[union-attr]
            seen.extend(chunk)
            text = bytes(seen).decode("utf-8", "replace").replace("\r", "\n")
            counts = [int(m["done"].replace(",", "")) for m in METER_LINE.finditer(text) if m["total"]]
            if not sent and counts and max(counts) >= done:
                proc.send_signal(sig)
                sent = True

    reader = threading.Thread(target=watch)
    reader.start()
    code = proc.wait(timeout=300)
    reader.join()
    return code, seen.decode("utf-8", "replace")


def records_read_back(monkeypatch) -> list[str]:
    """Record the ids of the image records read back from the store from now on: by a read of every record
    (``Store.pages``) or of what writes wrote (``Store.written_since``)."""
    from mmsearch.store.client import Store

    read, pages, written_since = [], Store.pages, Store.written_since

    def every(self, vectors=()):
        for ids, metas in pages(self, vectors):
            read.extend(ids)
            yield ids, metas

    def since(self, seq, vectors=()):
        for i, meta in written_since(self, seq, vectors):
            read.append(i)
            yield i, meta

    monkeypatch.setattr(Store, "pages", every)
    monkeypatch.setattr(Store, "written_since", since)
    return read
