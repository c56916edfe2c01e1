"""The only module that talks to backends: one keep-alive pool (``http1``), timeouts, console lines.

``Upstream.open()`` sends a request and returns an ``UpstreamCall`` once the response headers are
in (within ``timeout.first_byte``); ``UpstreamCall.take()``/``more()`` read body bytes as they arrive,
each within ``timeout.idle`` of the last.  Connection failures become 502, timeouts 504, and a wait
for a free connection (``max_connections``) longer than ``timeout.connect`` 503.  A request's ``cutoff`` (the end of its
``failover.max_time``) bounds a call until the answer starts reaching the client (``uncut``).
"""
from __future__ import annotations

import asyncio
import time
from logging import INFO, WARNING
from typing import AsyncIterator, Awaitable, TypeVar

from . import console
from .config import Backend
from .errors import ProxyError
from .headers import render
from .http1 import BodyTooLarge, ConnectError, Pool, PoolBusy, Response, ResponseError

T = TypeVar("T")


class UpstreamCall:
    """One upstream response being read; ``close()`` releases (or aborts) the connection.

    The body is read with two calls and no generator: ``take()`` returns the bytes already in
    (b"" when none), ``await more()`` waits for the next ones, False at the body's end::

        while (data := up.take()) or await up.more():
            ...

    Both keep the timers: the first byte within ``timeout.first_byte``, each later read within
    ``timeout.idle`` of the last, all within ``timeout.total``.
    """

    __slots__ = ("backend", "resp", "status", "t0", "first_byte_ms", "url", "model", "stream", "watch", "limit", "cutoff", "_end")

    def __init__(self, backend: Backend, resp: Response, t0: float, url: str, model: str, stream: bool, watch: _Watch,
                 limit: int = 0, cutoff: float | None = None) -> None:
        self.backend = backend
        self.resp = resp
        self.status = resp.status
        self.t0 = t0
        self.first_byte_ms: float | None = None
        self.url = url
        self.model = model
        self.stream = stream
        self.limit = limit  # bytes: the whole body (non-stream) or one event (stream); 0: no cap
        t = backend.timeout
        self._end = t0 + t.total  # loop.time() is time.monotonic()
        self.cutoff = cutoff if cutoff is not None and cutoff < self._end else None  # failover.max_time, until uncut()
        if self.cutoff is not None:
            self._end = self.cutoff
        self.watch = watch  # the timer that ran while waiting for the headers, carried on to the body
        watch.deadline = min(self._end, t0 + t.first_byte)

    def ready(self) -> bool:
        """More of the body can be had without waiting: bytes buffered, or its end already in."""
        return self.resp.buffered or self.resp.complete

    def take(self) -> bytes:
        """The body bytes already in (b"" when none); raises ProxyError 502 if the body broke off."""
        try:
            data = self.resp.read_nowait()
        except BodyTooLarge:
            raise self.too_large() from None
        except ResponseError as e:
            raise ProxyError(502, f"backend '{self.backend.name}' broke off the response: {e}") from None
        if data:
            now = self.watch.loop.time()
            if self.first_byte_ms is None:
                self.first_byte_ms = (now - self.t0) * 1000
            self.watch.deadline = min(self._end, now + self.backend.timeout.idle)
        return data

    async def more(self) -> bool:
        """Wait until ``take()`` has bytes (True) or the body ended (False); ProxyError 504 on a timeout."""
        resp = self.resp
        if resp.buffered:
            return True
        if resp.complete:
            return False
        watch = self.watch
        try:
            await watch.watching(resp.waiter())
        except TimeoutError:
            raise self._timeout(watch.loop.time() >= self._end) from None
        finally:
            watch.fut = None
        return resp.buffered or not resp.complete

    async def read(self) -> bytes:
        """The whole body (non-stream responses and errors)."""
        if self.resp.complete:
            # Already all in (most small answers arrive with their headers): no timer, no loop.
            return self.take()
        parts = []
        size = 0
        while (data := self.take()) or await self.more():
            parts.append(data)
            size += len(data)
            if self.limit and size > self.limit:
                raise self.too_large()
        return b"".join(parts)

    def too_large(self) -> ProxyError:
        """The 502 for a body (non-stream) or an event (stream) over its cap, naming the setting."""
        which, what = ("max_event_mb", "a stream event") if self.stream else ("max_response_mb", "an answer")
        return ProxyError(502, f"backend '{self.backend.name}' sent {what} over {self.limit / 1048576:g} MB (limits.{which})",
                          code="upstream_too_large")

    def uncut(self) -> None:
        """The answer started reaching the client: from here its own timeouts (idle, total) govern, not failover.max_time."""
        if self.cutoff is not None:
            t = self.backend.timeout
            self.cutoff, self._end = None, self.t0 + t.total
            self.watch.deadline = min(self._end, self.watch.loop.time() + t.idle)

    def _timeout(self, end: bool) -> ProxyError:
        t = self.backend.timeout
        if end and self.cutoff is not None:
            return _max_time(self.backend, self.watch.loop.time() - self.t0)
        if end:
            return ProxyError(504, f"backend '{self.backend.name}' did not finish within {t.total:g} s (timeout.total)", code="upstream_timeout")
        which, secs = ("first_byte", t.first_byte) if self.first_byte_ms is None else ("idle", t.idle)
        return ProxyError(504, f"backend '{self.backend.name}' sent nothing for {secs:g} s (timeout.{which})", code="upstream_timeout")

    def close(self) -> None:
        """Back to the pool when the body was read to its end, else the connection is closed (never reused half-read)."""
        self.watch.stop()
        self.resp.release()


class _Watch:
    """The first-byte/idle/total timer of one upstream call, from sending the request to the body's
    end: one timer for the whole call, not one per read.

    Moving the deadline is an attribute write; the timer, when it fires before the deadline (bytes
    came meanwhile), re-arms itself for the new one.  Only a wait for bytes can time out, never the
    consumer's work between reads: the timer acts only while ``wait()`` or a ``watching()`` future waits.
    While the request is out (``wait``), a timeout cancels the waiting task; while the body is read
    (``watching``), it fails the future being awaited, which costs nothing when it does not fire.
    """

    __slots__ = ("loop", "deadline", "task", "fut", "handle", "waiting", "fired")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self.loop, self.deadline = loop, deadline
        self.task: asyncio.Task | None = None
        self.fut: asyncio.Future | None = None
        self.handle: asyncio.TimerHandle | None = None
        self.waiting = self.fired = False

    def _arm(self) -> None:
        h = self.handle
        if h is None or h.when() > self.deadline:  # not armed, or for a later deadline (first_byte, then a shorter idle)
            if h is not None:
                h.cancel()
            self.handle = self.loop.call_at(self.deadline, self._check)

    async def wait(self, aw: Awaitable[T]) -> T:
        """``await aw`` (a coroutine), or TimeoutError once the deadline passes first."""
        if self.loop.time() >= self.deadline:
            aw.close()  # type: ignore[attr-defined]  # a coroutine never started
            raise TimeoutError
        self.task = asyncio.current_task()
        self._arm()
        self.waiting = True
        try:
            return await aw
        except asyncio.CancelledError:
            if self.fired and self.task is not None and self.task.uncancel() == 0:
                self.fired = False
                raise TimeoutError from None
            raise
        finally:
            self.waiting = False
            self.task = None

    def watching(self, fut: asyncio.Future) -> asyncio.Future:
        """``fut``, failed with TimeoutError if the deadline passes before it is done; the caller
        awaits it and then sets ``fut`` back to None.  (A plain call, not a coroutine: it runs for
        every read of a stream.)"""
        if self.loop.time() >= self.deadline:
            raise TimeoutError
        self._arm()
        self.fut = fut
        return fut

    def _check(self) -> None:
        self.handle = None
        if not self.waiting and self.fut is None:
            return  # the next wait arms the timer again
        if self.loop.time() < self.deadline:
            self.handle = self.loop.call_at(self.deadline, self._check)
        elif self.fut is not None:
            if not self.fut.done():
                self.fut.set_exception(TimeoutError())
        else:
            self.fired = True
            assert self.task is not None
            self.task.cancel()

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class Upstream:
    """The process-wide client: one keep-alive pool (``http1.Pool``), shared by every request."""

    def __init__(self) -> None:
        self.pool: Pool | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self.pool = Pool()
        self.loop = asyncio.get_running_loop()  # (once: asking per request is a getpid call each time)

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    async def open(
        self,
        backend: Backend,
        path: str,
        body: bytes,
        *,
        model: str,
        stream: bool,
        extra_headers: dict[str, str] | None = None,
        method: str = "POST",
        key: str | None = None,
        max_bytes: int = 0,
        cutoff: float | None = None,
    ) -> UpstreamCall:
        """Send the request (with ``key``, the value of one of the backend's keys); return once response headers are in. Raises ProxyError 502/504.

        ``max_bytes`` caps the answer: the whole decoded body, or for a ``stream`` one event (0: no cap).
        ``cutoff`` (monotonic): when the request's ``failover.max_time`` runs out; the call is cut then
        (504) unless ``uncut()`` was called first.
        """
        assert self.pool is not None and self.loop is not None
        t = backend.timeout
        url = backend.url + path
        headers = render(backend, key, extra_headers)
        console.line(INFO, f"→ {backend.name} {model}{' (stream)' if stream else ''} {url}")
        t0 = time.monotonic()
        limit, which = (t.first_byte, "first_byte") if t.first_byte <= t.total else (t.total, "total")
        if cutoff is not None and cutoff < t0 + limit:
            limit, which = max(0.0, cutoff - t0), "max_time"
        watch = _Watch(self.loop, t0 + limit)  # loop.time() is time.monotonic()
        try:
            resp = await watch.wait(self.pool.request(method, url, headers, body if method == "POST" else None, t.connect, backend.net, max_bytes))
        except BaseException as e:
            watch.stop()
            if not isinstance(e, (TimeoutError, ConnectError, PoolBusy, ResponseError, ValueError)):
                raise  # cancelled: the client went away
            err = _failure(backend, e, time.monotonic() - t0, limit, which)
            log_back(backend, None, t0, None, err)
            raise err from None
        if 300 <= resp.status < 400:  # not followed: an API that redirects is a url to fix, not to chase with the key
            watch.stop()
            resp.release()
            where = resp.headers.get("Location", "nowhere")
            err = ProxyError(502, f"backend '{backend.name}' answered HTTP {resp.status}, a redirect to {where}; set its url to the final address",
                             code="upstream_redirect")
            log_back(backend, resp.status, t0, None, err)
            raise err
        return UpstreamCall(backend, resp, t0, url, model, stream, watch, max_bytes, cutoff)


def _failure(backend: Backend, e: Exception, elapsed: float, limit: float, which: str) -> ProxyError:
    """What a request that got no response at all becomes: 504 for a timeout, 502 otherwise."""
    if isinstance(e, TimeoutError):
        if elapsed < limit - 0.05:  # the connect timeout, which fires before the overall limit
            return ProxyError(504, f"backend '{backend.name}' did not accept a connection within {backend.timeout.connect:g} s (timeout.connect)", code="upstream_timeout")
        if which == "max_time":
            return _max_time(backend, elapsed)
        return ProxyError(504, f"backend '{backend.name}' sent no response within {limit:g} s (timeout.{which})", code="upstream_timeout")
    if isinstance(e, PoolBusy):  # busy, not down: another route may take the request, the backend's breaker stays closed
        return ProxyError(503, f"backend '{backend.name}': {e} (timeout.connect)", code="upstream_busy")
    if isinstance(e, ConnectError):
        return ProxyError(502, f"backend '{backend.name}' is unreachable at {backend.url}: {e.strerror or e}", code="upstream_unreachable")
    return ProxyError(502, f"backend '{backend.name}' failed: {e}", code="upstream_error")


def _max_time(backend: Backend, elapsed: float) -> ProxyError:
    """The request's time for all its attempts ran out while this one was still waiting for its answer."""
    return ProxyError(504, f"backend '{backend.name}' had not answered after {elapsed:.1f} s when the request's time for all its "
                           "attempts ran out (failover.max_time)", code="max_time")


def log_back(backend: Backend, status: int | None, t0: float, first_byte_ms: float | None, err: ProxyError | None, tokens: int | None = None) -> None:
    """The console's ``←`` line for one upstream call."""
    total = time.monotonic() - t0
    took = f"{total * 1000:.0f} ms" if total < 10 else f"{total:.1f} s"
    fb = f"first byte {first_byte_ms:.0f} ms, " if first_byte_ms is not None else ""
    if err is None:
        tok = f", {tokens:,} tokens" if tokens is not None else ""
        console.line(INFO, f"← {backend.name} ✓ {status} {fb}{took}{tok}")
    else:
        console.line(WARNING, f"← {backend.name} ✗ {status or err.status} {fb}{took}: {err.message}")
