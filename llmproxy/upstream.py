"""The only module that talks to backends: one pooled keep-alive session, timeouts, console lines.

``Upstream.open()`` sends a request and returns an ``UpstreamCall`` once the response headers are
in (within ``timeout.first_byte``); ``UpstreamCall.chunks()`` yields body bytes as they arrive,
each within ``timeout.idle`` of the last.  Connection failures become 502, timeouts 504.
"""
from __future__ import annotations

import asyncio
import time
from logging import INFO, WARNING
from functools import lru_cache
from typing import AsyncIterator

import aiohttp

from . import console
from .balance import Balancer
from .config import Backend, Timeout
from .errors import ProxyError
from .headers import render

class UpstreamCall:
    """One upstream response being read; ``close()`` releases (or aborts) the connection."""

    __slots__ = ("backend", "resp", "status", "t0", "first_byte_ms", "_deadline_total", "url", "model", "stream")

    def __init__(self, backend: Backend, resp: aiohttp.ClientResponse, t0: float, url: str, model: str, stream: bool) -> None:
        self.backend = backend
        self.resp = resp
        self.status = resp.status
        self.t0 = t0
        self.first_byte_ms: float | None = None
        self.url = url
        self.model = model
        self.stream = stream

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; the first within first_byte, then each within idle, all within total."""
        t = self.backend.timeout
        loop = asyncio.get_running_loop()
        content = self.resp.content
        read, buffered = content.readany, content.read_nowait
        first = self.first_byte_ms is None
        end = self.t0 + t.total  # loop.time() is time.monotonic()
        now = loop.time()
        deadline = min(end, self.t0 + t.first_byte if first else now + t.idle)
        while True:
            # The timer covers only the wait for bytes, never the consumer's work between chunks;
            # bytes already buffered are taken without arming one.
            try:
                data = buffered()  # b"" when nothing is buffered (or at EOF: readany then says so)
                if not data:
                    async with asyncio.timeout_at(deadline):
                        data = await read()
            except TimeoutError:
                raise self._timeout(loop.time() >= end) from None
            except aiohttp.ClientPayloadError as e:
                raise ProxyError(502, f"backend '{self.backend.name}' broke off the response: {e}") from None
            except aiohttp.ClientConnectionError as e:
                raise ProxyError(502, f"backend '{self.backend.name}' closed the connection: {e}") from None
            if not data:
                return
            if first:
                self.first_byte_ms = (time.monotonic() - self.t0) * 1000
                first = False
            deadline = min(end, loop.time() + t.idle)
            yield data

    async def read(self) -> bytes:
        """The whole body (non-stream responses and errors)."""
        content = self.resp.content
        if content.is_eof() and content.exception() is None:
            # Already all in (most small answers arrive with their headers): no timer, no generator.
            data = content.read_nowait()
            if data and self.first_byte_ms is None:
                self.first_byte_ms = (time.monotonic() - self.t0) * 1000
            return data
        parts = [c async for c in self.chunks()]
        return b"".join(parts)

    def _timeout(self, total: bool) -> ProxyError:
        t = self.backend.timeout
        if total:
            return ProxyError(504, f"backend '{self.backend.name}' did not finish within {t.total:g} s (timeout.total)", code="upstream_timeout")
        which, secs = ("first_byte", t.first_byte) if self.first_byte_ms is None else ("idle", t.idle)
        return ProxyError(504, f"backend '{self.backend.name}' sent nothing for {secs:g} s (timeout.{which})", code="upstream_timeout")

    def close(self) -> None:
        self.resp.release() if self.resp.content.at_eof() else self.resp.close()


class Upstream:
    """The process-wide client: one ClientSession with a keep-alive pool, shared by every request."""

    def __init__(self, balance: Balancer | None = None) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.balance = balance or Balancer()  # key choice and cooldowns (State links its own)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(
            connector=connector,
            # aiohttp asks for gzip/deflate and providers use it; the bytes we pass on (and read
            # usage from) must be the decoded ones, since no Content-Encoding goes to the client.
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            json_serialize=None,  # we always send bytes
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def key_value(self, backend: Backend, key: int | None) -> str | None:
        """The value of key #``key`` (0-based), or the balancer's choice when None; None without keys."""
        if not backend.keys:
            return None
        if key is None:
            key = self.balance.pick_key(backend)
            if key is None:  # every key cooling down: the one that frees up first rather than none
                key = self.balance.soonest_key(backend)
        return backend.keys[key % len(backend.keys)]

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
        key: int | None = None,
    ) -> UpstreamCall:
        """Send the request (with key #``key``, 0-based, if the backend has keys); return once response headers are in. Raises ProxyError 502/504."""
        assert self.session is not None
        t = backend.timeout
        url = backend.url + path
        headers = render(backend, self.key_value(backend, key), extra_headers)
        console.line(INFO, f"→ {backend.name} {model}{' (stream)' if stream else ''} {url}")
        t0 = time.monotonic()
        limit, which = (t.first_byte, "first_byte") if t.first_byte <= t.total else (t.total, "total")
        try:
            async with asyncio.timeout(limit):
                resp = await self.session.request(method, url, data=body if method == "POST" else None, headers=headers, timeout=_client_timeout(t))
        except TimeoutError:
            elapsed = time.monotonic() - t0
            if elapsed < limit - 0.05:
                err = ProxyError(504, f"backend '{backend.name}' did not accept a connection within {t.connect:g} s (timeout.connect)", code="upstream_timeout")
            else:
                err = ProxyError(504, f"backend '{backend.name}' sent no response within {limit:g} s (timeout.{which})", code="upstream_timeout")
            log_back(backend, None, t0, None, err)
            raise err from None
        except aiohttp.ClientConnectorError as e:
            err = ProxyError(502, f"backend '{backend.name}' is unreachable at {backend.url}: {e.os_error.strerror or e.os_error}", code="upstream_unreachable")
            log_back(backend, None, t0, None, err)
            raise err from None
        except aiohttp.ClientError as e:
            err = ProxyError(502, f"backend '{backend.name}' failed: {type(e).__name__}: {e}", code="upstream_error")
            log_back(backend, None, t0, None, err)
            raise err from None
        return UpstreamCall(backend, resp, t0, url, model, stream)


@lru_cache(maxsize=256)
def _client_timeout(t: Timeout) -> aiohttp.ClientTimeout:
    """aiohttp's timeout object for a backend's (frozen) timeouts, built once, not per request.

    Only the connect timeouts: first byte, idle and total are kept by ``open()`` and ``chunks()``
    on their own deadlines, so a request arms no timer of aiohttp's besides.
    """
    return aiohttp.ClientTimeout(total=None, connect=t.connect, sock_connect=t.connect)


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
