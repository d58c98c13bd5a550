"""The retry policy around a Chroma server: when it gives up, and what it says."""

from __future__ import annotations

import logging

import pytest

from mmsearch.store.retry import RetryPolicy, ServerUnavailableError


class Down(Exception):
    """Stands for a connection error."""


def _policy(seconds: float = 5.0) -> RetryPolicy:
    return RetryPolicy("the test server", lambda exc: isinstance(exc, Down), seconds=seconds, first_delay=0.01)


def _failing(errors: list[BaseException], result: str = "ok"):
    def call() -> str:
        if errors:
            raise errors.pop(0)
        return result
    return call


def test_a_call_that_fails_then_succeeds_says_the_server_is_back(caplog):
    caplog.set_level(logging.INFO, logger="mmsearch")
    assert _policy().call(_failing([Down("refused"), Down("refused")])) == "ok"
    err = caplog.text
    assert err.count("cannot reach the test server (refused)") == 1 and "the test server is back after" in err


def test_an_error_answer_after_an_outage_also_says_the_server_is_back(caplog):
    caplog.set_level(logging.INFO, logger="mmsearch")
    # The server came back and answered "not found": that error is the caller's to handle, and the
    # outage is over (an index run whose call in flight was such a look-up said nothing of it before).
    with pytest.raises(KeyError):
        _policy().call(_failing([Down("refused"), KeyError("no such collection")]))
    assert "the test server is back after" in caplog.text


def test_a_server_that_stays_down_gives_up_with_what_to_do(caplog):
    caplog.set_level(logging.INFO, logger="mmsearch")
    with pytest.raises(ServerUnavailableError, match="gave up after .* run the same command again"):
        _policy(seconds=0.05).call(_failing([Down("refused")] * 100))
    assert "is back" not in caplog.text and "cannot reach the test server" in caplog.text
