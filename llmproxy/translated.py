"""Through the hub: the client's format → the hub (OpenAI Chat Completions) → the backend's format,
and the answer back the same way, by the pure translators in ``llmproxy.translate``.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable

import orjson
from aiohttp import web

from .errors import ProxyError
from .exchange import StreamCut, open_upstream, request_bytes, stream_out, upstream_body, whole_answer
from .pipeline import Call
from .sse import FRAMERS
from .translate import BACKENDS
from .upstream import UpstreamCall
from .usage import Usage


def backend_module(call: Call) -> ModuleType:
    api = call.target.backend.api if call.target else "?"
    mod = BACKENDS.get(api)
    if mod is None:
        raise ProxyError(501, f"backends of api '{api}' are not supported by this llmproxy version yet", code="not_implemented")
    return mod


async def embeddings(call: Call) -> dict:
    """A hub embeddings request (``call.body``) → the backend's format → an OpenAI embeddings list."""
    module = backend_module(call)
    if not hasattr(module, "embeddings_to_upstream"):
        raise ProxyError(400, f"backend '{call.target.backend.name}' (api: {call.target.backend.api}) has no embeddings endpoint", param="model")
    path, body = module.embeddings_to_upstream(call.body, call.target.upstream_model)
    up = await open_upstream(call, path, request_bytes(body), False, module)
    _, out = await whole_answer(call, up, lambda data: module.embeddings_from_upstream(data, call.meta), Usage.of_answer)
    return out


async def chat(call: Call, to_hub: Callable[[dict], dict] | None = None) -> web.StreamResponse:
    """Front format → hub → backend format, and the answer back the same way.

    ``to_hub`` turns the client's body into the hub's, for a front door whose own format is not the
    hub (the OpenAI door's body already is); ``call.body`` itself is never changed.
    """
    module = backend_module(call)
    hub = upstream_body(call, to_hub(call.body) if to_hub else None)
    stream = bool(hub.get("stream", call.front.default_stream))
    meta = call.meta
    path, body = module.request_to_upstream(hub, call.target.upstream_model, stream)
    up = await open_upstream(call, path, request_bytes(body), stream, module)
    if not stream:
        _, hub_resp = await whole_answer(call, up, lambda data: module.response_from_upstream(data, meta), Usage.of_answer)
        out = call.front.module.response_to_client(hub_resp, meta)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    return await _stream(call, up, module.FromUpstream(meta), call.front.module.ToClient(meta), FRAMERS[module.STREAM_DECODER](up.limit))


async def _stream(call: Call, up: UpstreamCall, decoder, encoder, framer) -> web.StreamResponse:  # noqa: ANN001 - FromUpstream, ToClient, Framer
    """Each upstream read's events through the backend's ``decoder`` to hub chunks, and those, as a batch, through
    the front door's ``encoder`` to the client's bytes; the hub's usage noted on the way (a usage-only chunk the
    client did not ask for is not passed on).  The stream is over at the backend's own end (``decoder.done``)."""
    wants_usage = call.front.wants_usage(call.body)
    event, encode = decoder.event, encoder.chunks

    def noted(chunks: list[dict]) -> list[dict]:
        drop = False
        for c in chunks:
            u = c.get("usage")
            if u:
                call.usage = Usage.from_hub(u)  # (the last one a batch carries wins)
                drop = drop or (not c.get("choices") and not wants_usage)
        return [c for c in chunks if not (c.get("usage") and not c.get("choices"))] if drop else chunks

    def translated(events: list) -> bytes:
        chunks: list[dict] = []
        try:
            for ev in events:
                chunks += event(ev)
                if decoder.done:
                    break
        except Exception as e:
            if chunks:  # what the events before the bad one made still goes out, then the error
                raise StreamCut(encode(noted(chunks)), e) from None
            raise
        return encode(noted(chunks)) if chunks else b""

    def last() -> bytes:
        rest = b"" if decoder.done else translated(framer.read_rest())  # (the backend's end may come before its last bytes)
        return rest + encode(noted(decoder.end())) + encoder.end()

    return await stream_out(call, up, lambda data: translated(framer.read(data)), last, call.front.stream_type, lambda: decoder.done)
