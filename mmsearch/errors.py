"""The one error family of mmsearch: every expected failure is an ``MMSearchError``."""

from __future__ import annotations


class MMSearchError(Exception):
    """Base class of every error mmsearch raises on purpose; its message is one line for users."""


class ConfigError(MMSearchError):
    """A setting, argument or input file (e.g. a captions manifest) is invalid."""


class ModelLoadError(MMSearchError):
    """Model weights or configs could not be loaded (no network, wrong path, corrupt file)."""


class DimensionMismatchError(MMSearchError):
    """The text embedder and the image encoder do not share one vector space (different dimensions)."""


class IndexMismatchError(MMSearchError):
    """The index on disk was built by other models than the ones requested."""


class ReindexError(MMSearchError):
    """A model change (``mmsearch reindex``) cannot switch or roll back; the index keeps answering as before."""


class StoreError(MMSearchError):
    """The vector store (Chroma) failed or could not be opened."""


class DatabaseBusyError(StoreError):
    """Another process is writing to (or serving) this embedded database."""


class ImageReadError(MMSearchError):
    """One image could not be read; indexing skips the file and reports this reason."""


class QueryError(MMSearchError):
    """A query cannot be answered as asked (e.g. an image query without an image encoder)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type name), cut to ``limit`` characters."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
