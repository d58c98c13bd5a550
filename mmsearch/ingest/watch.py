"""Keeping an index current: watch its folders and index what changes, as ``mmsearch index`` would.

The watcher is ``watchfiles`` (Rust ``notify``: inotify, FSEvents, kqueue), already installed with uvicorn,
with its polling mode for file systems that send no events (network mounts: ``poll=True``). It was kept over
``watchdog`` because it batches events itself (``debounce``), takes a stop event, and polls with the same
interface.

- **Bursts are one run.** Changes are gathered until the folders have been quiet for ``QUIET`` seconds (at
  most ``MAX_WAIT`` while a long copy goes on), then the folders that changed are indexed in one run, which
  batches exactly as ``index`` does: copying 5,000 files is one or a few runs, not 5,000.
- **Half-copied files wait.** A new or changed file is indexed once its size and time have stayed the same
  for ``SETTLE`` seconds; one still growing waits for the next run.
- **Deleted and moved files.** The run indexes each changed file's folder with pruning, so a deleted file
  leaves the index and a file moved between two changed folders keeps its vectors (a move, as ``index``
  finds it).
- **Never watched:** hidden files and folders, the database folder and the index's own files (thumbnails),
  so indexing never feeds the watcher.
- **A root that disappears** (an unmounted drive) pauses its watch and prunes nothing; when it comes back,
  one ordinary incremental pass over it catches up.
- Stopping (``stop`` set: Ctrl-C, SIGTERM) ends after the run under way; a crash mid-run resumes as ``index``
  resumes, on the next start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..media.files import is_image_path
from ..paths import within, within_any
from ..records import IndexReport

logger = logging.getLogger(__name__)

QUIET = 1.0  # seconds without a new change before the gathered changes are indexed
SETTLE = 1.0  # seconds a file's size and time must stay the same before it is read
MAX_WAIT = 30.0  # seconds a run waits for quiet at most while changes keep coming
TICK = 0.5  # seconds between looks at the gathered changes (and at vanished roots)
SIDECAR_SUFFIXES = (".txt",)  # caption sidecars: a change re-reads their photo


@dataclass
class WatchStatus:
    """What the watcher is doing, for the page's index panel and ``mmsearch watch``."""

    roots: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)  # roots that are gone (unmounted): nothing pruned
    state: str = "starting"  # "watching", "waiting for files to settle", "indexing", "stopped"
    runs: int = 0
    last: str = ""  # the last run's summary line
    last_at: float = 0.0

    def line(self) -> str:
        """One line for people: what is watched and what happened last."""
        paused = f"; paused (gone): {', '.join(self.paused)}" if self.paused else ""
        last = f"; last run {time.strftime('%H:%M:%S', time.localtime(self.last_at))}: {self.last}" if self.last else ""
        return f"watching {len(self.roots) - len(self.paused)} folder(s), {self.state}, {self.runs} run(s){last}{paused}"


class LibraryWatcher:
    """Watches ``roots`` and calls ``index(folders)`` (an incremental, pruning index run of those folders)
    for what changed. ``run`` blocks until ``stop`` is set.

    Args:
        index: runs one index pass over folders; returns its report.
        roots: the folders to watch (the index's recorded roots).
        skip: folders never watched (the database, the index's own files).
        poll: poll instead of waiting for events (network mounts).
        on_run: called with each run's report (after the status is updated).
        hidden: also watch hidden files and folders.
    """

    def __init__(self, index: Callable[[list[str]], IndexReport], roots: Sequence[str], skip: Sequence[str] = (),
                 poll: bool = False, on_run: Callable[[IndexReport], None] | None = None, hidden: bool = False):
        self.index = index
        self.roots = [os.path.abspath(r) for r in roots]
        self.skip = [os.path.realpath(s) for s in skip if s]
        self.poll = poll
        self.on_run = on_run
        self.hidden = hidden
        self.status = WatchStatus(list(self.roots))
        self._changed: dict[str, float] = {}  # path -> when its last change was seen
        self._seen: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) at the last look
        self._first = 0.0  # when the oldest gathered change was seen

    def wanted(self, change: Any, path: str) -> bool:
        """Whether a changed path matters: inside a root, not hidden, not the database's own, a media file,
        a sidecar or a folder (a deleted folder has no extension)."""
        if not within_any(path, self.roots) or within_any(os.path.realpath(path), self.skip):
            return False
        root = next(r for r in self.roots if within(path, r))
        parts = Path(os.path.relpath(path, root)).parts
        if not self.hidden and any(p.startswith(".") for p in parts):
            return False
        name = parts[-1] if parts else ""
        return is_image_path(Path(name)) or name.lower().endswith(SIDECAR_SUFFIXES) or not os.path.splitext(name)[1]

    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set: the watched roots are those that exist; one that vanishes pauses,
        and when it comes back it is indexed once and watched again."""
        while not stop.is_set():
            present = [r for r in self.roots if os.path.isdir(r)]
            came_back = [r for r in self.status.paused if r in present]
            self.status.paused = [r for r in self.roots if r not in present]
            if came_back:
                self._run_index(came_back)
            if not present:
                self.status.state = "paused: no watched folder exists"
                stop.wait(TICK * 4)
                continue
            self._watch(present, stop)
        self.status.state = "stopped"

    def _watch(self, present: list[str], stop: threading.Event) -> None:
        """One watch over the roots that exist now; returns when one of them vanishes or comes back."""
        import watchfiles

        self.status.state = "watching"
        changes = watchfiles.watch(*present, watch_filter=self.wanted, stop_event=stop, debounce=int(QUIET * 1000),
                                   step=50, rust_timeout=int(TICK * 1000), yield_on_timeout=True,
                                   force_polling=self.poll or None, poll_delay_ms=300, raise_interrupt=False,
                                   ignore_permission_denied=True)
        for batch in changes:
            now = time.monotonic()
            for _, path in batch:
                if not self._changed:
                    self._first = now
                self._changed[path] = now
            self._maybe_index(now)
            if [r for r in self.roots if os.path.isdir(r)] != present or stop.is_set():
                return

    def _maybe_index(self, now: float) -> None:
        """Index the gathered changes once they are quiet and every file has settled (or they waited long)."""
        if not self._changed:
            return
        quiet = now - max(self._changed.values()) >= QUIET
        waited = now - self._first >= MAX_WAIT
        unsettled = [p for p in self._changed if not self._settled(p)]
        if not (quiet or waited) or (unsettled and not waited):
            self.status.state = "waiting for files to settle" if unsettled else "gathering changes"
            return
        ready = [p for p in self._changed if p not in unsettled]
        for path in ready:
            self._changed.pop(path, None)
            self._seen.pop(path, None)
        self._first = now
        folders = self._folders(ready)
        if folders:
            self._run_index(folders)

    def _settled(self, path: str) -> bool:
        """Whether a changed file has stopped changing (a vanished path or a folder has nothing to wait for)."""
        try:
            info = os.stat(path)
        except OSError:
            return True
        if not os.path.isfile(path):
            return True
        now_seen = (info.st_size, info.st_mtime_ns)
        previous = self._seen.get(path)
        self._seen[path] = now_seen
        return previous == now_seen and time.time() - info.st_mtime >= SETTLE

    def _folders(self, paths: list[str]) -> list[str]:
        """The folders to index for these changed paths: each path's folder, inside its root, that exists."""
        out: set[str] = set()
        for path in paths:
            root = next((r for r in self.roots if within(path, r)), None)
            if root is None:
                continue
            folder = path if os.path.isdir(path) else os.path.dirname(path)
            while not os.path.isdir(folder) and within(folder, root) and folder != root:
                folder = os.path.dirname(folder)  # a deleted folder: its parent prunes it
            if os.path.isdir(folder) and within(folder, root):
                out.add(folder)
        return sorted(f for f in out if not any(f != o and within(f, o) for o in out))

    def _run_index(self, folders: list[str]) -> None:
        self.status.state = "indexing"
        try:
            report = self.index(folders)
        except Exception as exc:  # a run that failed (a server restarting): the next change tries again
            logger.warning("watch: indexing %s failed: %s", ", ".join(folders), exc)
            self.status.state = "watching"
            return
        self.status.runs += 1
        self.status.last, self.status.last_at = report.summary(), time.time()
        self.status.state = "watching"
        logger.info("watch: %s: %s", ", ".join(folders), report.summary())
        if self.on_run is not None:
            self.on_run(report)
