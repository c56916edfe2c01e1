"""One exchange with a backend, shared by the relay and the translated path.

``open_upstream`` sends the request and turns an error status into a ProxyError;
``whole_answer`` reads a non-stream answer; a stream goes through the one reader, ``frames``
(upstream bytes → frames, one batch per read), and the one writer, ``stream_out`` (pieces → the
client, an error after the first byte ending the stream in-band).
"""
from __future__ import annotations

import asyncio
import time
from types import ModuleType
from typing import Any, AsyncIterator, Callable, TypeVar

import orjson
from aiohttp import web

from .balance import parse_retry_after
from .errors import ProxyError, too_deep
from .headers import redact
from .pipeline import Call, shutdown_error
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
    call.row.first_byte_ms = round((time.monotonic() - call.row.t0) * 1000, 2)  # the answer is complete once read
    return raw, out


# ------------------------------------------------------------------ streams


async def frames(up: UpstreamCall, read: Callable[[bytes], Any], rest: Callable[[], list]) -> AsyncIterator[Any]:
    """The one reader: what ``read`` makes of each upstream read (skipped when empty), then ``rest()`` at the end.

    ``read`` and ``rest`` are a framer's: ``feed``/``flush`` (frames), ``cut``/``flush`` (the relay's: a read's
    whole events as one run of bytes) or ``read``/``read_rest`` (a translator's: the parsed events).
    """
    take, more = up.take, up.more
    try:
        data = take()
        while True:
            if data:
                batch = read(data)
                if batch:
                    yield batch
            if not await more():
                break
            data = take()
        last = rest()
        if last:
            yield last
    except EventTooLarge:
        raise up.too_large() from None
    finally:
        up.watch.stop()


class StreamCut(ProxyError):
    """What a ``render`` raises to end a stream in the middle of an item: ``head`` (the part before
    the bad bytes) still goes to the client, then the error."""

    def __init__(self, head: bytes, status: int, message: str, **kw: Any) -> None:
        super().__init__(status, message, **kw)
        self.head = head


class _Stream(web.StreamResponse):
    """A stream whose head goes out with its first piece, in one write (aiohttp otherwise sends a stream's
    head on its own at ``prepare``, one more send per stream); ``stream_out`` writes the first piece right
    after ``prepare``, so nothing waits for it.  (aiohttp's ``web.Response`` does the same.)"""

    _send_headers_immediately = False


async def stream_out(call: Call, up: UpstreamCall, source: AsyncIterator[Any], content_type: str,
                     render: Callable[[Any], bytes] | None = None) -> web.StreamResponse:
    """The one writer: each item of ``source`` (``render``-ed to bytes, if given) to the client as it comes.

    The first piece is read before the response starts, so a stream that fails before its first
    byte (hangs, resets, garbage) raises instead and the request may still fail over.  After that an
    error (a ProxyError from ``source`` or ``render``; a ``StreamCut`` sends its head first) ends the
    stream in-band, in the front door's shape, and the row says why.
    """
    source = aiter(source)
    try:
        head = b""
        while not head:  # (a relay may drop a whole batch: the first piece is the first non-empty one)
            item = await anext(source, None)
            if item is None:
                break
            head = render(item) if render is not None else item
    except (ProxyError, ValueError, KeyError, TypeError) as e:
        first_err = e if isinstance(e, ProxyError) else _unreadable(up, e)
        first_err.message = redact(first_err.message, call.snap.secrets)
        up.close()
        finish_upstream(call, up, first_err)
        raise first_err from None
    resp = _Stream(status=200, headers={"Content-Type": content_type, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    err: ProxyError | None = None
    # Pieces made from bytes already read are written together (once more would mean waiting); what is
    # left at the end goes out with the last chunk marker, in one write.
    batch: list[bytes] = []

    def end_with(e: ProxyError) -> ProxyError:
        """The row says why the stream ended early, and so does its last event, in the front door's shape."""
        call.row.fail(e.status, e.type, e.message)
        batch.append(call.front.module.stream_error(e))
        return e

    keep = call.bodies  # log.bodies: what goes to the client is kept too (checked once a stream, not per write)
    write = resp.write if keep is None else keep.tee(resp.write)
    try:
        await resp.prepare(call.request)
        call.sent = True
        up.uncut()  # failover.max_time bounds the attempts; the stream's own timeouts govern from here
        if head:
            await write(head)
            call.row.first_byte_ms = round((time.monotonic() - call.row.t0) * 1000, 2)
            size = 0
            async for item in source:
                piece = render(item) if render is not None else item
                if not piece:
                    continue
                batch.append(piece)
                size += len(piece)
                if size >= BATCH_BYTES or not up.ready():
                    await write(batch[0] if len(batch) == 1 else b"".join(batch))
                    batch.clear()
                    size = 0
    except (ValueError, KeyError, TypeError) as e:  # a translator choked on what the backend sent
        err = end_with(_unreadable(up, e))
    except ProxyError as e:
        e.message = redact(e.message, call.snap.secrets)
        if isinstance(e, StreamCut):
            batch.append(e.head)
        err = end_with(e)
    except ConnectionError:
        call.row.fail(499, "cancelled", "client disconnected")
        err = ProxyError(499, "client disconnected")
    except asyncio.CancelledError:
        if not call.state.shutting_down:
            raise
        asyncio.current_task().uncancel()  # llmproxy's own stop, not the client's: the stream ends with why
        err = end_with(shutdown_error(call))
    finally:
        await source.aclose()  # closed here (the translator may stop before the upstream's last bytes), not by the garbage collector
        up.close()
        finish_upstream(call, up, err)
    if call.row.status is None:
        call.row.status = 200
    tail = b"".join(batch)
    if keep is not None:
        keep.add(tail)
    try:
        await resp.write_eof(tail)
    except ConnectionError:
        pass
    return resp


def _unreadable(up: UpstreamCall, e: Exception) -> ProxyError:
    return ProxyError(502, f"backend '{up.backend.name}' sent a stream llmproxy cannot read: {type(e).__name__}: {str(e)[:200]}")
