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
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MMSearchError, ReindexError, first_line
from .meter import Meter

if TYPE_CHECKING:
    from ..engine import SearchEngine


logger = logging.getLogger(__name__)
REQUEST, STATUS, CANCEL = "reindex-request.json", "reindex-status.json", "reindex-cancel.json"
ACCEPT_SECONDS = 10.0  # a server looks every 2 s (engine.SWITCH_CHECK); longer means no server takes jobs
HEARTBEAT = 2.0  # seconds between the running job's status writes (its heartbeat)
STALE = 60.0  # a running job's status unchanged this long (and no live server process): the server is gone
ACTIONS = ("reindex", "rollback", "drop-previous", "undo-duplicates")
REQUEST_BYTES = 64 * 1024  # a request names an action and a few options; anything larger is not one
STATUS_BYTES = 16 * 1024 * 1024  # a finished reindex's report lists its skipped files


def _write(path: Path, data: dict[str, Any]) -> None:
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(part, path)


def _read(path: Path, limit: int = STATUS_BYTES) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None: missing, not a regular file (a FIFO never blocks: the open is
    non-blocking), a link, larger than ``limit`` bytes, or not a JSON object."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        raw = os.read(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    return data if isinstance(data, dict) and len(raw) <= limit else None


def valid_request(request: dict[str, Any] | None) -> bool:
    """A request as ``hand_over`` writes it: an id (hex), a known action, options (an object), a pid."""
    if not request:
        return False
    job, pid = request.get("id"), request.get("pid")
    return (isinstance(job, str) and 0 < len(job) <= 64 and all(c in "0123456789abcdef" for c in job)
            and request.get("action") in ACTIONS and isinstance(request.get("options", {}), dict)
            and isinstance(pid, int) and not isinstance(pid, bool) and pid > 0)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def _post(folder: Path, request: dict[str, Any]) -> None:
    """Write the request unless another live command's request waits there (then one sentence), or the
    server runs another handed-over job; two commands never overwrite each other's request."""
    running = _read(folder / STATUS)
    if running is not None and running.get("state") == "running" and server_alive(running, time.time()):
        raise ReindexError(f"the server (pid {running.get('pid')}) is running a job another command handed it; "
                           "wait for that command to finish, then run this one again")
    part = folder / (REQUEST + f".{request['id']}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(request, handle)
    try:
        for _ in range(2):
            try:
                os.link(part, folder / REQUEST)  # atomic, and never over an existing request
                return
            except FileExistsError:
                waiting = _read(folder / REQUEST, REQUEST_BYTES) or {}
                if valid_request(waiting) and _alive(waiting["pid"]):
                    raise ReindexError(f"another command (pid {waiting['pid']}) is waiting for the server to take "
                                       f"its {waiting['action']}; wait for it to finish, then run this one again") from None
                (folder / REQUEST).unlink(missing_ok=True)  # left by a command that died, or not a request
        raise ReindexError(f"cannot write the request {folder / REQUEST}; run the command again")
    finally:
        part.unlink(missing_ok=True)


def _withdraw(folder: Path, job: str) -> None:
    """Ctrl-C: cancel the job; if the server has not taken the request yet, take it back."""
    _write(folder / CANCEL, {"id": job})
    if (_read(folder / REQUEST, REQUEST_BYTES) or {}).get("id") == job:
        (folder / REQUEST).unlink(missing_ok=True)


# -- the command's side ------------------------------------------------------------------------------

def hand_over(db: str | Path, action: str, options: dict[str, Any], progress: bool = True,
              poll: float = 0.25) -> dict[str, Any] | None:
    """Ask the server that holds ``db`` to run ``action`` (``ACTIONS``) and wait for it. Returns the status
    it ended with (``state`` "done" or "failed", with ``report``/``summary`` or ``error``), or None when
    no server took the request within ``ACCEPT_SECONDS`` (the holder is not a serving mmsearch).
    Ctrl-C asks the server to stop after its current batch, then raises ``KeyboardInterrupt``."""
    folder, job = Path(db), uuid.uuid4().hex
    _post(folder, {"id": job, "action": action, "options": options, "pid": os.getpid()})
    deadline = time.monotonic() + ACCEPT_SECONDS
    bar = Meter("reindexing (by the server)", enabled=progress and action == "reindex")
    previous = _interruptible()
    try:
        while True:
            status = _read(folder / STATUS)
            if status is not None and status.get("id") == job:
                if status.get("state") in ("done", "failed", "cancelled"):
                    return status
                if not server_alive(status, time.time()):
                    (folder / STATUS).unlink(missing_ok=True)
                    raise ReindexError(f"the server (pid {status.get('pid')}) stopped while it ran the {action} it "
                                       f"was handed; run the same command again: it resumes")
                bar.set(int(status.get("done", 0)), status.get("total") or None)
            elif time.monotonic() > deadline:
                (folder / REQUEST).unlink(missing_ok=True)
                return None
            time.sleep(poll)
    except KeyboardInterrupt:
        _withdraw(folder, job)
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
    if not _alive(status.get("pid")):
        return False
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
        path = self.folder / REQUEST
        if not os.path.lexists(path):
            return
        request = _read(path, REQUEST_BYTES)
        path.unlink(missing_ok=True)  # taken, or not a request (too large, a FIFO, a link, odd fields): dropped
        if not valid_request(request):
            logger.warning("serve: ignored %s: not a request mmsearch wrote", path)
            return
        assert request is not None
        if (_read(self.folder / CANCEL) or {}).get("id") == request["id"]:
            (self.folder / CANCEL).unlink(missing_ok=True)  # cancelled before it was taken
            return
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
            if stop.is_set():  # cancelled as it was taken: nothing runs
                status.update(state="cancelled")
            else:
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
            return {"dropped": drop_previous(store, self.engine.config)}
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
