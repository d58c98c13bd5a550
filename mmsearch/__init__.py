"""mmsearch: private, local-first multimodal image search (open_clip + sentence-transformers + Chroma)."""

from .config import Config
from .engine import SearchEngine
from .errors import (
    ConfigError,
    DatabaseBusyError,
    DimensionMismatchError,
    ImageReadError,
    IndexMismatchError,
    MMSearchError,
    ModelLoadError,
    QueryError,
    StoreError,
)
from .records import Hit, IndexReport

__version__ = "0.1.0"
__all__ = [
    "Config", "ConfigError", "DatabaseBusyError", "DimensionMismatchError", "Hit", "ImageReadError", "IndexMismatchError",
    "IndexReport", "MMSearchError", "ModelLoadError", "QueryError", "SearchEngine", "StoreError", "__version__",
]
