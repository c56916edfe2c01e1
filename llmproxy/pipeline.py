"""The request story every front door shares: authenticate → read → resolve → attempt routes → log.

A front door supplies a ``Front`` (its wire-format module and a few facts about it) and a handler
that serves one attempt on one route: ``relay`` when the client's format is the backend's,
``translated`` otherwise.  ``serve`` does the rest, and ``route`` wraps each front-door handler so
that every ProxyError is answered in the shape of the front door the route belongs to.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets as _secrets
import time
from dataclasses import dataclass
from functools import update_wrapper
from types import ModuleType
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from . import access
from .balance import Plan, sticky_hash
from .bodies import Bodies
from .quota import Ticket
from .errors import ProxyError, bad_request, too_deep
from .requestlog import LogRow, attempt_json, new_row
from .resolve import Resolved, Target
from .state import STATE, Snapshot, State
from .translate import Meta
from .usage import Usage

log = logging.getLogger("llmproxy")


@dataclass(frozen=True)
class Front:
    """What the pipeline needs to know about a front door's format."""

    name: str  # openai | anthropic | ollama | responses
    module: ModuleType  # request_from_client, response_to_client, ToClient, error_body, stream_error
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
    cutoff: float | None = None  # monotonic end of failover.max_time: attempts are cut then, until ``sent``
    ticket: Ticket | None = None  # the tokens this request counted in tpm windows, corrected at the end
    bodies: Bodies | None = None  # log.bodies: what this request's bodies were (None: off, nothing collected)

    @property
    def meta(self) -> Meta:
        return Meta(self.front.id_prefix + self.row.id, int(self.row.ts), self.target.upstream_model if self.target else "")

    @property
    def key_value(self) -> str | None:
        """The value of the key this attempt uses (None: the backend has none); it goes to ``Upstream`` only."""
        return self.state.balance.key_value(self.target.backend, self.key) if self.target else None


_ID_PREFIX = _secrets.token_hex(6)  # random per process, so ids stay unique across restarts
_id_counter = itertools.count(1)


def new_id() -> str:
    """A unique request id: the process's random prefix and a counter (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


async def read_json(request: web.Request, limit: int, keep: Bodies | None = None) -> dict:
    """The request body as a JSON object; 413 over ``limit`` bytes, 400 when not a JSON object (``keep``: log.bodies)."""
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
    if keep is not None:
        keep.request = raw
    if not raw or raw.isspace():  # (not strip(): that copies the body)
        raise bad_request("request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if e.msg == "depth limit exceeded":  # (over orjson's 1,024 levels)
            raise too_deep() from None
        raise bad_request(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


Handler = Callable[["Call"], Awaitable[web.StreamResponse]]
# Strategies that choose a route before the first attempt, by an exchange of their own: strategy →
# (call, resolved) → resolved with the chosen route first.  designate.py adds "designator" (it calls
# back into ``attempt``, so it registers itself rather than being imported here; app.py imports it).
CHOOSERS: dict[str, Callable[["Call", Resolved], Awaitable[Resolved]]] = {}


async def serve(request: web.Request, front: Front, endpoint: str, handler: Handler, parse: Callable[[dict], dict] | None = None,
                narrow: Callable[[Call, Resolved], Awaitable[Resolved]] | None = None) -> web.StreamResponse:
    """Authenticate, read, resolve and log around ``handler``; its errors go to ``route``'s wrapper with the row written.

    ``narrow`` may cut the resolved routes down before any is tried (a follow-up that must reach
    the backend holding its state).
    """
    state = request.app[STATE]
    snap = state.snap
    row = new_row(new_id(), front.name, endpoint)
    row.client_addr = request.remote
    call = Call(request, state, snap, front, row, {})
    if snap.config.log_bodies:
        call.bodies = Bodies(snap.config.log_bodies_max, snap.secrets, request.headers)
    task = asyncio.current_task()
    state.running.add(task)
    try:
        client = access.authenticate(snap.config, request)
        if client is not None:
            row.client, row.tags, row.client_group = client.name, ",".join(client.tags) or None, client.group
        access.end_user(client, request, row, state.told)
        body = await read_json(request, snap.config.max_body, call.bodies)
        call.body = (parse or front.module.request_from_client)(body)
        requested = call.body["model"]
        row.requested_model = requested
        row.stream = int(bool(call.body.get("stream", front.default_stream)))
        resolved = snap.resolver.resolve(requested)
        access.authorize(client, requested, resolved.name, resolved.default)
        if client is not None:
            call.ticket = state.quota.admit(snap.config, client, row.user_id, call.body, row.user_name)
        if narrow is not None:
            resolved = await narrow(call, resolved)
        resp = await attempt(call, resolved, handler)
        if row.status is None:
            row.status = resp.status
        if call.bodies is not None and isinstance(resp, web.Response) and isinstance(resp.body, bytes):
            call.bodies.response = resp.body  # (a stream's bytes were kept by stream_out as they went)
        return resp
    except ProxyError as e:
        row.fail(e.status, e.type, e.message)
        if call.bodies is not None and not call.sent:
            call.bodies.response = front.module.error_body(e)
        raise
    except asyncio.CancelledError:
        if not state.shutting_down:
            row.fail(499, "cancelled", "client disconnected")
            raise
        err = shutdown_error(call)
        row.fail(err.status, err.type, err.message)
        if call.sent:  # (cut between the stream's last bytes and its end: nothing more can be said)
            raise
        task.uncancel()  # llmproxy's own stop: answered below, in the door's shape, while the connection is open
        raise err from None
    except Exception as e:  # a bug: answer 500, keep serving, keep the row
        err = bug(request, e)
        row.fail(500, err.type, f"{type(e).__name__}: {e}")
        raise err from None
    finally:
        state.running.discard(task)
        _finish_row(call)
        if call.bodies is not None:
            row.bodies = call.bodies.finish()
        state.metrics.observe(row)
        state.log.put(row)


async def attempt(call: Call, resolved: Resolved, handler: Handler) -> web.StreamResponse:
    """Call ``handler`` on the routes in the strategy's order until one answers; failover only before the first byte."""
    bal, row = call.state.balance, call.row
    choose = CHOOSERS.get(resolved.strategy)
    if choose is not None and len(resolved.targets) > 1:
        resolved = await choose(call, resolved)
    keyed = any(t.backend.keys for t in resolved.targets)
    plan = Plan(bal, resolved, sticky_hash(call.body) if keyed else None)
    call.cutoff = plan.deadline
    err: ProxyError | None = None
    try:
        step = plan.first()
        while step is not None:
            t = call.target = step.target
            call.key = step.key
            row.model, row.backend, row.upstream_model = t.model, t.backend.name, t.upstream_model
            t0 = time.monotonic()
            try:
                with bal.busy(t):
                    resp = await handler(call)
            except ProxyError as e:
                plan.record(step, e.status, (time.monotonic() - t0) * 1000, e)
                bal.failed(t, step.key, e)
                call.state.metrics.upstream_error(t.backend.name, e)
                if call.sent:
                    raise
                err = e
                step = await plan.next(err)
                continue
            except asyncio.CancelledError:
                plan.record(step, 503 if call.state.shutting_down else 499, (time.monotonic() - t0) * 1000, None)
                raise
            ms = (time.monotonic() - t0) * 1000
            if row.error is not None and row.status not in (None, 499):  # the stream ended with an in-band error
                late = ProxyError(row.status, row.error, type=row.error_type, code=row.error_type)
                if not call.state.shutting_down:  # (llmproxy's own stop is no fault of the route)
                    bal.failed(t, step.key, late)
                    call.state.metrics.upstream_error(t.backend.name, late)
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
    assert err is not None  # (the first step always exists: the last route is never shut)
    if len({(a["backend"], a["model"]) for a in plan.log}) > 1:  # several routes: say which, in order
        err.message += " (tried: " + ", ".join(f"{a['backend']}/{a['model']} {a.get('status') or 'skipped'}" for a in plan.log) + ")"
    raise err


def shutdown_error(call: Call) -> ProxyError:
    """What a request still running when limits.shutdown_grace ran out is told (and logged)."""
    grace = call.state.snap.config.shutdown_grace
    return ProxyError(503, f"llmproxy is shutting down and this request did not finish within limits.shutdown_grace ({grace:g} s); "
                           "send it again", code="shutting_down")


def _finish_row(call: Call) -> None:
    row = call.row
    row.total_ms = row.since_start()
    u = call.usage
    if u is not None:
        row.prompt_tokens, row.completion_tokens = u.prompt, u.completion
        row.cached_tokens, row.cache_write_tokens, row.reasoning_tokens = u.cached, u.cache_write, u.reasoning
        if call.target is not None:
            row.cost_usd = u.cost(call.target.route.price)
    if row.client is not None:
        quota = call.state.quota
        if call.ticket is not None:  # the estimate counted on the way in becomes the real count (nothing, for a failure)
            quota.settle(call.ticket, u.total if u is not None else None if (row.status or 500) < 400 else 0)
        quota.add_cost(row.client, row.client_group, row.user_id, row.cost_usd, row.ts)


# ------------------------------------------------------------------ errors in the front door's shape


def route(app: web.Application, method: str, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], front: Front) -> None:
    """Add a front-door route: a ProxyError from ``handler`` becomes an answer in ``front``'s shape, and so does a
    bug (500, logged).  The one place a door's errors are shaped; a wrapper, not an aiohttp middleware, since any
    middleware at all makes aiohttp run two more coroutine layers (the middleware and its own current-app fixer)
    around every request of every route."""

    async def answered(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProxyError as e:
            return error_response(front, e)
        except web.HTTPException:
            raise
        except Exception as e:  # a bug outside serve(): answer 500, keep serving
            return error_response(front, bug(request, e))

    app.router.add_route(method, path, update_wrapper(answered, handler))


def error_response(front: Front, err: ProxyError) -> web.Response:
    headers = {"Retry-After": str(math.ceil(err.retry_after))} if err.retry_after else None  # 34.4 s -> 35: never invite an early retry
    if err.headers:
        headers = {**(headers or {}), **err.headers}
    return web.Response(status=err.status, body=front.module.error_body(err), content_type="application/json", headers=headers)


def bug(request: web.Request, e: Exception) -> ProxyError:
    """A bug in llmproxy: its traceback to the log, and what the client is told (a 500 naming only its type)."""
    log.error("unexpected error in %s %s", request.method, request.path, exc_info=e)
    return ProxyError(500, f"internal error in llmproxy: {type(e).__name__}")
