"""The Anthropic front door: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` (any query string).

To an ``api: anthropic`` backend the request is relayed (``relay.anthropic``: lossless, the client's
anthropic-* headers along); to any other backend it goes through the hub and comes back as a
proper Anthropic message or event stream.
"""
from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web

from ..errors import ProxyError, bad_request, too_deep
from .. import relay, translated
from ..pipeline import Call, Front, route, serve
from ..translate import anthropic as fmt

ANTHROPIC = Front("anthropic", fmt, "text/event-stream", "msg_")

# count_tokens without an Anthropic backend: about 4 characters of text (or JSON) per token, a fixed
# cost per image or document (Anthropic's ~1.15 megapixel image is ~1,600 tokens), a few tokens of
# framing per message and per tool. Good for "how full is my context", not for billing.
CHARS_PER_TOKEN = 4
MEDIA_TOKENS = 1600
MESSAGE_TOKENS = 4
TOOL_TOKENS = 8


async def messages(request: web.Request) -> web.StreamResponse:
    return await serve(request, ANTHROPIC, "messages", _messages, parse=fmt.check_request)


async def _messages(call: Call) -> web.StreamResponse:
    if call.target.backend.api == "anthropic":
        return await relay.anthropic(call, "/v1/messages")
    return await translated.chat(call, fmt.request_from_client)


async def count_tokens(request: web.Request) -> web.StreamResponse:
    return await serve(request, ANTHROPIC, "count_tokens", _count_tokens, parse=fmt.check_request)


async def _count_tokens(call: Call) -> web.StreamResponse:
    if call.target.backend.api == "anthropic":
        try:
            return await relay.anthropic(call, "/v1/messages/count_tokens", params=False)
        except ProxyError as e:
            # Anthropic-compatible servers without the endpoint: estimate instead of failing /context.
            # (Anthropic's own 404 for an unknown model names it: "model: …", and is passed on.)
            if e.status not in (404, 405, 501) or "model" in e.message.lower():
                raise
    try:
        tokens = estimate_tokens(call.body)
    except (orjson.JSONEncodeError, RecursionError):  # a body nested deeper than llmproxy sends on
        raise too_deep() from None
    return web.Response(body=orjson.dumps({"input_tokens": tokens}), content_type="application/json")


def estimate_tokens(body: dict) -> int:
    """A local, cheap approximation of Anthropic's count_tokens: system, messages and tools (see CHARS_PER_TOKEN)."""
    chars, media = _size(body.get("system"))
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise bad_request("messages: must be a list of messages", param="messages")
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else m
        if isinstance(content, str):  # (most messages: plain text, counted here rather than in a call)
            chars += len(content)
        else:
            c, n = _size(content)
            chars, media = chars + c, media + n
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise bad_request("tools: must be a list", param="tools")
    for t in tools:
        if isinstance(t, dict):
            chars += len(orjson.dumps({k: t.get(k) for k in ("name", "description", "input_schema") if t.get(k)}))
    framing = MESSAGE_TOKENS * len(messages) + TOOL_TOKENS * len(tools)
    return max(1, math.ceil(chars / CHARS_PER_TOKEN) + media * MEDIA_TOKENS + framing)


def _size(content: Any) -> tuple[int, int]:
    """(characters of text and tool JSON, number of images/documents) in a content value."""
    if content is None:
        return 0, 0
    if isinstance(content, str):
        return len(content), 0
    if isinstance(content, list):
        chars = media = 0
        for block in content:
            c, n = _size(block)
            chars, media = chars + c, media + n
        return chars, media
    if not isinstance(content, dict):
        return len(str(content)), 0
    kind = content.get("type")
    if kind in ("image", "document") and (content.get("source") or {}).get("type") != "text":
        return 0, 1
    if kind == "text":
        return len(content.get("text") or ""), 0
    if kind == "thinking":
        return len(content.get("thinking") or ""), 0
    if kind == "tool_use":
        return len(content.get("name") or "") + len(orjson.dumps(content.get("input") or {})), 0
    if kind == "tool_result":
        return _size(content.get("content"))
    if kind == "document":
        return len(str((content.get("source") or {}).get("data") or "")), 0
    return 0, 0  # redacted thinking, server tool blocks…: opaque


def add_routes(app: web.Application) -> None:
    route(app, "POST", "/v1/messages", messages, ANTHROPIC)
    route(app, "POST", "/v1/messages/count_tokens", count_tokens, ANTHROPIC)
