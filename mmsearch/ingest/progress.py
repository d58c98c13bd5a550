"""Progress after each stored batch, in one place for ``index`` and ``reindex``.

``stored`` tells the caller's ``on_progress`` how far a run is. It also carries the one test hook of the
runs: with ``MMSEARCH_HOLD_AT=N`` in the environment, a run that has stored N images or more waits there
until it is asked to stop (Ctrl-C, a stop request, a kill) or until the file named by
``MMSEARCH_HOLD_RELEASE`` exists, for at most ``HOLD_SECONDS``. A test that
stops a run midway (Ctrl-C, kill -9) waits for the progress line and then signals: without the hold, a
fast machine could finish the run before the signal lands, and the test would race a clock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

HOLD_VARIABLE = "MMSEARCH_HOLD_AT"
RELEASE_VARIABLE = "MMSEARCH_HOLD_RELEASE"
HOLD_SECONDS = 120.0  # a hold never hangs a run for good: it goes on after this long
HOLD_POLL = 0.1  # seconds between asking the caller again while holding (a handed-over job polls its cancel file)

ProgressCallback = Callable[[int, int], None]


def hold_at() -> int | None:
    """The image count at which runs hold (``MMSEARCH_HOLD_AT``), or None when unset or not a number."""
    value = os.environ.get(HOLD_VARIABLE, "").strip()
    return int(value) if value.isdigit() else None


def stored(done: int, total: int, on_progress: ProgressCallback | None, stop: threading.Event,
           on_hold: Callable[[], None] | None = None) -> None:
    """A batch is stored: ``done`` of ``total`` images. Calls ``on_progress``, then holds if asked to,
    calling ``on_hold`` first (the run's ``Meter`` writes its line: the line a test waits for)."""
    if on_progress is not None:
        on_progress(done, total)
    limit = hold_at()
    if limit is None or done < limit or stop.is_set():
        return
    if on_hold is not None:
        on_hold()
    logger.info("holding after %d images until the run is stopped (%s)", done, HOLD_VARIABLE)
    release = os.environ.get(RELEASE_VARIABLE)
    deadline = time.monotonic() + HOLD_SECONDS
    while not stop.wait(HOLD_POLL) and time.monotonic() < deadline:
        if release and os.path.exists(release):
            os.environ.pop(HOLD_VARIABLE, None)  # released: the rest of the run goes on without holding
            return
        if on_progress is not None:
            on_progress(done, total)  # the caller may set ``stop`` from here
