"""What stands between the page and the network: the only route that hands out original images, a
growing delay after failed logins, and the Host header check against DNS rebinding.

Originals are served by image id from the index's own records, never by a path from the browser:
a file that was not indexed as an image (the database, hidden files, captions, HTML) has no id.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from mmsearch import SearchEngine

ORIGINAL_ROUTE = "/mmsearch/original/{image_id}"
CHUNK = 1 << 20  # bytes of an original sent at a time
LOGIN_DELAY_START, LOGIN_DELAY_MAX = 1.0, 30.0  # seconds: doubled after each failed login of one client
MAX_WAITING = 5  # one client's login attempts queued at once; more are answered 429
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
MARKS_PER_HOUR = 600  # lasting marks one client may store in an hour (a person clicks far fewer)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def original_url(image_id: str) -> str:
    """Relative URL of an indexed image's original (the page's "open full size" link)."""
    return ORIGINAL_ROUTE.lstrip("/").replace("{image_id}", urllib.parse.quote(image_id))


def original_route(engine: SearchEngine, remember: bool = True) -> Route:
    """``GET /mmsearch/original/<image id>``: the indexed file, if it is still the image that was indexed.

    Behind the page's login when ``--auth`` is set. Sent with ``nosniff`` and the type of its media kind
    (``mmsearch.media.kinds``), so nothing is rendered as HTML or script. A kind a browser does not show as
    it is (HEIC, RAW, TIFF, and SVG, which could carry script) is sent as its large rendition, a JPEG or PNG
    made from the checked file. A video answers ``Range`` requests (206), so the page's player seeks to the
    moment that matched. With ``remember`` (not on a read-only page), ``?q=`` records opening it as a weak
    like for that query.
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    from mmsearch.media.kinds import kind_of

    async def original(request: Request) -> Response:
        if not _logged_in(request):
            return PlainTextResponse("login required", status_code=401)
        found = await run_in_threadpool(_servable, engine, request.path_params["image_id"])
        if found is None:
            return PlainTextResponse("not an indexed image", status_code=404)
        path, handle = found
        query = request.query_params.get("q", "")
        if query.strip() and remember:  # opened from a search that remembers marks: a weak like, never over a stronger mark
            await run_in_threadpool(_opened, engine, query, path)
        kind = kind_of(path)
        name = urllib.parse.quote(os.path.basename(path))
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300",
                   "Content-Disposition": f"inline; filename*=UTF-8''{name}"}
        if kind is None or not kind.browser_shows:
            handle.close()
            rendition = await run_in_threadpool(_rendition, engine, path)
            if rendition is None:
                return PlainTextResponse("this file cannot be shown", status_code=404)
            return FileResponse(rendition, headers={k: v for k, v in headers.items() if k != "Content-Disposition"})
        size = os.fstat(handle.fileno()).st_size
        media_type = kind.media_types[os.path.splitext(path)[1].lower()]
        span = byte_range(request.headers.get("range", ""), size) if kind.video else None
        if span is None:
            headers.update({"Content-Length": str(size), "Accept-Ranges": "bytes" if kind.video else "none"})
            return StreamingResponse(_chunks(handle), media_type=media_type, headers=headers)
        start, end = span
        headers.update({"Content-Length": str(end - start + 1), "Accept-Ranges": "bytes",
                        "Content-Range": f"bytes {start}-{end}/{size}"})
        return StreamingResponse(_chunks(handle, start, end + 1), status_code=206, media_type=media_type, headers=headers)

    return Route(ORIGINAL_ROUTE, original, methods=["GET", "HEAD"])


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The (first, last) byte of a one-part ``Range: bytes=...`` header within a file of ``size`` bytes, or
    None to send the whole file (no header, several parts, or one that does not parse)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec or size <= 0:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:  # the last N bytes
            count = int(last)
            return (max(0, size - count), size - 1) if count > 0 else None
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return (start, end) if 0 <= start <= end else None


def _chunks(handle: BinaryIO, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """The checked file's bytes from ``start`` to ``stop`` (the end), from the descriptor that was checked
    (never reopened by path)."""
    with handle:
        handle.seek(start)
        left = None if stop is None else stop - start
        while left is None or left > 0:
            chunk = handle.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def _rendition(engine: SearchEngine, path: str) -> str | None:
    """The large rendition of a file a browser does not show as it is (``ThumbnailCache`` "preview")."""
    from mmsearch.errors import ImageReadError
    from mmsearch.media.thumbnails import ThumbnailCache

    try:
        return str(ThumbnailCache(engine.config.thumbnail_dir).get(path, "preview"))
    except ImageReadError:
        return None


def _servable(engine: SearchEngine, image_id: str) -> tuple[str, BinaryIO] | None:
    """The file of an indexed image id, opened, when it may be served: outside the database, and still the
    image that was indexed (``mmsearch.media.identity``: a regular file with its format's signature and
    the recorded size and time, or content hash), so a link or a file put in its place is never sent."""
    from mmsearch.media.identity import open_indexed
    from mmsearch.media.kinds import kind_of

    if not engine.store.ready:
        return None
    meta = engine.store.image_metadata([image_id]).get(image_id)
    path = str(meta.get("path", "")) if meta else ""
    if not meta or kind_of(path) is None:
        return None
    database = os.path.realpath(engine.config.db) + os.sep
    if os.path.realpath(path).startswith(database):
        return None
    handle = open_indexed(path, meta)
    return None if handle is None else (path, handle)


def _opened(engine: SearchEngine, query: str, path: str) -> None:
    from mmsearch.errors import MMSearchError
    from mmsearch.search.feedback import OPENED

    try:
        if not engine.has_mark(query, path):
            engine.feedback(query, path, True, strength=OPENED)
    except MMSearchError:  # the file is served all the same
        pass


# Gradio routes without a login check of their own (the heartbeat streams forever to whoever asks).
LOGIN_GATED = ("/gradio_api/heartbeat/", "/gradio_api/stream/", "/gradio_api/cancel", "/gradio_api/reset",
               "/gradio_api/runs", "/gradio_api/run-history/", "/gradio_api/custom_component/")


class LoginGate:
    """ASGI middleware: under ``--auth``, the Gradio routes in ``LOGIN_GATED`` answer 401 until the client
    has logged in, as every other route of the page does."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
                       ) -> None:
        if scope["type"] == "http" and scope["path"].startswith(LOGIN_GATED):
            from starlette.requests import Request

            if not _logged_in(Request(scope)):
                await _answer(send, 401, b"log in first")
                return
        await self.app(scope, receive, send)


def _logged_in(request: Request) -> bool:
    """Gradio's own login check: no auth configured, or a valid session cookie."""
    app = request.app
    if getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None:
        return True
    cookie_id = getattr(app, "cookie_id", "")
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(f"access-token-unsecure-{cookie_id}")
    return token is not None and token in getattr(app, "tokens", {})


class LoginThrottle:
    """ASGI middleware: after a failed login, that client's next login waits 1 s, then 2, 4, ... 30 s.

    Keyed by client address, so guessing passwords costs an attacker time while other clients log in
    at once; a successful login clears the delay. One client's attempts run one at a time (parallel
    guesses queue behind each other, each waiting its own delay), and past ``MAX_WAITING`` queued attempts
    a client is answered 429 at once. The address is the connection's: proxy headers are not trusted
    unless ``serve --trust-proxy`` says so (``trust_proxy_headers``).
    """

    def __init__(self, app: ASGIApp, start: float = LOGIN_DELAY_START, cap: float = LOGIN_DELAY_MAX):
        self.app, self.start, self.cap = app, start, cap
        self.failures: dict[str, tuple[int, float]] = {}  # client -> (failed logins in a row, time of the last)
        self.turns: dict[str, asyncio.Lock] = {}  # client -> its one login at a time
        self.waiting: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
                       ) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        if self.waiting.get(client, 0) >= MAX_WAITING:
            await _refuse(send)
            return
        self.waiting[client] = self.waiting.get(client, 0) + 1
        try:
            async with self.turns.setdefault(client, asyncio.Lock()):
                await self._attempt(client, scope, receive, send)
        finally:
            self.waiting[client] -= 1

    async def _attempt(self, client: str, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        count, _ = self.failures.get(client, (0, 0.0))
        if count:
            await asyncio.sleep(self.delay(count))
        status: list[int] = []

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, record)
        if status and status[0] == 200:
            self.failures.pop(client, None)
        else:
            self.failures[client] = (count + 1, time.monotonic())

    def delay(self, failures: int) -> float:
        """Seconds the next login of a client waits after ``failures`` failed ones in a row."""
        return min(self.start * 2 ** (failures - 1), self.cap) if failures else 0.0


async def _refuse(send: Callable[[Any], Awaitable[None]]) -> None:
    await _answer(send, 429, b"too many login attempts at once; wait for the earlier ones")


async def _answer(send: Callable[[Any], Awaitable[None]], status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def trust_proxy_headers(trust: bool) -> None:
    """Whether the server believes ``X-Forwarded-For`` from a proxy on this machine (uvicorn's
    ``FORWARDED_ALLOW_IPS``, which trusts 127.0.0.1 by default). Off unless ``--trust-proxy``: anyone on
    this machine could otherwise rotate that header to reset their login delay. A value the user set
    in the environment stands."""
    if not trust and "FORWARDED_ALLOW_IPS" not in os.environ:
        os.environ["FORWARDED_ALLOW_IPS"] = ""


class MarkBudget:
    """How many lasting marks each client may still store: ``limit`` in any ``window`` seconds. Keyed by the
    client's address (the connection's, as ``LoginThrottle``)."""

    def __init__(self, limit: int = MARKS_PER_HOUR, window: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self.spent: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    @property
    def refusal(self) -> str:
        """What the page says when a client has no marks left."""
        return (f"This browser stored {self.limit} marks within the hour, the most the page keeps; marks still "
                "refine this search, but are not remembered for now.")

    def allows(self, client: str) -> bool:
        """Count one mark of ``client``; False (nothing counted) when it stored ``limit`` within the window."""
        now = self.clock()
        with self.lock:
            recent = [t for t in self.spent.get(client, []) if now - t < self.window]
            allowed = len(recent) < self.limit
            self.spent[client] = recent + [now] if allowed else recent
        return allowed


def client_of(request: Any) -> str:
    """The client address of a Gradio request ("?" when unknown)."""
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "?")


def allowed_hosts(host: str, extra: list[str] | None = None) -> list[str]:
    """Host header values the server answers (others get 400): its own names and addresses.

    A page on 127.0.0.1 answers ``localhost``/``127.0.0.1``/``::1`` only, so a web page elsewhere cannot
    reach it through a DNS name rebound to 127.0.0.1. On another address it answers that address, this
    machine's host names and addresses, and the names given with ``--allowed-host`` (e.g. the name a
    reverse proxy forwards).
    """
    names = {*LOOPBACK_NAMES, *(extra or [])}
    if host not in LOOPBACK_NAMES:
        names.add(host)
        hostname = socket.gethostname()
        names.update({hostname, socket.getfqdn()})
        if host in ("0.0.0.0", "::", ""):
            try:
                names.update(str(info[4][0]) for info in socket.getaddrinfo(hostname, None))
            except OSError:
                pass
    return sorted(n for n in names if n)
