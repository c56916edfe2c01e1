"""``llmproxy mock``: a small upstream emulator speaking each wire format, for the demo, tests and bench.

It answers every chat with an echo of the last user message, split into ``chunks`` pieces sent
``delay`` seconds apart when streaming, with plausible usage; it calls the first offered tool
(never one that starts another agent: ``AGENT_TOOLS``) unless the last message is a tool result, and thinks aloud briefly when asked for reasoning
(``reasoning_effort``, Anthropic ``thinking``, Gemini ``thinkingConfig``, Ollama ``think``).
Besides chat: embeddings (OpenAI, Gemini ``:batchEmbedContents``, Ollama ``/api/embed``) and model
lists (OpenAI and Anthropic ``/v1/models``, Gemini ``/v1beta/models``, Ollama ``/api/tags``).  Requests are parsed and answers
encoded by llmproxy's own format modules (front-door direction), so the emulator speaks exactly
what llmproxy's translators read.  Gemini's front-door translator serves only the emulator, so it
lives here, in ``mock/gemini.py``.
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import orjson
from aiohttp import web

from ..errors import ProxyError
from ..translate import Meta, anthropic, ollama
from ..translate import openai as oai
from ..translate.common import hub_chunk, hub_completion
from ..usage import hub_usage
from . import gemini

FORMATS = {"openai": oai, "anthropic": anthropic, "gemini": gemini, "ollama": ollama}
"""Each format's front-door translator: it parses the requests the emulator gets and encodes its answers."""

CHUNKS = web.AppKey("chunks", int)
DELAY = web.AppKey("delay", float)


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def reply_text(hub: dict) -> str:
    users = [m for m in hub.get("messages", []) if m.get("role") == "user"]
    said = _text_of(users[-1].get("content")) if users else ""
    return f"Hello from the llmproxy mock! You said: {said[:200]}"


def _pieces(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text)))
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]


def thought_text(hub: dict) -> str:
    """A short thought when the request asks for reasoning (any ``reasoning_effort`` but "none"), else ""."""
    effort = hub.get("reasoning_effort")
    return f"The mock thinks ({effort} effort): echo the last user message." if effort and effort != "none" else ""


def _thinking(thought: str) -> dict:
    """Reasoning as the hub carries it; the signature lets Anthropic clients send the block back."""
    return {"reasoning_content": thought, "thinking_blocks": [{"type": "thinking", "thinking": thought, "signature": "bW9jay1zaWduYXR1cmU="}]} if thought else {}


def _usage(hub: dict, text: str, thought: str = "") -> dict:
    prompt = sum(len(_text_of(m.get("content")).split()) + 3 for m in hub.get("messages", []))
    reasoning = len(thought.split())
    return hub_usage(prompt, max(1, len(text.split())) + reasoning, reasoning=reasoning)


# A value of each JSON type for the arguments of a mock tool call (what a client checks them against).
_MOCK_VALUES = {"string": "mock", "boolean": False, "integer": 1, "number": 1, "array": [], "object": {}}


# Tools that start another agent (Claude Code's): an agent's first tool is one of them again, so a mock that
# called them would start agents without end (Claude Code with its default tools: 3,741 requests in 100 s).
AGENT_TOOLS = frozenset({"Agent", "Task"})


def _tool_call(hub: dict) -> dict | None:
    """Call the first tool (not one of ``AGENT_TOOLS``) when tools are offered and the last message is not a
    tool result: its required parameters (all, when it names none), each a value of its type."""
    tools = [t for t in hub.get("tools") or [] if (t.get("function") or {}).get("name") not in AGENT_TOOLS]
    msgs = hub.get("messages") or []
    if not tools or hub.get("tool_choice") == "none" or (msgs and msgs[-1].get("role") == "tool"):
        return None
    fn = tools[0].get("function", {})
    params = fn.get("parameters") or {}
    props = params.get("properties") or {}
    wanted = params.get("required") if isinstance(params.get("required"), list) else list(props)
    args = {k: _MOCK_VALUES.get((props.get(k) or {}).get("type"), 1) for k in wanted if k in props}
    return {"id": "call_mock_0", "type": "function", "function": {"name": fn.get("name", "tool"), "arguments": orjson.dumps(args).decode()}}


def hub_response(hub: dict, meta: Meta) -> dict:
    call = _tool_call(hub)
    text = reply_text(hub)
    thought = thought_text(hub)
    if call:
        message = {"role": "assistant", "content": None, **_thinking(thought), "tool_calls": [call]}
        return hub_completion(meta, message, "tool_calls", _usage(hub, "", thought))
    return hub_completion(meta, {"role": "assistant", "content": text, **_thinking(thought)}, "stop", _usage(hub, text, thought))


async def hub_stream(hub: dict, meta: Meta, chunks: int, delay: float) -> AsyncIterator[dict]:
    yield hub_chunk(meta, {"role": "assistant", "content": ""})
    call = _tool_call(hub)
    text = "" if call else reply_text(hub)
    thought = thought_text(hub)
    for piece in _pieces(thought, 2) if thought else ():
        yield hub_chunk(meta, {"reasoning_content": piece})
    if thought:
        yield hub_chunk(meta, {"thinking_blocks": _thinking(thought)["thinking_blocks"]})
    if call:
        yield hub_chunk(meta, {"tool_calls": [{"index": 0, **call}]})
    for piece in _pieces(text, chunks) if text else ():
        if delay:
            await asyncio.sleep(delay)
        yield hub_chunk(meta, {"content": piece})
    yield hub_chunk(meta, {}, "tool_calls" if call else "stop")
    yield hub_chunk(meta, None, usage=_usage(hub, text, thought))


def _meta(hub: dict, prefix: str) -> Meta:
    return Meta(f"{prefix}mock{time.monotonic_ns():x}", int(time.time()), str(hub.get("model", "mock")))


async def _answer(request: web.Request, fmt_name: str, hub_of, stream_of) -> web.StreamResponse:  # noqa: ANN001
    mod = FORMATS[fmt_name]
    try:
        body = orjson.loads(await request.read())
        hub = hub_of(mod, body, request)
    except ProxyError as e:
        return web.Response(status=e.status, body=mod.error_body(e), content_type="application/json")
    except orjson.JSONDecodeError as e:
        err = ProxyError(400, f"invalid JSON: {e}")
        return web.Response(status=400, body=mod.error_body(err), content_type="application/json")
    meta = _meta(hub, {"openai": "chatcmpl-", "anthropic": "msg_"}.get(fmt_name, ""))
    if not stream_of(hub, body, request):
        return web.Response(body=orjson.dumps(mod.response_to_client(hub_response(hub, meta), meta)), content_type="application/json")
    ctype = {"ollama": "application/x-ndjson"}.get(fmt_name, "text/event-stream")
    resp = web.StreamResponse(headers={"Content-Type": ctype})
    await resp.prepare(request)
    chunks = hub_stream(hub, meta, request.app[CHUNKS], request.app[DELAY])
    if fmt_name == "openai" and not oai.wants_usage(body):
        chunks = _without_usage(chunks)
    out = mod.ToClient(meta)
    async for chunk in chunks:
        piece = out.chunk(chunk)
        if piece:
            await resp.write(piece)
    await resp.write_eof(out.end())
    return resp


async def _without_usage(chunks: AsyncIterator[dict]) -> AsyncIterator[dict]:
    async for c in chunks:
        if c.get("choices"):
            yield c


def _client(mod, body, request):  # noqa: ANN001
    return mod.request_from_client(body)


def _gemini(mod, body, request):  # noqa: ANN001
    hub = mod.request_from_client(body)
    hub["model"] = request.match_info["model"]
    return hub


async def openai_chat(request: web.Request) -> web.StreamResponse:
    return await _answer(request, "openai", _client, lambda hub, body, r: bool(body.get("stream")))


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    return await _answer(request, "anthropic", _client, lambda hub, body, r: bool(body.get("stream")))


async def ollama_chat(request: web.Request) -> web.StreamResponse:
    return await _answer(request, "ollama", _client, lambda hub, body, r: body.get("stream", True) is not False)


async def gemini_generate(request: web.Request) -> web.StreamResponse:
    method = request.match_info["method"]
    if method == "batchEmbedContents":
        return await gemini_embed(request)
    if method not in ("generateContent", "streamGenerateContent"):
        err = ProxyError(404, f"mock: unknown Gemini method '{method}'")
        return web.Response(status=404, body=gemini.error_body(err), content_type="application/json")
    return await _answer(request, "gemini", _gemini, lambda hub, body, r: method == "streamGenerateContent")


def _vector(text: object, dims: int = 8) -> list[float]:
    """A fake, deterministic embedding of ``text``."""
    return [round((len(str(text)) % 7) / 7 + j / 10, 3) for j in range(dims)]


def _json(obj: object) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


def _inputs(inp: object) -> list:
    return [inp] if isinstance(inp, str) else inp if isinstance(inp, list) else []


async def openai_embeddings(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    inputs = _inputs(body.get("input"))
    data = [{"object": "embedding", "index": i, "embedding": _vector(t, body.get("dimensions") or 8)} for i, t in enumerate(inputs)]
    n = sum(len(str(t).split()) for t in inputs)
    return _json({"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": n, "total_tokens": n}})


async def gemini_embed(request: web.Request) -> web.Response:
    """``:batchEmbedContents``: one vector per request, ``outputDimensionality`` honoured."""
    body = orjson.loads(await request.read())
    reqs = [r for r in body.get("requests") or [] if isinstance(r, dict)]
    texts = [" ".join(p.get("text", "") for p in (r.get("content") or {}).get("parts") or []) for r in reqs]
    return _json({"embeddings": [{"values": _vector(t, r.get("outputDimensionality") or 8)} for t, r in zip(texts, reqs)]})


async def ollama_embed(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    inputs = _inputs(body.get("input"))
    return _json({"model": body.get("model"), "embeddings": [_vector(t, body.get("dimensions") or 8) for t in inputs],
                  "total_duration": 0, "load_duration": 0, "prompt_eval_count": sum(len(str(t).split()) for t in inputs)})


async def openai_completions(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    text = f"Hello from the llmproxy mock! You said: {str(body.get('prompt'))[:200]}"
    out = {"id": "cmpl-mock", "object": "text_completion", "created": int(time.time()), "model": body.get("model"),
           "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
           "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split()), "total_tokens": 5 + len(text.split())}}
    return web.Response(body=orjson.dumps(out), content_type="application/json")


MODELS = ("mock-small", "mock-large")


async def openai_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the OpenAI list, or Anthropic's when the client sends ``anthropic-version``."""
    if "anthropic-version" in request.headers:
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in MODELS]
        return _json({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
    return _json({"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in MODELS]})


async def gemini_models(request: web.Request) -> web.Response:
    methods = ["generateContent", "streamGenerateContent", "batchEmbedContents"]
    return _json({"models": [{"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": methods} for m in MODELS]})


async def ollama_tags(request: web.Request) -> web.Response:
    details = {"format": "gguf", "family": "mock", "families": ["mock"], "parameter_size": "1B", "quantization_level": "Q4_0"}
    return _json({"models": [{"name": m, "model": m, "modified_at": "2025-01-01T00:00:00Z", "size": 0,
                              "digest": f"{i:064x}", "details": details} for i, m in enumerate(MODELS)]})


def make_mock_app(chunks: int = 8, delay: float = 0.0) -> web.Application:
    """The emulator; OpenAI under /v1 (and without the prefix), plus every other format that has a module."""
    app = web.Application()
    app[CHUNKS], app[DELAY] = chunks, delay
    for prefix in ("/v1", ""):
        app.router.add_post(prefix + "/chat/completions", openai_chat)
        app.router.add_post(prefix + "/embeddings", openai_embeddings)
        app.router.add_post(prefix + "/completions", openai_completions)
        app.router.add_get(prefix + "/models", openai_models)
    if "anthropic" in FORMATS:
        app.router.add_post("/v1/messages", anthropic_messages)
    if "ollama" in FORMATS:
        app.router.add_post("/api/chat", ollama_chat)
        app.router.add_post("/api/embed", ollama_embed)
        app.router.add_get("/api/tags", ollama_tags)
    if "gemini" in FORMATS:
        app.router.add_post("/v1beta/models/{model}:{method}", gemini_generate)
        app.router.add_get("/v1beta/models", gemini_models)
    return app
