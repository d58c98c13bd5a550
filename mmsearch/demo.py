"""``mmsearch demo``: index a folder (``sample_images/`` by default) and open the web page.

When the configured weights cannot be loaded (no network and no local checkpoint), the demo says so in
one line and falls back to the offline profile: caption search with the packaged all-MiniLM-L6-v2,
with the image signal shown as unavailable (never as made-up scores).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import MIN_RELEVANCE, Config, default_db_path
from .engine import SearchEngine
from .errors import ConfigError, ModelLoadError
from .present import format_hits, no_matches, profile_label

DEMO_DB = ".mmsearch-demo"
MANIFESTS = ("captions.csv", "captions.jsonl")
# The offline profile's MiniLM knows English only; the multilingual default model also answers 一只猫.
SAMPLE_QUERIES = ("a cat looking at the camera", "a rocket launch")


def demo_engine(config: Config) -> SearchEngine:
    """An engine with loaded models: the configured ones, or the offline profile if they cannot load."""
    engine = SearchEngine(config=config)
    try:
        engine.encoders  # noqa: B018 - load now, to fall back before indexing
        return engine
    except ModelLoadError as exc:
        if not config.has_image_model:
            raise
        offline = Config.offline_profile(replace(config, db=config.db + "-offline"))
        print(f"mmsearch demo: {exc} -> using the OFFLINE PROFILE (caption search with all-MiniLM-L6-v2; "
              f"image signal unavailable) in {offline.db}", file=sys.stderr)
        engine = SearchEngine(config=offline)
        engine.encoders  # noqa: B018
        return engine


def run_demo(config: Config, folder: str, serve: bool = True, explicit_db: bool = False,
             server: dict[str, Any] | None = None) -> int:
    """Index ``folder`` (with its captions.csv/jsonl if present), print sample searches, serve the page."""
    if not Path(folder).is_dir():
        raise ConfigError(f"the demo indexes a folder of images and {folder!r} is not one here; run it from the "
                          "mmsearch repository (it ships sample_images/) or name a folder: mmsearch demo FOLDER")
    if not explicit_db and config.db == default_db_path():
        config = replace(config, db=str(Path(DEMO_DB).absolute()))
    engine = demo_engine(config)
    manifests = [str(Path(folder) / m) for m in MANIFESTS if (Path(folder) / m).is_file()]
    report = engine.index([folder], captions=manifests, progress=True)
    print(f"{profile_label(engine.signature)}\nindexed {folder}: {report.summary()}")
    for query in SAMPLE_QUERIES:  # as `mmsearch search` shows them: close matches only, copies folded
        hits = engine.search(query, k=3, min_relevance=MIN_RELEVANCE, collapse=True)
        print(f"\nmmsearch search {query!r}\n{format_hits(hits) if hits else no_matches(query)}")
    if serve:
        from mmsearch_web.app import launch

        launch(engine, **(server or {}))
    return 0
