"""Same-format relay, the hot path: the body goes up with only the model (and params) changed,
and the upstream bytes come back untouched, event by event, while usage is read on the side.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Protocol

import orjson
from aiohttp import web

from .proxy import Call, open_upstream, stream_out, upstream_body, whole_answer
from .sse import LineFramer, SSEFramer, parse_event
from .translate import anthropic as anthropic_fmt
from .translate import ollama as ollama_fmt
from .translate import openai as openai_fmt
from .upstream import UpstreamCall
from .usage import Usage

# Reads one raw SSE event; returns False to drop it from the client's stream.
Inspector = Callable[[bytes], bool]
# A whole (non-stream) answer body → its usage, for the log.
UsageOf = Callable[[Any], "Usage | None"]


class Framer(Protocol):
    def feed(self, chunk: bytes) -> list[bytes]: ...
    def flush(self) -> bytes: ...


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


# Anthropic protocol headers a client's request carries to an Anthropic backend (configured headers win).
ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")


async def relay_anthropic(call: Call, path: str, params: bool = True) -> web.StreamResponse:
    """Anthropic client → Anthropic backend (/v1/messages, /v1/messages/count_tokens).

    The body goes up with only the model (and, if ``params``, the route's params) changed, with the
    client's ``anthropic-version``/``anthropic-beta`` headers and query string (``?beta=true``); the
    answer comes back byte for byte while usage is read off ``message_start``/``message_delta``.
    """
    body = upstream_body(call) if params else dict(call.body)  # copies: call.body stays the client's
    body["model"] = call.target.upstream_model
    stream = bool(body.get("stream"))
    extra = {h: v for h in ANTHROPIC_HEADERS if (v := call.request.headers.get(h))}
    query = call.request.query_string
    up = await open_upstream(call, f"{path}?{query}" if query else path, orjson.dumps(body), stream, anthropic_fmt, extra)
    if not stream or not up.resp.content_type.startswith("text/event-stream"):
        return await _whole(call, up, _anthropic_usage_of)
    counts: dict[str, int] = {}

    def inspect(raw: bytes) -> bool:
        # Only three event types matter here; every event passes on unchanged.
        if b"message_start" not in raw and b"message_delta" not in raw and b"error" not in raw:
            return True
        ev = parse_event(raw)
        try:
            data = orjson.loads(ev.data) if ev else None
        except orjson.JSONDecodeError:
            return True
        kind = ev.name or (data.get("type") if isinstance(data, dict) else None)
        if kind == "message_start":
            counts.update(anthropic_fmt.usage_counts((data.get("message") or {}).get("usage")))
        elif kind == "message_delta":
            counts.update(anthropic_fmt.usage_counts(data.get("usage")))  # cumulative counts
        elif kind == "error":
            err = anthropic_fmt.error_from_upstream(200, ev.data)
            call.row.fail(err.status, err.type, err.message)
            return True
        else:
            return True
        if counts:
            call.usage = Usage.from_hub(anthropic_fmt.counts_to_hub_usage(counts))
        return True

    return await stream_out(call, up, _events(up, inspect), up.resp.headers.get("Content-Type", "text/event-stream"))


def _anthropic_usage_of(body: Any) -> Usage | None:
    usage = body.get("usage") if isinstance(body, dict) else None
    return Usage.from_hub(anthropic_fmt.counts_to_hub_usage(anthropic_fmt.usage_counts(usage))) if isinstance(usage, dict) else None


async def relay_ollama(call: Call, path: str) -> web.StreamResponse:
    """Ollama client → Ollama backend (/api/chat, /api/generate, /api/embed): NDJSON lines back untouched.

    A route's ``params`` go under the client's values: sampling ones (temperature, max_tokens…) into
    ``options`` as Ollama names them, any other key at the top level.
    """
    body = dict(call.body)
    params = call.target.route.params
    if params:
        top = {k: v for k, v in params.items() if k not in ollama_fmt.OPTION_PARAMS}
        options = ollama_fmt.options_to_upstream({k: v for k, v in params.items() if k in ollama_fmt.OPTION_PARAMS})
        body = {**top, **body}
        if options:
            body["options"] = {**options, **(body.get("options") or {})}
    body["model"] = call.target.upstream_model
    stream = path != "/api/embed" and body.get("stream") is not False  # Ollama streams unless told not to
    up = await open_upstream(call, path, orjson.dumps(body), stream, ollama_fmt)
    if not stream or not up.resp.content_type.startswith("application/x-ndjson"):
        return await _whole(call, up, _ollama_usage_of)

    def inspect(raw: bytes) -> bool:
        if b'"done"' not in raw and b'"error"' not in raw:
            return True
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return True
        if isinstance(obj, dict) and obj.get("error"):
            err = ollama_fmt.error_from_upstream(502, raw)
            call.row.fail(err.status, err.type, err.message)
        elif isinstance(obj, dict) and obj.get("done"):
            call.usage = _ollama_usage_of(obj)
        return True

    return await stream_out(call, up, _events(up, inspect, LineFramer()), up.resp.headers.get("Content-Type", "application/x-ndjson"))


def _ollama_usage_of(body: Any) -> Usage | None:
    if not isinstance(body, dict) or ("prompt_eval_count" not in body and "eval_count" not in body):
        return None
    return Usage.from_hub(ollama_fmt.usage_from(body))


def _mid_stream_error(call: Call, raw: bytes) -> None:
    ev = parse_event(raw)
    try:
        data = orjson.loads(ev.data) if ev else None
    except orjson.JSONDecodeError:
        return
    if isinstance(data, dict) and "error" in data and "choices" not in data:
        err = openai_fmt.error_from_body(502, data)
        call.row.fail(err.status, err.type, err.message)


async def _events(up: UpstreamCall, inspect: Inspector, framer: Framer | None = None) -> AsyncIterator[bytes]:
    """Upstream bytes cut at event boundaries (SSE unless another ``framer``), minus the events ``inspect`` drops."""
    framer = framer or SSEFramer()
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


async def _whole(call: Call, up: UpstreamCall, usage_of: UsageOf = Usage.of_answer) -> web.Response:
    """A non-stream answer: read it, note its usage, pass the bytes on unchanged."""
    raw, _ = await whole_answer(call, up, _as_is, usage_of)
    return web.Response(status=up.status, body=raw, headers={"Content-Type": up.resp.headers.get("Content-Type") or "application/json"})


def _as_is(body: Any) -> Any:
    return body
