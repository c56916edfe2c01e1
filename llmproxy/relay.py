"""Same-format relay, the hot path: the body goes up with only the model (and params) changed, and
the upstream bytes come back untouched, event by event.

The format's ``relay_tap`` reads the events that matter on the side (usage, an in-band error).  An
SSE format also has ``RELAY_SHAPE`` and ``relay_marks``: each read's whole events are checked as one
run of bytes and only the events the marks point into reach the tap, so an ordinary event costs no
Python of its own.  What differs between formats is the body that goes up
(``openai``, ``anthropic``, ``ollama`` below); the exchange itself is one function, ``relay``.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

from aiohttp import web

from .errors import ProxyError
from .exchange import StreamCut, open_upstream, request_bytes, stream_out, upstream_body, whole_answer
from .headers import redact
from .pipeline import Call
from .sse import FRAMERS, Frame, SSEFramer, around
from .translate import anthropic as anthropic_fmt
from .translate import ollama as ollama_fmt
from .translate.common import is_utf8
from .translate import openai as openai_fmt
from .usage import Usage

# The content type each stream format comes back with; any other answer is read whole.
STREAM_TYPES = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}


async def relay(call: Call, fmt: ModuleType, path: str, body: dict, stream: bool, extra_headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Send ``body`` (model set to the route's) to ``path`` of a backend speaking ``fmt``; pass its answer on as it is."""
    body["model"] = call.target.upstream_model
    up = await open_upstream(call, path, request_bytes(body), stream, fmt, extra_headers)
    content_type = up.resp.headers.get("Content-Type")
    kind = fmt.STREAM_DECODER
    if not stream or not up.resp.content_type.startswith(STREAM_TYPES[kind]):
        raw, _ = await whole_answer(call, up, _as_is, lambda answer: Usage.from_hub(fmt.usage_of_answer(answer)))
        return web.Response(status=up.status, body=raw, headers={"Content-Type": content_type or "application/json"})

    tap, seen, wants_usage, row, secrets = fmt.relay_tap, {}, call.front.wants_usage(call.body), call.row, call.snap.secrets
    shape, marks = getattr(fmt, "RELAY_SHAPE", None), getattr(fmt, "relay_marks", None)  # (SSE formats: a read checked whole)

    def render(batch: list[Frame] | bytes) -> bytes:
        """The batch's bytes for the client, after the tap read each event (it may drop a usage-only one).

        A run of bytes (SSE, ``SSEFramer.cut``) of the format's ordinary shape in UTF-8 is checked whole: only the
        events ``relay_marks`` points into are cut out for the tap, the rest passes as it came; any other run is
        cut into frames.  An event no client could read (``Tap.garbage``) ends the stream: what came before it
        goes out, then the front door's error (with nothing before it: a 502 the request may fail over on).
        """
        if not batch:
            return b""
        if type(batch) is bytes:
            if shape(batch) is not None and (batch.isascii() or is_utf8(batch)):
                at = marks(batch)
                if not at:
                    return batch
                batch = around(batch, at)
            else:
                batch = SSEFramer.split(batch)
        out: list[bytes] = []
        for f in batch:
            if type(f) is bytes:  # (ordinary events between the marked ones)
                out.append(f)
                continue
            t = tap(f, seen)
            if t is not None:
                if t.garbage is not None:
                    raise StreamCut(b"".join(out), ProxyError(502, f"backend '{call.target.backend.name}' sent a stream event that {t.garbage}",
                                                              type="upstream_garbage", code="upstream_garbage"))
                if t.usage is not None:
                    call.usage = t.usage
                    if t.usage_only and not wants_usage:
                        continue  # (dropped)
                if t.error is not None:
                    row.fail(t.error.status, t.error.type, redact(t.error.message, secrets))
                    # The event itself goes to the client: no secret an upstream echoed in it either (error events only,
                    # found by the tap, so every other event still passes untouched).
                    f.raw = redact(f.raw.decode("utf-8", "surrogateescape"), secrets).encode("utf-8", "surrogateescape")
            out.append(f.raw)
        return out[0] if len(out) == 1 else b"".join(out)

    framer = FRAMERS[kind](up.limit)
    read = framer.feed if shape is None else framer.cut
    return await stream_out(call, up, lambda data: render(read(data)), lambda: render(framer.flush()), content_type or STREAM_TYPES[kind])


def _as_is(body: Any) -> Any:
    return body


async def openai(call: Call, path: str) -> web.StreamResponse:
    """OpenAI client → OpenAI-compatible backend (chat, completions, embeddings)."""
    body = upstream_body(call)
    stream = bool(body.get("stream"))
    if stream:
        # Always ask for usage so the log has it; the extra chunk is dropped if the client did not ask.
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return await relay(call, openai_fmt, path, body, stream)


# Anthropic protocol headers a client's request carries to an Anthropic backend (configured headers win).
ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")


async def anthropic(call: Call, path: str, params: bool = True) -> web.StreamResponse:
    """Anthropic client → Anthropic backend (/v1/messages, /v1/messages/count_tokens).

    With the client's ``anthropic-version``/``anthropic-beta`` headers and its query string
    (``?beta=true``) exactly as sent; the route's params only if ``params``.
    """
    body = upstream_body(call) if params else dict(call.body)  # copies: call.body stays the client's
    extra = {h: v for h in ANTHROPIC_HEADERS if (v := call.request.headers.get(h))}
    query = call.request.rel_url.raw_query_string
    return await relay(call, anthropic_fmt, f"{path}?{query}" if query else path, body, bool(body.get("stream")), extra)


async def ollama(call: Call, path: str) -> web.StreamResponse:
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
    stream = path != "/api/embed" and body.get("stream") is not False  # Ollama streams unless told not to
    return await relay(call, ollama_fmt, path, body, stream)
