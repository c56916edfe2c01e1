"""One exchange with a backend, shared by the relay and the translated path.

``open_upstream`` sends the request and turns an error status into a ProxyError;
``whole_answer`` reads a non-stream answer; a stream goes through the one loop, ``stream_out``: each
upstream read through the caller's ``piece`` (framer, then tap or translators: plain calls, no
generator between) to the client's bytes, an error after the first byte ending the stream in-band.
"""
from __future__ import annotations

import asyncio
import time
from types import ModuleType
from typing import Any, Awaitable, Callable, TypeVar

import orjson
from aiohttp import web

from .balance import parse_retry_after
from .errors import ProxyError, too_deep
from .headers import redact
from .pipeline import Call, bug, shutdown_error
from .sse import EventTooLarge
from .upstream import UpstreamCall, log_back
from .usage import Usage

T = TypeVar("T")
BATCH_BYTES = 64 * 1024  # a stream that never makes us wait still reaches the client in pieces this big


def upstream_body(call: Call, body: dict | None = None) -> dict:
    """A new dict: ``body`` (default: the client's) with the route's ``params`` merged under it (the client's values win).

    Always a copy, so an attempt may rewrite it without touching ``call.body``, which the next
    attempt (failover) must see as the client sent it.
    """
    body = call.body if body is None else body
    params = call.target.route.params if call.target else None
    return {**params, **body} if params else dict(body)


def request_bytes(body: Any) -> bytes:
    """A request body as JSON for the backend; 400 when it nests too deep to write (``errors.MAX_DEPTH``)."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:  # (a body orjson read holds nothing else it cannot write)
        raise too_deep() from None


async def open_upstream(call: Call, path: str, body: bytes, stream: bool, module: ModuleType, extra_headers: dict | None = None) -> UpstreamCall:
    """Send the upstream request; an error status becomes a ProxyError in the hub's terms."""
    target = call.target
    assert target is not None
    limits = call.snap.config
    up = await call.state.upstream.open(target.backend, path, body, model=target.upstream_model, stream=stream,
                                        extra_headers=extra_headers, key=call.key_value, cutoff=call.cutoff,
                                        max_bytes=limits.max_event if stream else limits.max_response)
    if up.status >= 400:
        try:
            raw = await up.read()
        except ProxyError:
            raw = b""
        finally:
            up.close()
        err = module.error_from_upstream(up.status, raw)
        err.message = redact(err.message, call.snap.secrets)
        log_back(target.backend, up.status, up.t0, up.first_byte_ms, err)
        if err.retry_after is None:
            err.retry_after = parse_retry_after(up.resp.headers.get("Retry-After"))
        raise err
    call.state.balance.succeeded(target, call.key, (time.monotonic() - up.t0) * 1000)
    return up


def finish_upstream(call: Call, up: UpstreamCall, err: ProxyError | None = None) -> None:
    """The console's ``←`` line for this exchange (with its tokens when known)."""
    log_back(up.backend, up.status, up.t0, up.first_byte_ms, err, call.usage.total if call.usage else None)


async def whole_answer(call: Call, up: UpstreamCall, parse: Callable[[Any], T], usage_of: Callable[[T], Usage | None]) -> tuple[bytes, T]:
    """A non-stream answer: read it, give the connection back, ``parse`` its JSON, note its usage.

    A body that breaks off, is not JSON (an HTML error page, a captive portal) or that ``parse``
    cannot read is a 502 on the ``←`` line; nothing reached the client yet, so the request may fail over.
    """
    try:
        raw = await up.read()
    except ProxyError as e:
        up.close()
        finish_upstream(call, up, e)
        raise
    up.close()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        err = ProxyError(502, f"backend '{up.backend.name}' answered HTTP {up.status} with a body that is not JSON "
                              f"({up.resp.content_type or 'no content type'}, {len(raw):,} bytes)", type="upstream_garbage", code="upstream_garbage")
        finish_upstream(call, up, err)
        raise err from None
    try:
        out = parse(data)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        err = ProxyError(502, f"backend '{up.backend.name}' sent a response llmproxy cannot read: {e}")
        finish_upstream(call, up, err)
        raise err from None
    call.usage = usage_of(out)
    finish_upstream(call, up)
    call.row.first_byte_ms = call.row.since_start()  # the answer is complete once read
    return raw, out


# ------------------------------------------------------------------ streams


class StreamCut(Exception):
    """What a stream's ``piece`` raises when an item breaks in the middle of a read: ``head`` (the client's
    bytes of what came before it) still goes to the client, then ``error`` ends the stream."""

    def __init__(self, head: bytes, error: Exception) -> None:
        super().__init__(str(error))
        self.head, self.error = head, error


class _Stream(web.StreamResponse):
    """A stream whose head goes out with its first piece, in one write (aiohttp otherwise sends a stream's
    head on its own at ``prepare``, one more send per stream); ``stream_out`` writes the first piece right
    after ``prepare``, so nothing waits for it.  (aiohttp's ``web.Response`` does the same.)"""

    _send_headers_immediately = False


async def stream_out(call: Call, up: UpstreamCall, piece: Callable[[bytes], bytes], last: Callable[[], bytes], content_type: str,
                     ended: Callable[[], bool] | None = None) -> web.StreamResponse:
    """The one stream loop, relayed or translated: each upstream read through ``piece`` to the client's bytes, as
    they come, then ``last()`` once the body ended (or once ``ended()`` says the backend's own end came).

    Pieces are written when the loop is about to wait for the upstream (or past ``BATCH_BYTES``): pieces made from
    bytes already in go out together, so the first event is written as soon as it is made unless more is already
    here, and an answer that came whole leaves in one write, head and last chunk marker included.

    The response starts with the first write, so a stream that fails before its first byte (hangs, resets,
    garbage) raises instead and the request may still fail over.  After that an error (a ProxyError, a
    translator choking: ValueError, KeyError, TypeError, or a bug: a 500, its traceback logged) ends the stream
    in-band, in the front door's shape, and the row says why; what came before it goes out first (a ``StreamCut``
    carries the part of its own read).
    """
    resp = _Stream(status=200, headers={"Content-Type": content_type, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    keep = call.bodies  # log.bodies: what goes to the client is kept too (checked once a stream, not per write)
    write = resp.write if keep is None else keep.tee(resp.write)
    take, more = up.take, up.more
    batch: list[bytes] = []
    err: ProxyError | None = None
    try:
        try:
            size = 0
            data = take()
            while True:
                if data:
                    p = piece(data)
                    if p:
                        batch.append(p)
                        size += len(p)
                    if ended is not None and ended():
                        break
                    if size and (size >= BATCH_BYTES or not up.ready()):  # out before waiting for more (or when big)
                        out = batch[0] if len(batch) == 1 else b"".join(batch)
                        batch.clear()
                        size = 0
                        if call.sent:
                            await write(out)
                        else:
                            await _begin(call, up, resp, write, out)
                if not await more():
                    break
                data = take()
            batch.append(last())
        except EventTooLarge:
            raise up.too_large() from None
        except StreamCut as cut:
            batch.append(cut.head)
            raise cut.error from None
    except ConnectionError:
        call.row.fail(499, "cancelled", "client disconnected")
        err = ProxyError(499, "client disconnected")
    except Exception as e:
        early = not call.sent and not any(batch)  # nothing for the client yet: the request may still fail over
        if isinstance(e, ProxyError):
            err = e
        elif isinstance(e, (ValueError, KeyError, TypeError)):  # a translator choking on what the backend sent
            err = _unreadable(up, e)
        elif early:
            raise  # a bug before the first byte: serve answers it (a 500, logged); the backend is not at fault, nothing fails over
        else:
            err = bug(call.request, e)  # a bug once the stream is under way: a 500 ends it, its traceback logged
        err.message = redact(err.message, call.snap.secrets)
        if early:
            finish_upstream(call, up, err)
            raise err from None
        _end_with(call, batch, err)
    except asyncio.CancelledError:
        if not call.sent or not call.state.shutting_down:
            if call.sent:
                finish_upstream(call, up)
            raise
        asyncio.current_task().uncancel()  # llmproxy's own stop, not the client's: the stream ends with why
        err = _end_with(call, batch, shutdown_error(call))
    finally:
        up.close()
    finish_upstream(call, up, err)
    if call.row.status is None:
        call.row.status = 200
    tail = b"".join(batch)
    if not call.sent:  # (nothing came before the stream's last piece, or nothing at all)
        try:
            await _begin(call, up, resp, write, b"")
        except ConnectionError:
            call.row.fail(499, "cancelled", "client disconnected")
            return resp
        if tail:
            call.row.first_byte_ms = call.row.since_start()
    if keep is not None:
        keep.add(tail)
    try:
        await resp.write_eof(tail)
    except ConnectionError:
        pass
    return resp


async def _begin(call: Call, up: UpstreamCall, resp: web.StreamResponse, write: Callable[[bytes], Awaitable[Any]], head: bytes) -> None:
    """The response begun, with its first piece: from here nothing fails over, and the stream's own timeouts govern."""
    await resp.prepare(call.request)
    call.sent = True
    up.uncut()  # (failover.max_time bounded the attempts until now)
    if head:
        await write(head)
        call.row.first_byte_ms = call.row.since_start()


def _end_with(call: Call, batch: list[bytes], err: ProxyError) -> ProxyError:
    """The row says why the stream ended early, and so does its last event, in the front door's shape."""
    call.row.fail(err.status, err.type, err.message)
    batch.append(call.front.module.stream_error(err))
    return err


def _unreadable(up: UpstreamCall, e: Exception) -> ProxyError:
    return ProxyError(502, f"backend '{up.backend.name}' sent a stream llmproxy cannot read: {type(e).__name__}: {str(e)[:200]}")
