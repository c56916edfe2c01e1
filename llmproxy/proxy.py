"""The request story every front door shares: resolve → translate → call → stream → log.

A front door supplies a ``Front`` (its wire-format module and a few facts about it); this module
does the rest.  When the client's format equals the backend's, ``relay`` forwards the body and the
upstream bytes untouched; otherwise the hub (OpenAI) format sits in the middle.
"""
from __future__ import annotations

import asyncio
import logging
import itertools
import math
import secrets as _secrets
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import orjson
from aiohttp import web

from . import access
from .balance import Plan, parse_retry_after, sticky_hash
from .errors import ProxyError, bad_request
from .headers import redact
from .requestlog import LogRow, attempt_json, new_row
from .resolve import Resolved, Target
from .sse import DECODERS, Event
from .state import STATE, Snapshot, State
from .translate import BACKENDS, Meta
from .upstream import UpstreamCall, log_back
from .usage import Usage

log = logging.getLogger("llmproxy")


@dataclass(frozen=True)
class Front:
    """What the pipeline needs to know about a front door's format."""

    name: str  # openai | anthropic | ollama
    module: ModuleType  # request_from_client, response_to_client, stream_to_client, error_body, stream_error
    stream_type: str  # content type of a stream to this client
    id_prefix: str
    wants_usage: Callable[[dict], bool] = lambda body: True
    default_stream: bool = False


@dataclass
class Call:
    """One request in flight: its snapshot, log row and what was resolved."""

    request: web.Request
    state: State
    snap: Snapshot
    front: Front
    row: LogRow
    body: dict[str, Any]
    target: Target | None = None
    usage: Usage | None = None
    key: int | None = None  # 0-based index of the backend key this attempt uses
    sent: bool = False  # the response was prepared: bytes may have reached the client, no more failover

    @property
    def meta(self) -> Meta:
        return Meta(self.front.id_prefix + self.row.id, int(self.row.ts), self.target.upstream_model if self.target else "")


_ID_PREFIX = _secrets.token_hex(6)  # random per process, so ids stay unique across restarts
_id_counter = itertools.count(1)


def new_id() -> str:
    """A unique request id: the process's random prefix and a counter (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


async def read_json(request: web.Request, limit: int) -> dict:
    """The request body as a JSON object; 413 over ``limit`` bytes, 400 when not a JSON object."""
    if request.content_length is not None and request.content_length > limit:
        raise ProxyError(413, f"request body is {request.content_length:,} bytes; the limit is {limit:,} (limits.max_body_mb)", code="request_too_large")
    content = request.content
    if content.is_eof():  # the whole body came with the headers (most requests): no read loop
        raw = content.read_nowait()
        size = len(raw)  # (chunked: no Content-Length said so up front)
    else:
        parts: list[bytes] = []
        size = 0
        async for chunk in content.iter_any():
            size += len(chunk)
            if size > limit:
                break
            parts.append(chunk)
        raw = b"".join(parts)
    if size > limit:
        raise ProxyError(413, f"request body is over the limit of {limit:,} bytes (limits.max_body_mb)", code="request_too_large")
    if not raw.strip():
        raise bad_request("request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


Handler = Callable[["Call"], Awaitable[web.StreamResponse]]


async def serve(request: web.Request, front: Front, endpoint: str, handler: Handler, parse: Callable[[dict], dict] | None = None) -> web.StreamResponse:
    """Authenticate, read, resolve and log around ``handler``; errors rendered in the front's shape."""
    state = request.app[STATE]
    snap = state.snap
    row = new_row(new_id(), front.name, endpoint)
    row.client_addr = request.remote
    call = Call(request, state, snap, front, row, {})
    state.in_flight += 1
    try:
        client = access.authenticate(snap.config, request)
        if client is not None:
            row.client, row.tags = client.name, ",".join(client.tags) or None
        body = await read_json(request, snap.config.max_body)
        call.body = (parse or front.module.request_from_client)(body)
        requested = call.body["model"]
        row.requested_model = requested
        row.stream = int(bool(call.body.get("stream", front.default_stream)))
        resolved = snap.resolver.resolve(requested)
        access.authorize(client, requested, resolved.name)
        resp = await attempt(call, resolved, handler)
        if row.status is None:
            row.status = resp.status
        return resp
    except ProxyError as e:
        row.fail(e.status, e.type, e.message)
        return error_response(front, e)
    except asyncio.CancelledError:
        row.fail(499, "cancelled", "client disconnected")
        raise
    except Exception as e:  # a bug: answer 500, keep serving, keep the row
        log.exception("unexpected error in %s %s", request.method, request.path)
        err = ProxyError(500, f"internal error in llmproxy: {type(e).__name__}")
        row.fail(500, err.type, f"{type(e).__name__}: {e}")
        return error_response(front, err)
    finally:
        state.in_flight -= 1
        _finish_row(call)
        state.log.put(row)


async def attempt(call: Call, resolved: Resolved, handler: Handler) -> web.StreamResponse:
    """Call ``handler`` on the routes in the strategy's order until one answers; failover only before the first byte."""
    bal, row = call.state.balance, call.row
    keyed = any(t.backend.keys for t in resolved.targets)
    plan = Plan(bal, resolved, sticky_hash(call.body) if keyed else None)
    err: ProxyError | None = None
    try:
        step = plan.first()
        while step is not None:
            t = call.target = step.target
            call.key = step.key
            row.model, row.backend, row.upstream_model = t.model, t.backend.name, t.upstream_model
            rk = (t.backend.name, t.upstream_model)
            bal.in_flight[rk] = bal.in_flight.get(rk, 0) + 1
            t0 = time.monotonic()
            try:
                resp = await handler(call)
            except ProxyError as e:
                plan.record(step, e.status, (time.monotonic() - t0) * 1000, e)
                bal.failed(t, step.key, e)
                if call.sent:
                    raise
                err = e
                step = await plan.next(err)
                continue
            except asyncio.CancelledError:
                plan.record(step, 499, (time.monotonic() - t0) * 1000, None)
                raise
            finally:
                bal.in_flight[rk] -= 1
            ms = (time.monotonic() - t0) * 1000
            if row.error is not None and row.status not in (None, 499):  # the stream ended with an in-band error
                late = ProxyError(row.status, row.error)
                bal.failed(t, step.key, late)
                plan.record(step, row.status, ms, late)
            else:
                plan.record(step, resp.status, ms, None)
            return resp
    finally:
        plan.release()
        row.attempts = plan.tried
        if len(plan.log) > 1 or (plan.log and ("skipped" in plan.log[0] or "key" in plan.log[0])):
            # (one plain attempt is told by the row's own columns; which key it used is not)
            row.attempt_log = attempt_json(plan.log)
    if err is None:
        raise plan.unavailable()
    if len({(a["backend"], a["model"]) for a in plan.log}) > 1:  # several routes: say which, in order
        err.message += " (tried: " + ", ".join(f"{a['backend']}/{a['model']} {a.get('status') or 'skipped'}" for a in plan.log) + ")"
    raise err


def _finish_row(call: Call) -> None:
    row = call.row
    row.total_ms = round((time.monotonic() - row.t0) * 1000, 2)
    u = call.usage
    if u is not None:
        row.prompt_tokens, row.completion_tokens = u.prompt, u.completion
        row.cached_tokens, row.cache_write_tokens, row.reasoning_tokens = u.cached, u.cache_write, u.reasoning
        if call.target is not None:
            row.cost_usd = u.cost(call.target.route.price)


def error_response(front: Front, err: ProxyError) -> web.Response:
    headers = {"Retry-After": str(math.ceil(err.retry_after))} if err.retry_after else None  # 34.4 s -> 35: never invite an early retry
    return web.Response(status=err.status, body=front.module.error_body(err), content_type="application/json", headers=headers)


def upstream_body(call: Call, body: dict | None = None) -> dict:
    """A new dict: ``body`` (default: the client's) with the route's ``params`` merged under it (the client's values win).

    Always a copy, so an attempt may rewrite it without touching ``call.body``, which the next
    attempt (failover) must see as the client sent it.
    """
    body = call.body if body is None else body
    params = call.target.route.params if call.target else None
    return {**params, **body} if params else dict(body)


async def open_upstream(call: Call, path: str, body: bytes, stream: bool, module: ModuleType, extra_headers: dict | None = None) -> UpstreamCall:
    """Send the upstream request; an error status becomes a ProxyError in the hub's terms."""
    target = call.target
    assert target is not None
    up = await call.state.upstream.open(target.backend, path, body, model=target.upstream_model, stream=stream, extra_headers=extra_headers, key=call.key)
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
    log_back(up.backend, up.status, up.t0, up.first_byte_ms, err, call.usage.total if call.usage else None)


T = TypeVar("T")


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
                              f"({up.resp.content_type or 'no content type'}, {len(raw):,} bytes)", code="upstream_garbage")
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


async def stream_out(call: Call, up: UpstreamCall, pieces: AsyncIterator[bytes], content_type: str) -> web.StreamResponse:
    """Write ``pieces`` to the client as they come; an error after the first byte ends the stream in-band.

    The first piece is read before the response starts, so a stream that fails before its first
    byte (hangs, resets, garbage) raises instead and the request may still fail over.
    """
    pieces = aiter(pieces)
    try:
        head = await anext(pieces, None)
    except (ProxyError, ValueError, KeyError, TypeError) as e:
        first_err = e if isinstance(e, ProxyError) else _unreadable(up, e)
        first_err.message = redact(first_err.message, call.snap.secrets)
        up.close()
        finish_upstream(call, up, first_err)
        raise first_err from None
    resp = web.StreamResponse(status=200, headers={"Content-Type": content_type, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    err: ProxyError | None = None
    # Pieces made from bytes already read are written together (once more would mean waiting); what is
    # left at the end goes out with the last chunk marker, in one write.
    batch: list[bytes] = []
    try:
        await resp.prepare(call.request)
        call.sent = True
        if head is not None:
            await resp.write(head)
            call.row.first_byte_ms = round((time.monotonic() - call.row.t0) * 1000, 2)
            size = 0
            async for piece in pieces:
                batch.append(piece)
                size += len(piece)
                if size >= BATCH_BYTES or not up.ready():
                    await resp.write(batch[0] if len(batch) == 1 else b"".join(batch))
                    batch.clear()
                    size = 0
    except (ValueError, KeyError, TypeError) as e:  # a translator choked on what the backend sent
        err = _unreadable(up, e)
        call.row.fail(err.status, err.type, err.message)
        batch.append(call.front.module.stream_error(err))
    except ProxyError as e:
        e.message = redact(e.message, call.snap.secrets)
        err = e
        call.row.fail(e.status, e.type, e.message)
        batch.append(call.front.module.stream_error(e))
    except ConnectionError:
        call.row.fail(499, "cancelled", "client disconnected")
        err = ProxyError(499, "client disconnected")
    finally:
        up.close()
        finish_upstream(call, up, err)
    if call.row.status is None:
        call.row.status = 200
    try:
        await resp.write_eof(b"".join(batch))
    except ConnectionError:
        pass
    return resp


BATCH_BYTES = 64 * 1024  # a stream that never makes us wait still reaches the client in pieces this big


def _unreadable(up: UpstreamCall, e: Exception) -> ProxyError:
    return ProxyError(502, f"backend '{up.backend.name}' sent a stream llmproxy cannot read: {type(e).__name__}: {str(e)[:200]}")


async def events_of(up: UpstreamCall, decoder: str) -> AsyncIterator[Event]:
    """Decoded upstream events, as soon as each is complete; ``up.pending`` counts those already read and still to come."""
    d = DECODERS[decoder]()
    chunks = up.chunks()
    try:
        async for data in chunks:
            events = d.decode(data)
            left = len(events)
            for ev in events:
                left -= 1
                up.pending = left
                yield ev
        for ev in d.flush():
            yield ev
    finally:
        up.pending = 0
        await chunks.aclose()  # closed here, not left to the garbage collector's finalizer hook


# ------------------------------------------------------------------ translated (through the hub)


def backend_module(call: Call) -> ModuleType:
    api = call.target.backend.api if call.target else "?"
    mod = BACKENDS.get(api)
    if mod is None:
        raise ProxyError(501, f"backends of api '{api}' are not supported by this llmproxy version yet", code="not_implemented")
    return mod


async def translated_embeddings(call: Call) -> dict:
    """A hub embeddings request (``call.body``) → the backend's format → an OpenAI embeddings list."""
    module = backend_module(call)
    if not hasattr(module, "embeddings_to_upstream"):
        raise ProxyError(400, f"backend '{call.target.backend.name}' (api: {call.target.backend.api}) has no embeddings endpoint", param="model")
    path, body = module.embeddings_to_upstream(call.body, call.target.upstream_model)
    up = await open_upstream(call, path, orjson.dumps(body), False, module)
    _, out = await whole_answer(call, up, lambda data: module.embeddings_from_upstream(data, call.meta), Usage.of_answer)
    return out


async def translated_chat(call: Call, to_hub: Callable[[dict], dict] | None = None) -> web.StreamResponse:
    """Front format → hub → backend format, and the answer back the same way.

    ``to_hub`` turns the client's body into the hub's, for a front door whose own format is not the
    hub (the OpenAI door's body already is); ``call.body`` itself is never changed.
    """
    module = backend_module(call)
    hub = upstream_body(call, to_hub(call.body) if to_hub else None)
    stream = bool(hub.get("stream", call.front.default_stream))
    meta = call.meta
    path, body = module.request_to_upstream(hub, call.target.upstream_model, stream)
    up = await open_upstream(call, path, orjson.dumps(body), stream, module)
    if not stream:
        _, hub_resp = await whole_answer(call, up, lambda data: module.response_from_upstream(data, meta), Usage.of_answer)
        out = call.front.module.response_to_client(hub_resp, meta)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    wants_usage = call.front.wants_usage(call.body)

    async def hub_chunks() -> AsyncIterator[dict]:
        events = events_of(up, module.STREAM_DECODER)
        try:
            async for chunk in module.stream_from_upstream(events, meta):
                u = chunk.get("usage")
                if u:
                    call.usage = Usage.from_hub(u)
                    if not chunk.get("choices") and not wants_usage:
                        continue
                yield chunk
        finally:
            await events.aclose()  # the translator may stop before the upstream's last bytes

    return await stream_out(call, up, call.front.module.stream_to_client(hub_chunks(), meta), call.front.stream_type)
