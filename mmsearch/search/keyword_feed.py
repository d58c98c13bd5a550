"""The keyword index of a new library, built from its first index run's own writes (``KeywordFeed``).

Without it, the end of that run reads every record back to build the index: 134 s at 653k photos, most of
it Chroma handing the records back. The feed takes each write's records as the store makes it
(``Store.follow_writes``) and adds them to the index in chunks, so the run's end has the index already.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..store.collections import VECTOR
from . import keywords
from .keywords import KeywordIndex

logger = logging.getLogger(__name__)


class KeywordFeed:
    """Builds a keyword index from numbered writes, starting from an empty store whose next write is
    number ``through``.

    Each write must carry the next number (a failed write is never told, and the next write takes its
    number). A number skipped is a write the feed did not see (a removal, a metadata update, another
    writer): it stops there, and what it built is still exact up to it, as its ``through`` says; the
    store's numbered writes give the rest (``Store.changed_since``). The images' captions' vectors the writes
    carry are kept (``KeywordIndex.caption_vectors``), and with ``vectors`` the images' own (where the index has
    image vectors), written as they come into base files beside the keyword file ``spill_to``
    (``KeywordIndex.for_building``).
    """

    def __init__(self, through: int, vectors: bool = True, spill_to: Path | None = None) -> None:
        self._index = KeywordIndex.for_building(spill_to)
        self._index.through = through
        self._next = through  # the number the next write it can take must carry
        self._pending: dict[str, dict] = {}
        self._vectors = vectors
        self.stopped = False

    def written(self, seq: int, ids: list[str], metas: list[dict]) -> None:
        """One write's records (``Store.follow_writes``)."""
        if self.stopped:
            return
        if seq != self._next:
            logger.debug("keyword feed: write %d after %d; the rest is read from the store", seq, self._next - 1)
            self.stopped = True
            return
        self._pending.update(zip(ids, metas if self._vectors else
                                 ({k: v for k, v in meta.items() if k != VECTOR} for meta in metas)))
        self._next = seq + 1
        if len(self._pending) >= keywords.CHUNK:  # records held before they go into the index
            self._flush()

    def _flush(self) -> None:
        self._index.extend(self._pending.items(), through=self._next)  # its own: no search reads it yet
        self._pending = {}

    def index(self) -> KeywordIndex:
        """The index of everything taken, exact for the writes before its ``through``."""
        if self._pending:
            self._flush()
        self._index.finish()  # before any search reads it
        return self._index
