"""One writer per embedded database: an exclusive lock file held by the writing process.

Chroma's ``PersistentClient`` is not process-safe: concurrent writers have corrupted HNSW segments
(chroma-core/chroma #3792, #961). A process that indexes or serves a database folder holds
``<db>/mmsearch.lock`` until it exits; a second one gets a message naming the holder.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DatabaseBusyError

if TYPE_CHECKING:
    from .config import Config

LOCK_NAME = "mmsearch.lock"
_held: dict[str, int] = {}  # lock path -> file descriptor; this process's locks, shared by its engines
_guard = threading.Lock()


def acquire_writer_lock(db: str | Path) -> None:
    """Hold the writer lock of ``db`` for the rest of this process (re-entrant within a process).

    Raises:
        DatabaseBusyError: another process holds it.
    """
    Path(db).mkdir(parents=True, exist_ok=True)
    path = str(Path(db).resolve() / LOCK_NAME)
    with _guard:
        if path in _held:
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # a lock file left by an older version may be world-readable
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            serving = (" (index from its page's Index panel instead; with serve --watch it indexes new files itself)"
                       if "mmsearch serve" in holder else
                       " (it indexes what changes in its folders by itself)" if "mmsearch watch" in holder else "")
            raise DatabaseBusyError(
                f"the database {db} is in use by {holder}{serving}; wait for it to finish or stop it, or share the index "
                f"through a Chroma server (chroma run, then --chroma-url) - two processes writing one embedded "
                f"Chroma database can corrupt it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_description().encode(), 0)
        _held[path] = fd  # released by the OS when the process exits, even on kill -9


def _holder_description() -> str:
    """``pid 1234 (mmsearch serve)``: what a refused second writer is told. The program and its command
    only: arguments can hold secrets (``--auth user:password``)."""
    program, *args = sys.argv or [""]
    name = Path(program).name
    if name in ("__main__.py", "-m", "-c") or name.startswith("python"):
        name = "mmsearch"
    command = next((a for a in args if not a.startswith("-")), "") if name == "mmsearch" else ""
    return f"pid {os.getpid()} ({' '.join(part for part in (name, command) if part)[:80]})"


def lock_for_writing(config: Config) -> None:
    """Become the one process that may write ``config``'s database (held until the process exits). A Chroma
    server (``chroma_url``) serialises writers itself, so no lock is taken for it.

    Raises:
        DatabaseBusyError: another process indexes or serves it.
    """
    if not config.chroma_url:
        acquire_writer_lock(config.db)
