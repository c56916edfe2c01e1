"""The Anthropic front door: Anthropic client request -> hub (OpenAI Chat Completions) -> Anthropic answer.

Used for non-Anthropic backends and by ``llmproxy mock``. Dropped because other providers cannot
take them:
``cache_control`` (everywhere), ``context_management``, ``container``, ``mcp_servers``,
``metadata``, ``service_tier``, ``inference_geo``, ``top_k``, ``output_config`` except ``format``
(``effort`` only picks the effort of adaptive thinking), tools' ``defer_loading`` /
``input_examples`` / ``strict`` / ``cache_control``, ``tool_result.is_error``, ``citations``.
Claude Code's billing system block (``BILLING_PREFIX``) is dropped too.
Server tools (typed tools without ``input_schema``) and unknown content blocks are a 400.
``system`` blocks and ``role:"system"`` messages become one system message (texts joined by a
blank line). Thinking -> ``reasoning_effort`` via ``_effort_for_budget``. In a client stream the
input token counts are only known at the end: ``message_start`` carries zeros and the final
``message_delta`` the real counts (the SDK takes them from there).
"""
from __future__ import annotations

from typing import Any

import orjson

from ...errors import ProxyError
from ...sse import sse_event
from ...usage import Usage
from ..common import StreamWriter, check_routing, dump_args, parse_tool_args
from ..meta import Meta
from .shared import ERROR_STATUS, _bad, _tool_id

# Claude Code's first system block, for Anthropic's billing only (e.g. "x-anthropic-billing-header:
# cc_version=2.1.329.136; cc_entrypoint=sdk-cli;"): dropped on the way to any other provider.
BILLING_PREFIX = "x-anthropic-billing-header:"

FINISH_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPE = {**{s: t for t, s in ERROR_STATUS.items()}, 408: "timeout_error", 502: "api_error", 503: "overloaded_error"}


# ======================================================================= Anthropic client -> hub

# Roles in ``messages``: Anthropic's two, and ``system``, which Claude Code puts there too (see request_from_client).
ROLES = frozenset({"user", "assistant", "system"})


def check_request(body: dict) -> dict:
    """What the Anthropic door checks before routing, whatever the backend (a relay sends the rest
    on as it is): the model, ``stream``, and ``messages`` a non-empty list of objects with a role
    and a string or list ``content`` — each message once, never a walk into its content."""
    check_routing(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _bad(f"messages[{i}]", "must be an object")
        if m.get("role") not in ROLES:
            raise _bad(f"messages[{i}].role", f"{m.get('role')!r} must be user or assistant")
        if not isinstance(m.get("content"), (str, list)):
            raise _bad(f"messages[{i}].content", "must be a string or a list of content blocks")
    return body


def request_from_client(body: dict) -> dict:
    """Anthropic Messages request -> hub request (``model`` kept; see the module doc for drops)."""
    if not isinstance(body, dict):
        raise _bad("body", "must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _bad("messages", "must be a list of messages")
    system = _client_texts(body.get("system"), "system")
    out: list[dict] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(where, "must be an object")
        role, content = m.get("role"), m.get("content")
        if not isinstance(content, (str, list)):
            raise _bad(f"{where}.content", "must be a string or a list of content blocks")
        if role == "system":
            system.extend(_client_texts(content, f"{where}.content"))
        elif role == "user":
            out.extend(_client_user(content, f"{where}.content"))
        elif role == "assistant":
            out.append(_client_assistant(content, f"{where}.content"))
        else:
            raise _bad(f"{where}.role", f"{role!r} must be user or assistant")
    if system:
        out.insert(0, {"role": "system", "content": "\n\n".join(system)})
    hub: dict[str, Any] = {"model": body.get("model"), "messages": out}
    _client_params(body, hub)
    _client_tools(body, hub)
    return hub


def _client_texts(content: Any, where: str) -> list[str]:
    """``system`` (string or text blocks) -> texts."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise _bad(where, "must be a string or a list of text blocks")
    texts = []
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise _bad(f"{where}[{j}]", "must be a text block")
        if not block["text"].startswith(BILLING_PREFIX):
            texts.append(block["text"])
    return texts


def _client_user(content: str | list, where: str) -> list[dict]:
    """A user turn -> one ``tool`` message per tool_result, then the user message with the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict] = []
    parts: list[dict] = []
    for j, block in enumerate(content):
        at = f"{where}[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            text, images = _client_tool_content(block.get("content"), f"{at}.content")
            tools.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
            parts.extend(images)  # OpenAI tool messages carry text only: images follow in the user turn
        else:
            parts.append(_client_part(block, at))
    if parts:
        single = len(parts) == 1 and parts[0]["type"] == "text"
        tools.append({"role": "user", "content": parts[0]["text"] if single else parts})
    return tools


def _client_tool_content(content: Any, where: str) -> tuple[str, list[dict]]:
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise _bad(where, "must be a string or a list of blocks")
    parts = [_client_part(b, f"{where}[{j}]") for j, b in enumerate(content)]
    text = "\n".join(p["text"] for p in parts if p["type"] == "text")
    return text, [p for p in parts if p["type"] != "text"]


def _client_part(block: Any, where: str) -> dict:
    """Anthropic text/image/document block -> OpenAI content part."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        return {"type": "text", "text": str(block.get("text") or "")}
    source = block.get("source") if kind in ("image", "document") else None
    if not isinstance(source, dict):
        raise _bad(where, f"content block type {kind!r} cannot be sent to this backend")
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        if kind == "image":
            return {"type": "image_url", "image_url": {"url": url}}
        return {"type": "file", "file": {"filename": block.get("title") or "document.pdf", "file_data": url}}
    if kind == "image" and source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": source.get("url")}}
    if kind == "document" and source.get("type") == "text":
        return {"type": "text", "text": str(source.get("data") or "")}
    raise _bad(f"{where}.source", f"{kind} source type {source.get('type')!r} cannot be sent to this backend")


def _client_assistant(content: str | list, where: str) -> dict:
    """An assistant turn -> hub assistant message with content, tool_calls and thinking_blocks."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict] = []
    thinking: list[dict] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            fn = {"name": block.get("name"), "arguments": dump_args(block.get("input"))}
            calls.append({"id": block.get("id"), "type": "function", "function": fn})
        elif kind == "thinking":
            thinking.append({"type": "thinking", "thinking": block.get("thinking") or "",
                             "signature": block.get("signature") or ""})
        elif kind == "redacted_thinking":
            thinking.append({"type": "redacted_thinking", "data": block.get("data")})
        else:
            raise _bad(f"{where}[{j}]", f"content block type {kind!r} cannot be sent to this backend")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thinking:
        message["thinking_blocks"] = thinking
    if calls:
        message["tool_calls"] = calls
    return message


def _effort_for_budget(budget: Any) -> str:
    """The inverse of ``THINKING_BUDGET``: below 4096 -> low, below 16384 -> medium, else high."""
    budget = budget if isinstance(budget, int) else 0
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _client_params(body: dict, hub: dict) -> None:
    for name, kinds in (("max_tokens", int), ("temperature", (int, float)), ("top_p", (int, float))):
        value = body.get(name)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise _bad(name, "must be a number")
    if body.get("max_tokens") is not None:
        hub["max_completion_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            hub[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences", "must be a list of strings")
        hub["stop"] = stops
    thinking = body.get("thinking") or {}
    config = body.get("output_config") or {}
    if not isinstance(thinking, dict) or not isinstance(config, dict):
        raise _bad("thinking" if not isinstance(thinking, dict) else "output_config", "must be an object")
    if thinking.get("type") == "enabled":
        hub["reasoning_effort"] = _effort_for_budget(thinking.get("budget_tokens"))
    elif thinking.get("type") == "adaptive":
        effort = config.get("effort")
        hub["reasoning_effort"] = effort if effort in ("low", "medium", "high") else "high" if effort else "medium"
    fmt = config.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        hub["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt.get("schema")}}
    if body.get("stream"):
        hub["stream"] = True
        hub["stream_options"] = {"include_usage": True}


def _client_tools(body: dict, hub: dict) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _bad("tools", "must be a list")
    out = []
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom") or not isinstance(tool.get("name"), str):
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _bad(f"tools[{i}]", f"server tool {kind!r} cannot be sent to this backend; only custom tools")
        fn = {"name": tool["name"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        out.append({"type": "function", "function": fn})
    if out:
        hub["tools"] = out
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise _bad("tool_choice", "must be an object")
    kind = choice.get("type")
    if kind == "tool":
        hub["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif kind in ("auto", "any", "none"):
        hub["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise _bad("tool_choice.type", "must be auto, any, tool or none")
    if choice.get("disable_parallel_tool_use"):
        hub["parallel_tool_calls"] = False


# ======================================================================= hub -> Anthropic client


def _client_usage(usage: Any) -> dict[str, int]:
    """Hub usage -> Anthropic usage (input_tokens without the cached and cache-written tokens)."""
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    u = Usage.from_hub(usage) or Usage()
    return {
        "input_tokens": max(u.prompt - u.cached - u.cache_write, 0),
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cached,
        "output_tokens": u.completion,
    }


def _client_input(arguments: Any) -> dict:
    """Tool-call arguments for a tool_use ``input``; arguments that are not a JSON object become {}."""
    try:
        return parse_tool_args(arguments, "arguments")
    except ProxyError:
        return {}


def response_to_client(hub: dict, meta: Meta) -> dict:
    """Hub ``chat.completion`` -> Anthropic ``message``."""
    choice = (hub.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict] = [dict(b) for b in msg.get("thinking_blocks") or () if isinstance(b, dict)]
    if not content and msg.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": msg["reasoning_content"], "signature": ""})
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    calls = msg.get("tool_calls") or []
    for k, call in enumerate(calls):
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": _tool_id(call.get("id"), meta.id, k), "name": fn.get("name") or "",
                        "input": _client_input(fn.get("arguments"))})
    return {
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content,
        "stop_reason": "tool_use" if calls else FINISH_REASONS.get(choice.get("finish_reason"), "end_turn"),
        "stop_sequence": None,
        "usage": _client_usage(hub.get("usage")),
    }


def _event(name: str, data: dict) -> bytes:
    return sse_event(orjson.dumps({"type": name, **data}), name)


class _Blocks:
    """Content blocks of one client stream: fresh consecutive indexes, one block open at a time.

    One instance per stream, held by ``ToClient``; nothing is shared between streams.
    """

    __slots__ = ("index", "kind", "tool")

    def __init__(self) -> None:
        self.index = -1
        self.kind: str | None = None
        self.tool: int | None = None  # hub tool-call index of the open tool_use block

    def open(self, kind: str, block: dict, tool: int | None = None) -> list[bytes]:
        out = self.close()
        self.index += 1
        self.kind, self.tool = kind, tool
        out.append(_event("content_block_start", {"index": self.index, "content_block": block}))
        return out

    def close(self) -> list[bytes]:
        if self.kind is None:
            return []
        self.kind = self.tool = None
        return [_event("content_block_stop", {"index": self.index})]

    def delta(self, delta: dict) -> bytes:
        return _event("content_block_delta", {"index": self.index, "delta": delta})


class ToClient(StreamWriter):
    """Hub chunks -> Anthropic SSE events; ``message_delta`` waits for the hub's trailing usage chunk."""

    __slots__ = ("meta", "blocks", "started", "finish", "usage", "tools_seen")

    def __init__(self, meta: Meta) -> None:
        self.meta = meta
        self.blocks = _Blocks()
        self.started = False
        self.finish: str | None = None
        self.usage: dict | None = None
        self.tools_seen: set[int] = set()

    def chunk(self, chunk: dict) -> bytes:
        out = []
        if not self.started:
            self.started = True
            out.append(_message_start(self.meta))
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in (chunk.get("choices") or ())[:1]:
            out += _encode_delta(self.blocks, choice.get("delta") or {}, self.tools_seen, self.meta)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                out += self.blocks.close()
        return out[0] if len(out) == 1 else b"".join(out)

    def end(self) -> bytes:
        out = [] if self.started else [_message_start(self.meta)]
        out += self.blocks.close()
        stop_reason = "tool_use" if self.tools_seen else FINISH_REASONS.get(self.finish, "end_turn")
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        final = _client_usage(self.usage) if self.usage else {"output_tokens": 0}
        out.append(_event("message_delta", {"delta": delta, "usage": final}))
        out.append(_event("message_stop", {}))
        return b"".join(out)


def _message_start(meta: Meta) -> bytes:
    message = {"id": meta.id, "type": "message", "role": "assistant", "model": meta.model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}
    return _event("message_start", {"message": message})


def _encode_delta(blocks: _Blocks, delta: dict, tools_seen: set[int], meta: Meta) -> list[bytes]:
    """One hub delta -> Anthropic block events (opening/closing blocks as the kind changes)."""
    out: list[bytes] = []
    if delta.get("reasoning_content"):
        if blocks.kind != "thinking":
            out += blocks.open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        out.append(blocks.delta({"type": "thinking_delta", "thinking": delta["reasoning_content"]}))
    for block in delta.get("thinking_blocks") or ():
        out += _encode_thinking_block(blocks, block)
    text = delta.get("content") or delta.get("refusal")
    if text:
        if blocks.kind != "text":
            out += blocks.open("text", {"type": "text", "text": ""})
        out.append(blocks.delta({"type": "text_delta", "text": text}))
    for call in delta.get("tool_calls") or ():
        k = call.get("index", 0)
        fn = call.get("function") or {}
        if blocks.kind != "tool" or blocks.tool != k:
            if k in tools_seen:
                raise ProxyError(502, f"tool call {k} continued after another began; cannot re-open its tool_use block")
            tools_seen.add(k)
            start = {"type": "tool_use", "id": _tool_id(call.get("id"), meta.id, k), "name": fn.get("name") or "", "input": {}}
            out += blocks.open("tool", start, k)
        args = fn.get("arguments")
        if args:
            out.append(blocks.delta({"type": "input_json_delta",
                                     "partial_json": args if isinstance(args, str) else dump_args(args)}))
    return out


def _encode_thinking_block(blocks: _Blocks, block: Any) -> list[bytes]:
    """A complete hub thinking block: finish the open thinking block with its signature, or emit it whole."""
    if not isinstance(block, dict):
        return []
    out: list[bytes] = []
    if block.get("type") == "redacted_thinking":
        out += blocks.open("redacted", {"type": "redacted_thinking", "data": block.get("data")})
        return out + blocks.close()
    if block.get("type") != "thinking":
        return []
    if blocks.kind != "thinking":  # not streamed as reasoning_content before: send the text now
        out += blocks.open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if block.get("thinking"):
            out.append(blocks.delta({"type": "thinking_delta", "thinking": block["thinking"]}))
    if block.get("signature"):
        out.append(blocks.delta({"type": "signature_delta", "signature": block["signature"]}))
    return out + blocks.close()


def error_body(err: ProxyError) -> bytes:
    """Anthropic error body: ``{"type":"error","error":{"type","message"}}``."""
    kind = err.type if err.type in ERROR_STATUS else _ERROR_TYPE.get(err.status)
    if kind is None:
        kind = "api_error" if err.status >= 500 else "invalid_request_error"
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": err.message}})


def stream_error(err: ProxyError) -> bytes:
    """The same error as a final ``event: error`` in a started stream."""
    return sse_event(error_body(err), "error")
