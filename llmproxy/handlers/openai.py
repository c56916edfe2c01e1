"""The OpenAI front door: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings."""
from __future__ import annotations

import orjson
from aiohttp import web

from .. import access, catalog
from ..errors import ProxyError, bad_request
from .. import relay, translated
from ..pipeline import Call, Front, route, serve
from ..state import STATE
from ..translate import openai as fmt

OPENAI = Front("openai", fmt, "text/event-stream", "chatcmpl-", wants_usage=fmt.wants_usage)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await serve(request, OPENAI, "chat", _chat)


async def _chat(call: Call) -> web.StreamResponse:
    if call.target.backend.api == "openai":
        return await relay.openai(call, "/chat/completions")
    return await translated.chat(call)


def _legacy(body: dict) -> dict:
    fmt.require_model(body)
    if "prompt" not in body:
        raise bad_request("'prompt' is required", param="prompt")
    fmt.check_fields(body)
    return body


async def completions(request: web.Request) -> web.StreamResponse:
    return await serve(request, OPENAI, "completions", _completions, parse=_legacy)


async def _completions(call: Call) -> web.StreamResponse:
    if call.target.backend.api != "openai":
        raise ProxyError(400, f"/v1/completions (legacy) is only served by api: openai backends; '{call.target.backend.name}' is api: {call.target.backend.api} — use /v1/chat/completions", param="model")
    return await relay.openai(call, "/completions")


def _embeddings_body(body: dict) -> dict:
    fmt.require_model(body)
    inp = body.get("input")
    if not isinstance(inp, (str, list)) or (isinstance(inp, list) and not inp):
        raise bad_request("'input' must be a string or a non-empty array", param="input")
    if body.get("stream"):
        raise bad_request("embeddings cannot be streamed", param="stream")
    return body


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await serve(request, OPENAI, "embeddings", _embeddings, parse=_embeddings_body)


async def _embeddings(call: Call) -> web.StreamResponse:
    api = call.target.backend.api
    if api == "openai":
        return await relay.openai(call, "/embeddings")
    return web.Response(body=orjson.dumps(await translated.embeddings(call)), content_type="application/json")


def _model_entry(name: str, created: int, owner: str) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


async def list_models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    snap = state.snap
    client = access.authenticate(snap.config, request)
    created = int(snap.config.loaded_at)
    data = [_model_entry(n, created, o) for n, o in catalog.listed(state, snap, client)]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    snap = request.app[STATE].snap
    name = request.match_info["model"]
    client = access.authenticate(snap.config, request)
    res = snap.resolver.resolve(name, default=False)
    access.authorize(client, name, res.name)
    return web.Response(body=orjson.dumps(_model_entry(name, int(snap.config.loaded_at), catalog.owner(snap, name))), content_type="application/json")


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/v1/models", list_models, OPENAI)
    route(app, "GET", "/v1/models/{model:.+}", get_model, OPENAI)
    route(app, "POST", "/v1/chat/completions", chat_completions, OPENAI)
    route(app, "POST", "/v1/completions", completions, OPENAI)
    route(app, "POST", "/v1/embeddings", embeddings, OPENAI)
