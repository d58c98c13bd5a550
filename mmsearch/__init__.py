"""mmsearch: private, local-first multimodal image search (open_clip + sentence-transformers + Chroma)."""

import os

# OpenBLAS's worker threads spin for 2^28 cycles (~0.1 s) after each matrix product. A text query runs
# its encoder's products and then Chroma's searches; spinning workers would take the CPU those searches
# need (measured at 100k images on 2 cores: p50 58 -> 40-48 ms with 2^20). Read when numpy loads, so this
# only takes effect when mmsearch is imported first; an explicit setting wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from .config import Config
from .duplicates import DuplicateGroup
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
    ReindexError,
    StoreError,
)
from .records import Hit, IndexReport, ReindexReport

__version__ = "0.1.0"
__all__ = [
    "Config", "ConfigError", "DatabaseBusyError", "DimensionMismatchError", "DuplicateGroup", "Hit", "ImageReadError",
    "IndexMismatchError", "IndexReport", "MMSearchError", "ModelLoadError", "QueryError", "ReindexError", "ReindexReport",
    "SearchEngine", "StoreError", "__version__",
]
