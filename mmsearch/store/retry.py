"""Retrying calls to a server that went away (restart, network blip) with exponential backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import StoreError, first_line

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ServerUnavailableError(StoreError):
    """The server could not be reached for the whole retry window."""


@dataclass(frozen=True)
class RetryPolicy:
    """Keep retrying a failing call for ``seconds``, waiting 0.5 s, 1 s, 2 s, ... (at most ``max_delay``).

    Only errors for which ``transient(exc)`` is true are retried. For other errors ``explain(exc)`` may
    return a message, raised as ``StoreError`` (e.g. a proxy's 401); otherwise they pass through as they are.
    Everything retried here must be idempotent (Chroma upserts and deletes by id are).
    """

    where: str
    transient: Callable[[BaseException], bool]
    explain: Callable[[BaseException], str | None] = lambda exc: None
    seconds: float = 60.0
    first_delay: float = 0.5
    max_delay: float = 8.0

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        deadline = time.monotonic() + self.seconds
        delay, attempts, lost_at = self.first_delay, 0, 0.0
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not self.transient(exc):
                    if attempts:  # it answered, with an error of its own (e.g. "not found"): it is back
                        logger.info("%s is back after %.1f s", self.where, time.monotonic() - lost_at)
                    message = self.explain(exc)
                    if message:
                        raise StoreError(f"{self.where} refused the request: {message}") from exc
                    raise
                attempts += 1
                now = time.monotonic()
                if attempts == 1:
                    lost_at = now
                    logger.warning("cannot reach %s (%s); retrying for up to %g s", self.where, first_line(exc), self.seconds)
                if now + delay > deadline:
                    raise ServerUnavailableError(
                        f"cannot reach {self.where} ({first_line(exc)}); gave up after {attempts} attempts in "
                        f"{now - lost_at:.0f} s. Everything stored before is kept: run the same command again once "
                        f"the server is back to resume") from exc
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if attempts:
                logger.info("%s is back after %.1f s", self.where, time.monotonic() - lost_at)
            return result


class Retrying:
    """Proxy whose method calls go through a ``RetryPolicy``; results passing ``wrap_if`` are proxied too.

    Used around Chroma's ``HttpClient`` and its collections, so every request of the store is retried.
    """

    def __init__(self, target: Any, policy: RetryPolicy, wrap_if: Callable[[Any], bool]):
        self._target, self._policy, self._wrap_if = target, policy, wrap_if

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = self._policy.call(attr, *args, **kwargs)
            return Retrying(result, self._policy, self._wrap_if) if self._wrap_if(result) else result

        return call
