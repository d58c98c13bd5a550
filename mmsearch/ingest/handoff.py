"""Handing a model change (or an undo of moved duplicates) to the process that serves an embedded database.

An embedded Chroma database has one writer (``mmsearch.lock``): while ``mmsearch serve`` runs on a ``--db``,
no other process may open it. ``mmsearch reindex`` (and ``--rollback``, ``--drop-previous``) and
``mmsearch duplicates --undo`` then hand the job to the server through small files in the database
folder: the command writes a request; the server's watcher thread takes it, runs it in a thread of its
own while searches go on, writes its progress and outcome to a status file, and then follows the switch
like any other. The command shows that progress and the outcome; its Ctrl-C asks the server to stop after
the current batch, and the same command resumes.

The files are written whole (temporary file, then rename) with mode 0600, in a folder that only its owner
writes. A request names models only; the server's own settings decide the rest (``trust_remote_code``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MMSearchError, ReindexError, first_line

if TYPE_CHECKING:
    from ..engine import SearchEngine


logger = logging.getLogger(__name__)
REQUEST, STATUS, CANCEL = "reindex-request.json", "reindex-status.json", "reindex-cancel.json"
ACCEPT_SECONDS = 10.0  # a server looks every 2 s (engine.SWITCH_CHECK); longer means no server takes jobs
HEARTBEAT = 2.0  # seconds between the running job's status writes (its heartbeat)
STALE = 60.0  # a running job's status unchanged this long (and no live server process): the server is gone
ACTIONS = ("reindex", "rollback", "drop-previous", "undo-duplicates")


def _write(path: Path, data: dict[str, Any]) -> None:
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(part, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the command's side ------------------------------------------------------------------------------

def hand_over(db: str | Path, action: str, options: dict[str, Any], progress: bool = True,
              poll: float = 0.25) -> dict[str, Any] | None:
    """Ask the server that holds ``db`` to run ``action`` (``ACTIONS``) and wait for it. Returns the status
    it ended with (``state`` "done" or "failed", with ``report``/``summary`` or ``error``), or None when
    no server took the request within ``ACCEPT_SECONDS`` (the holder is not a serving mmsearch).
    Ctrl-C asks the server to stop after its current batch, then raises ``KeyboardInterrupt``."""
    from tqdm import tqdm

    folder, job = Path(db), uuid.uuid4().hex
    _write(folder / REQUEST, {"id": job, "action": action, "options": options, "pid": os.getpid()})
    deadline = time.monotonic() + ACCEPT_SECONDS
    bar = tqdm(unit="img", file=sys.stderr, disable=not progress or action != "reindex", desc="reindexing (by the server)",
               leave=False)
    previous = _interruptible()
    try:
        while True:
            status = _read(folder / STATUS)
            if status is not None and status.get("id") == job:
                if status.get("state") in ("done", "failed"):
                    return status
                if not server_alive(status, time.time()):
                    (folder / STATUS).unlink(missing_ok=True)
                    raise ReindexError(f"the server (pid {status.get('pid')}) stopped while it ran the {action} it "
                                       f"was handed; run the same command again: it resumes")
                bar.total = status.get("total") or None
                bar.n = int(status.get("done", 0))
                bar.refresh()
            elif time.monotonic() > deadline:
                (folder / REQUEST).unlink(missing_ok=True)
                return None
            time.sleep(poll)
    except KeyboardInterrupt:
        _write(folder / CANCEL, {"id": job})
        raise
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _interruptible() -> Any:
    """Ctrl-C raises ``KeyboardInterrupt`` while the command waits, as ``index`` stops on it, even when the
    command was started with SIGINT ignored (from a script's background job, where Python installs no
    handler of its own). Returns the handler to put back, or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.default_int_handler)


def server_alive(status: dict[str, Any], now: float) -> bool:
    """Whether the process named by a running job's status still runs it: its pid exists and its
    heartbeat (``beat``, every ``HEARTBEAT`` s) is younger than ``STALE``."""
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    beat = status.get("beat")
    return not isinstance(beat, (int, float)) or now - beat < STALE


# -- the server's side -------------------------------------------------------------------------------

class JobDesk:
    """Takes handed-over jobs for a serving engine (``poll`` runs on its watcher thread), one at a time."""

    def __init__(self, engine: SearchEngine):
        self.engine = engine
        self.folder = Path(engine.config.db)
        self.running: threading.Thread | None = None

    def poll(self) -> None:
        """Start a requested job unless one runs."""
        if self.engine.config.chroma_url or (self.running is not None and self.running.is_alive()):
            return
        request = _read(self.folder / REQUEST)
        if request is None or request.get("action") not in ACTIONS:
            return
        (self.folder / REQUEST).unlink(missing_ok=True)
        self.running = threading.Thread(target=self.run, args=(request,), name="mmsearch-handed-job", daemon=True)
        self.running.start()

    def run(self, request: dict[str, Any]) -> None:
        """Run one job and write its outcome."""
        job, stop, finished = str(request.get("id", "")), threading.Event(), threading.Event()
        status: dict[str, Any] = {"id": job, "state": "running", "done": 0, "total": 0, "pid": os.getpid(),
                                  "beat": time.time()}
        writing = threading.Lock()

        def beat() -> None:
            with writing:
                if (_read(self.folder / CANCEL) or {}).get("id") == job:
                    stop.set()
                status["beat"] = time.time()
                _write(self.folder / STATUS, status)

        def moved(done: int, total: int) -> None:
            status.update(done=done, total=total)
            beat()

        def heartbeat() -> None:
            while not finished.wait(HEARTBEAT):
                beat()

        beat()
        threading.Thread(target=heartbeat, name="mmsearch-handed-job-beat", daemon=True).start()
        try:
            status.update(state="done", **self._do(request, moved, stop))
        except MMSearchError as exc:
            status.update(state="failed", error=str(exc))
        except Exception as exc:  # reported to the command that asked, and the server keeps serving
            status.update(state="failed", error=f"{type(exc).__name__}: {first_line(exc)}")
        finished.set()
        with writing:
            (self.folder / CANCEL).unlink(missing_ok=True)
            _write(self.folder / STATUS, status)
        logger.info("serve: %s %s%s", request.get("action"), status["state"],
                    ": " + status["error"] if status.get("error") else "")

    def _do(self, request: dict[str, Any], moved: Any, stop: threading.Event) -> dict[str, Any]:
        from .reindex import drop_previous, rollback, target_config

        action, options = request["action"], dict(request.get("options") or {})
        store = self.engine.store
        if action == "rollback":
            return {"active": rollback(store)}
        if action == "drop-previous":
            return {"dropped": drop_previous(store)}
        if action == "undo-duplicates":
            back, left = self.engine.undo_duplicate_moves(str(options.get("manifest", "")))
            return {"back": back, "left": left}
        given = {k: v for k, v in (options.get("models") or {}).items() if isinstance(v, str)}
        config = target_config(replace(self.engine.requested, batch_size=options.get("batch_size")), given,
                               store.models() or {})
        report = type(self.engine)(config=config).reindex(allow_failed=bool(options.get("allow_failed")),
                                                     on_progress=moved, stop=stop)
        return {"report": report.to_dict(), "summary": report.summary()}


def watch(follow: Callable[[], bool], describe: Callable[[], dict[str, str]], every: float,
          on_tick: Callable[[], None] | None = None, enabled: bool = True) -> threading.Event:
    """A serving engine's watcher thread: every ``every`` seconds, ``on_tick`` (it takes handed-over jobs,
    ``JobDesk.poll``), then ``follow`` (True when it followed a switch to new models, which ``describe``
    names). Returns the event that stops it; nothing runs when not ``enabled``."""
    stop = threading.Event()
    if not enabled:
        return stop

    def loop() -> None:
        warned = False
        while not stop.wait(every):
            try:
                if on_tick is not None:
                    on_tick()
                if follow():
                    models = describe()
                    logger.info("the index switched models; answering with image model %s, text model %s",
                                models["image_model"], models["text_model"])
            except Exception as exc:  # a server restarting, a half-deleted collection: try again later
                if not warned:
                    warned = True
                    logger.warning("cannot look for a model switch (%s); will retry", first_line(exc))

    threading.Thread(target=loop, name="mmsearch-switch-watch", daemon=True).start()
    return stop
