"""The progress line of a long run (index, reindex, export, import), on stderr.

Two things made tqdm's bar lie about an index run with OCR. Its rate started when the bar was made, so
the models' loading counted as work: the bar sat at ``32/5022`` with an ETA of 50 minutes, then ran at
190 img/s. And it moved only when a batch was stored, a batch behind the slow stage. A ``Meter`` takes its
rate from the slow stage itself (``read``: the decode workers, which also run OCR, finish a file), over
the last ``RATE_WINDOW`` seconds, from the first file on. The count it shows is what is stored (what a
stopped run keeps).

In a terminal it redraws one line; anywhere else (CI, a log file, a pipe) it writes a whole line every
``LINE_SECONDS``, not hundreds of carriage returns. A line always looks like
``indexing: 1,200/5,022 img · 45.2 img/s · about 01:24 left`` (``METER_LINE`` reads one back).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO

from mmsearch.records import clock

LINE_SECONDS = 5.0  # a non-terminal gets a line this often at most
REDRAW_SECONDS = 0.2  # a terminal's line is redrawn this often at most
RATE_WINDOW = 20.0  # seconds of recent work the rate (and so the ETA) is measured over
METER_LINE = re.compile(r"^(?P<what>[^:\r\n]+): (?P<done>[\d,]+)(?:/(?P<total>[\d,]+))? ", re.MULTILINE)


class Meter:
    """A run's progress: ``update`` after each stored batch, ``read`` as each file is done by the slow stage.

    Thread-safe: workers call ``read`` while the writer calls ``update``. A disabled meter does nothing.
    Use as a context manager, or call ``close`` (which clears a terminal's line: the run's summary follows).
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "img", enabled: bool = True,
                 stream: IO[str] | None = None, interactive: bool | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.unit, self.enabled = what, total, unit, enabled
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = interactive if interactive is not None else bool(isatty and isatty())
        self.n = 0  # stored (shown)
        self.reads = 0  # done by the slow stage
        self._now = now
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int]] = deque()  # (time, count) of the rate's source, oldest first
        self._started = now()
        self._written_at: float | None = None
        self._written_n = -1
        self._width = 0

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, count: int = 1) -> None:
        """``count`` more files are done by the slow stage: the rate and the ETA come from these."""
        with self._lock:
            if not self.reads:  # the rate was of what is stored until now
                self._samples.clear()
            self.reads += count
            self._sample(self.reads)

    def reads_of(self, futures: list[Future]) -> list[Future]:
        """``futures`` of the slow stage, each counted by ``read`` as it is done; returned as given."""
        for future in futures:
            future.add_done_callback(lambda _: self.read())
        return futures

    def update(self, count: int) -> None:
        """``count`` more are stored."""
        with self._lock:
            self.n += count
            if not self.reads:  # a run with no slow stage to watch: the rate is of what is stored
                self._sample(self.n)
            self._maybe_write(force=False)

    def set(self, done: int, total: int | None) -> None:
        """Where a run elsewhere stands (a job handed to the server): ``done`` of ``total``."""
        with self._lock:
            self.total = total or None
            if done != self.n:
                self.n = done
                self._sample(done)
            self._maybe_write(force=False)

    def show(self) -> None:
        """Write the current line now, unless it is the one written last (a run about to wait says where it is)."""
        with self._lock:
            self._maybe_write(force=True)

    def close(self) -> None:
        """The run is over: a terminal's line is cleared; elsewhere the last count is written if it changed."""
        with self._lock:
            if not self.enabled or (self._written_at is None and (self.interactive or not self.n)):
                return
            if self.interactive:
                self._emit("\r" + " " * self._width + "\r")
            elif self.n != self._written_n:
                self._maybe_write(force=True)
            self._written_at = None

    def rate(self) -> float | None:
        """Files per second over the last ``RATE_WINDOW`` seconds; None before there are two samples."""
        if len(self._samples) < 2:
            return None
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else None

    def line(self) -> str:
        """The line as it is written, e.g. ``indexing: 1,200/5,022 img · 45.2 img/s · about 01:24 left``."""
        count = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        parts = [f"{self.what}: {count} {self.unit}"]
        rate = self.rate()
        if rate:
            parts.append(f"{rate:,.1f} {self.unit}/s")
            if self.total:
                left = max(0, self.total - max(self.n, self.reads))
                parts.append(f"about {clock(left / rate)} left")
        return " · ".join(parts)

    def _sample(self, count: int) -> None:
        t = self._now()
        self._samples.append((t, count))
        while len(self._samples) > 2 and t - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()

    def _maybe_write(self, force: bool) -> None:
        if not self.enabled:
            return
        t = self._now()
        if force:
            if self.n == self._written_n and self._written_at is not None:
                return
        elif t - (self._written_at if self._written_at is not None else self._started) < (
                REDRAW_SECONDS if self.interactive else LINE_SECONDS):
            return  # a run shorter than that writes one line, when it ends
        text = self.line()
        if self.interactive:
            self._emit("\r" + text.ljust(self._width))
            self._width = max(self._width, len(text))
        else:
            self._emit(text + "\n")
        self._written_at, self._written_n = t, self.n

    def _emit(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop a run
            self.enabled = False
