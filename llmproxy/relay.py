"""Same-format relay, the hot path: the body goes up with only the model (and params) changed,
and the upstream bytes come back untouched, event by event, while usage is read on the side.
"""
from __future__ import annotations

import time
from typing import AsyncIterator, Callable

import orjson
from aiohttp import web

from .errors import ProxyError
from .proxy import Call, finish_upstream, open_upstream, stream_out, upstream_body
from .sse import SSEFramer, parse_event
from .translate import openai as openai_fmt
from .upstream import UpstreamCall
from .usage import Usage

# Reads one raw SSE event; returns False to drop it from the client's stream.
Inspector = Callable[[bytes], bool]


async def relay_openai(call: Call, path: str) -> web.StreamResponse:
    """OpenAI client → OpenAI-compatible backend (chat, completions, embeddings)."""
    body = upstream_body(call)
    body["model"] = call.target.upstream_model
    stream = bool(body.get("stream"))
    wants_usage = openai_fmt.wants_usage(call.body)
    if stream:
        # Always ask for usage so the log has it; strip the extra chunk if the client did not ask.
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    up = await open_upstream(call, path, orjson.dumps(body), stream, openai_fmt)
    if not stream or not up.resp.content_type.startswith("text/event-stream"):
        return await _whole(call, up)

    def inspect(raw: bytes) -> bool:
        if b'"usage"' not in raw or b'"usage":null' in raw:
            if b'"error"' in raw:
                _mid_stream_error(call, raw)
            return True
        ev = parse_event(raw)
        if ev is None or ev.data == b"[DONE]":
            return True
        chunk = orjson.loads(ev.data)
        usage = chunk.get("usage")
        if usage:
            call.usage = Usage.from_hub(usage)
            if not chunk.get("choices") and not wants_usage:
                return False
        return True

    return await stream_out(call, up, _events(up, inspect), up.resp.headers.get("Content-Type", "text/event-stream"))


def _mid_stream_error(call: Call, raw: bytes) -> None:
    ev = parse_event(raw)
    try:
        data = orjson.loads(ev.data) if ev else None
    except orjson.JSONDecodeError:
        return
    if isinstance(data, dict) and "error" in data and "choices" not in data:
        err = openai_fmt.error_from_body(502, data)
        call.row.fail(err.status, err.type, err.message)


async def _events(up: UpstreamCall, inspect: Inspector) -> AsyncIterator[bytes]:
    """Upstream bytes cut at event boundaries, minus the events ``inspect`` drops."""
    framer = SSEFramer()
    async for data in up.chunks():
        events = framer.feed(data)
        if not events:
            continue
        kept = [raw for raw in events if inspect(raw)]
        if kept:
            yield b"".join(kept) if len(kept) > 1 else kept[0]
    rest = framer.flush()
    if rest and inspect(rest):
        yield rest


async def _whole(call: Call, up: UpstreamCall) -> web.Response:
    """A non-stream answer: read it, note its usage, pass the bytes on unchanged."""
    try:
        raw = await up.read()
    except ProxyError as e:
        up.close()
        finish_upstream(call, up, e)
        raise
    up.close()
    try:
        usage = orjson.loads(raw).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        usage = None
    call.usage = Usage.from_hub(usage) if isinstance(usage, dict) else None
    finish_upstream(call, up)
    call.row.first_byte_ms = round((time.monotonic() - call.row.t0) * 1000, 2)
    return web.Response(status=up.status, body=raw, content_type=up.resp.content_type or "application/json")
