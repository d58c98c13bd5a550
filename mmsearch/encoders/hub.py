"""Fail fast when the Hugging Face hub cannot be reached.

huggingface_hub retries an unreachable host for about a minute before it gives up. mmsearch probes the
hub once (a TCP connect with a short timeout) before the first model download; when the hub is not
reachable it switches huggingface_hub to offline mode, so weights already in the local cache still load
and missing ones fail at once with mmsearch's own message.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

OFFLINE_REASON = "not in the local cache, and the Hugging Face hub is unreachable (offline)"

_probed: bool | None = None


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the hub endpoint (``HF_ENDPOINT``) opens within ``timeout`` seconds."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def prepare_hub() -> bool:
    """Probe the hub once per process; go offline when it is unreachable. Returns True when online."""
    global _probed
    if not hub_online():
        return False
    if _probed is None:
        _probed = hub_reachable()
        if not _probed:
            _go_offline()
    return _probed


def _go_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    # huggingface_hub reads the variable at import time; patch the constant if it is already imported.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def hub_online() -> bool:
    """False when huggingface_hub runs offline (set by the user, or by ``prepare_hub`` after a failed probe)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on")


QUIETED = ("open_clip", "huggingface_hub", "sentence_transformers", "transformers", "timm", "urllib3", "filelock")


_QUIET_LOCK = threading.Lock()
_quiet_depth = 0
_quiet_saved: list[tuple[logging.Logger, int]] = []


@contextmanager
def quiet_logging() -> Iterator[None]:
    """Silence library log lines (open_clip logs download failures at ERROR) while models load.

    mmsearch reports a failure once, in its own one-line error. Safe across threads: the first to enter
    saves the levels and the last to leave restores them (not logging.disable, which mutes every thread's
    warnings, mmsearch's own too).
    """
    global _quiet_depth
    with _QUIET_LOCK:
        if _quiet_depth == 0:
            loggers = [logging.getLogger(), *(logging.getLogger(name) for name in QUIETED)]  # open_clip logs at the root
            _quiet_saved[:] = [(logger, logger.level) for logger in loggers]
            for logger in loggers:
                logger.setLevel(logging.CRITICAL)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                for logger, level in _quiet_saved:
                    logger.setLevel(level)
                _quiet_saved.clear()
