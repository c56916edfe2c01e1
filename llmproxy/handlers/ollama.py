"""The Ollama front door: /api/version, /api/tags, /api/ps, /api/show, /api/chat, /api/generate, /api/embed.

Every llmproxy model and alias looks like a local Ollama model. Requests for an ``api: ollama``
backend are relayed natively (NDJSON lines back untouched); any other backend goes through the hub.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Awaitable, Callable

import orjson
from aiohttp import web

from .. import access, catalog
from ..errors import bad_request
from .. import relay, translated
from ..pipeline import Call, Front, read_json, route, serve
from ..state import STATE
from ..translate import ollama as fmt
from ..translate.common import check_routing

OLLAMA = Front("ollama", fmt, "application/x-ndjson", "ollama-", default_stream=True)
# /api/generate: the same format with the generate-shaped request and answers.
GENERATE = Front("ollama", SimpleNamespace(  # type: ignore[arg-type]
    request_from_client=fmt.request_from_generate, response_to_client=fmt.response_to_generate,
    ToClient=fmt.ToGenerate, error_body=fmt.error_body, stream_error=fmt.stream_error,
), "application/x-ndjson", "ollama-", default_stream=True)

EMBED = Front("ollama", fmt, "application/json", "ollama-")  # never streamed

# The Ollama API version this door speaks (clients such as Open-WebUI show or check it).
OLLAMA_VERSION = "0.12.0"
# /api/ps: llmproxy models never unload; Ollama shows a keep_alive of -1 as an expiry centuries away.
NEVER = "2318-01-01T00:00:00Z"


def _json(obj: dict) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


# ------------------------------------------------------------------ chat, generate, embed


def _door(front: Front, endpoint: str, path: str, to_hub: Callable[[dict], dict],
          check: Callable[[dict], dict]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A chat-like endpoint: ``check``-ed, then relayed to ``path`` of an Ollama backend, through the hub to any other."""

    async def handler(call: Call) -> web.StreamResponse:
        if call.target.backend.api == "ollama":
            return await relay.ollama(call, path)
        return await translated.chat(call, to_hub)

    async def endpoint_handler(request: web.Request) -> web.StreamResponse:
        return await serve(request, front, endpoint, handler, parse=check)

    return endpoint_handler


chat = _door(OLLAMA, "chat", "/api/chat", fmt.request_from_client, fmt.check_chat)
generate = _door(GENERATE, "generate", "/api/generate", fmt.request_from_generate, fmt.check_generate)


async def embed(request: web.Request) -> web.StreamResponse:
    return await serve(request, EMBED, "embed", _embed, parse=check_routing)


async def _embed(call: Call) -> web.StreamResponse:
    if call.target.backend.api == "ollama":
        return await relay.ollama(call, "/api/embed")
    inp = call.body.get("input")
    if not (isinstance(inp, str) or (isinstance(inp, list) and inp and all(isinstance(s, str) for s in inp))):
        raise bad_request("input: must be a string or a non-empty list of strings", param="input")
    hub = {"model": call.body["model"], "input": inp}
    if isinstance(call.body.get("dimensions"), int):
        hub["dimensions"] = call.body["dimensions"]
    raw, call.body = call.body, hub
    try:
        out = await translated.embeddings(call)
    finally:
        call.body = raw  # another route (failover) may relay the client's body
    data = sorted(out.get("data") or [], key=lambda d: d.get("index", 0))
    usage = out.get("usage") or {}
    return _json({"model": call.row.requested_model, "embeddings": [d.get("embedding") for d in data],
                  "total_duration": 0, "load_duration": 0, "prompt_eval_count": int(usage.get("prompt_tokens") or 0)})


# ------------------------------------------------------------------ what models there are


def _digest(name: str) -> str:
    """A stable per-name digest (Ollama clients key models by it)."""
    return hashlib.sha256(name.encode()).hexdigest()


def _entry(name: str, family: str, modified: str) -> dict:
    details = {"parent_model": "", "format": "", "family": family, "families": [family],
               "parameter_size": "", "quantization_level": ""}
    return {"name": name, "model": name, "modified_at": modified, "size": 0, "digest": _digest(name), "details": details}


def _modified(snap) -> str:  # noqa: ANN001
    return datetime.fromtimestamp(int(snap.config.loaded_at), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _listed(request: web.Request) -> list[dict]:
    state = request.app[STATE]
    snap = state.snap
    client = access.authenticate(snap.config, request)
    modified = _modified(snap)
    return [_entry(n, family, modified) for n, family in catalog.listed(state, snap, client)]


async def version(request: web.Request) -> web.Response:
    return _json({"version": OLLAMA_VERSION})


async def tags(request: web.Request) -> web.Response:
    return _json({"models": _listed(request)})


async def ps(request: web.Request) -> web.Response:
    models = [{**m, "expires_at": NEVER, "size_vram": 0} for m in _listed(request)]
    for m in models:
        del m["modified_at"]
    return _json({"models": models})


async def show(request: web.Request) -> web.Response:
    snap = request.app[STATE].snap
    client = access.authenticate(snap.config, request)
    body = await read_json(request, snap.config.max_body)
    name = body.get("model") or body.get("name")  # "name" in older clients
    if not isinstance(name, str) or not name:
        raise bad_request("model is required", param="model")
    res = snap.resolver.resolve(name, default=False)
    access.authorize(client, name, res.name)
    entry = _entry(name, catalog.owner(snap, name), _modified(snap))
    return _json({"modelfile": "", "parameters": "", "template": "", "details": entry["details"],
                  "model_info": {}, "capabilities": ["completion", "tools"], "modified_at": entry["modified_at"]})


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/version", version, OLLAMA)
    route(app, "GET", "/api/tags", tags, OLLAMA)
    route(app, "GET", "/api/ps", ps, OLLAMA)
    route(app, "POST", "/api/show", show, OLLAMA)
    route(app, "POST", "/api/chat", chat, OLLAMA)
    route(app, "POST", "/api/generate", generate, OLLAMA)
    route(app, "POST", "/api/embed", embed, OLLAMA)
