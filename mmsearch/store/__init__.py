"""The index on disk or on a Chroma server: the client (retry and error translation), generations and migrations."""

from .client import CaptionMatch, Entry, Store

__all__ = ["CaptionMatch", "Entry", "Store"]
