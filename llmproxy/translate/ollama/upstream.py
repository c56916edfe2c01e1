"""Ollama backends: hub (OpenAI Chat Completions) -> Ollama ``/api/chat`` and ``/api/embed``, Ollama answer -> hub.

What Ollama cannot express, and what happens then:

* remote image URLs (Ollama takes only bare base64): 400 — the translator does not fetch;
* ``tool_choice``: Ollama has none; ``"none"`` drops the tools, every other value just sends them;
* ``parallel_tool_calls``, ``logprobs``, ``logit_bias``, ``user``, ``metadata``… are dropped; ``n > 1`` is a 400.

Upstream chunks in the ``/api/generate`` shape (``response``/``thinking`` at top level instead of ``message``)
are read as well, so either NDJSON flavour decodes.
"""
from __future__ import annotations

from typing import Any

import orjson

from ...errors import ProxyError
from ...sse import Event
from ...usage import Usage, hub_usage
from ..common import (
    Tap,
    dump_args,
    event_json,
    frame_json,
    garbage,
    hub_chunk,
    hub_completion,
    is_utf8,
    json_or_none,
    parse_tool_args,
    split_data_url,
    synth_tool_call_id,
    text_error,
    text_of,
)
from ..meta import Meta

STREAM_DECODER = "ndjson"

_THINK = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "none": False, "minimal": False}
_FINISH = {"stop": "stop", "length": "length"}  # load / unload / missing / unknown -> stop
_SAMPLING = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")
# Hub request fields that Ollama takes inside ``options`` (see options_to_upstream).
OPTION_PARAMS = frozenset({"max_tokens", "max_completion_tokens", *_SAMPLING})


# =================================================================== hub -> Ollama (backend requests)


def request_to_upstream(hub: dict, model: str, stream: bool) -> tuple[str, dict]:
    """Hub request -> ("/api/chat", Ollama ChatRequest); ``stream`` is always sent (Ollama defaults to true)."""
    if isinstance(hub.get("n"), int) and hub["n"] > 1:
        raise ProxyError(400, "n: Ollama backends return one choice; send n=1", param="n")
    body: dict[str, Any] = {"model": model, "messages": _messages_to_upstream(hub.get("messages") or []), "stream": stream}
    tools = hub.get("tools")
    if tools and hub.get("tool_choice") != "none":
        body["tools"] = [_tool_to_upstream(t, f"tools[{i}]") for i, t in enumerate(tools)]
    fmt = _format_to_upstream(hub.get("response_format"))
    if fmt is not None:
        body["format"] = fmt
    options = options_to_upstream(hub)
    if options:
        body["options"] = options
    effort = hub.get("reasoning_effort")
    if effort is not None:
        if effort not in _THINK:
            raise ProxyError(400, f"reasoning_effort: {effort!r} is not one of none, minimal, low, medium, high", param="reasoning_effort")
        body["think"] = _THINK[effort]
    return "/api/chat", body


def _messages_to_upstream(messages: list) -> list[dict]:
    out: list[dict] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, from earlier assistant turns
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg.get("role")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": text_of(msg.get("content"), f"{where}.content")})
        elif role == "user":
            out.append(_user_to_upstream(msg.get("content"), where))
        elif role == "assistant":
            out.append(_assistant_to_upstream(msg, where, names))
        elif role in ("tool", "function"):
            call_id = msg.get("tool_call_id")
            m: dict[str, Any] = {"role": "tool", "content": text_of(msg.get("content"), f"{where}.content")}
            name = names.get(call_id) if call_id else None
            name = name or msg.get("name")
            if name:
                m["tool_name"] = name
            if call_id:
                m["tool_call_id"] = call_id
            out.append(m)
        else:
            raise ProxyError(400, f"{where}.role: {role!r} is not a chat role", param=f"{where}.role")
    return out


def _user_to_upstream(content: Any, where: str) -> dict:
    if not isinstance(content, list):
        return {"role": "user", "content": text_of(content, f"{where}.content")}
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        p = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            images.append(_image_to_upstream(part.get("image_url"), p))
        elif kind in ("text", "input_text"):
            texts.append(str(part.get("text") or ""))
        else:
            raise ProxyError(400, f"{p}: Ollama backends take text and image_url parts, not {kind!r}", param=p)
    m: dict[str, Any] = {"role": "user", "content": "\n".join(texts)}
    if images:
        m["images"] = images
    return m


def _image_to_upstream(image_url: Any, where: str) -> str:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise ProxyError(400, f"{where}.image_url.url: must be a string", param=f"{where}.image_url")
    parts = split_data_url(url)
    if parts is None:
        raise ProxyError(
            400,
            f"{where}.image_url.url: Ollama backends take only inline images; send a data:<mime>;base64,… URL "
            "instead of a remote URL",
            param=f"{where}.image_url",
        )
    return parts[1]


def _assistant_to_upstream(msg: dict, where: str, names: dict[str, str]) -> dict:
    m: dict[str, Any] = {"role": "assistant", "content": text_of(msg.get("content"), f"{where}.content")}
    thinking = msg.get("reasoning_content")
    if not thinking and msg.get("thinking_blocks"):
        thinking = "".join(b.get("thinking", "") for b in msg["thinking_blocks"] if b.get("type") == "thinking")
    if thinking:
        m["thinking"] = thinking
    calls = []
    for k, tc in enumerate(msg.get("tool_calls") or []):
        fn = tc.get("function") or {}
        call: dict[str, Any] = {}
        if tc.get("id"):
            call["id"] = tc["id"]
            names[tc["id"]] = fn.get("name", "")
        call["function"] = {
            "name": fn.get("name", ""),
            "arguments": parse_tool_args(fn.get("arguments"), f"{where}.tool_calls[{k}].function.arguments"),
        }
        calls.append(call)
    if calls:
        m["tool_calls"] = calls
    return m


def _tool_to_upstream(tool: dict, where: str) -> dict:
    if tool.get("type", "function") != "function" or not isinstance(tool.get("function"), dict):
        raise ProxyError(400, f"{where}: Ollama backends take only function tools", param=where)
    return {"type": "function", "function": tool["function"]}


def _format_to_upstream(rf: Any) -> Any:
    if not isinstance(rf, dict):
        return None
    if rf.get("type") == "json_object":
        return "json"
    if rf.get("type") == "json_schema":
        return (rf.get("json_schema") or {}).get("schema") or "json"
    return None


def options_to_upstream(hub: dict) -> dict:
    """The hub's sampling fields as Ollama ``options`` (max tokens → ``num_predict``)."""
    options: dict[str, Any] = {}
    max_tokens = hub.get("max_completion_tokens") or hub.get("max_tokens")
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    for key in _SAMPLING:
        if hub.get(key) is not None:
            options[key] = hub[key]
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    return options


# =================================================================== Ollama -> hub (backend answers)


def _message_of(obj: dict) -> dict:
    """The ``message`` of a chat object, or the equivalent of a generate object."""
    msg = obj.get("message")
    if isinstance(msg, dict):
        return msg
    return {"content": obj.get("response") or "", "thinking": obj.get("thinking")}


def _hub_tool_call(tc: dict, meta: Meta, k: int) -> dict:
    fn = tc.get("function") or {}
    return {
        "id": tc.get("id") or synth_tool_call_id(meta.id, k),
        "type": "function",
        "function": {"name": fn.get("name", ""), "arguments": dump_args(fn.get("arguments"))},
    }


def _finish_from(obj: dict, tool_calls_seen: bool) -> str:
    if tool_calls_seen:
        return "tool_calls"
    return _FINISH.get(obj.get("done_reason") or "", "stop")


def usage_from(obj: dict) -> dict:
    """Hub usage from an Ollama final object (missing counts are 0)."""
    return hub_usage(int(obj.get("prompt_eval_count") or 0), int(obj.get("eval_count") or 0))


def usage_of_answer(body: Any) -> dict | None:
    """Hub usage of an Ollama answer (or last stream line); None when it carries no counts."""
    if not isinstance(body, dict) or ("prompt_eval_count" not in body and "eval_count" not in body):
        return None
    return usage_from(body)


def relay_tap(frame: Any, seen: dict) -> Tap | None:
    """Usage from the last line (``"done": true``), an in-band ``{"error": …}`` line, and garbage: a line
    that is not ``{…}`` in UTF-8 (byte checks) is parsed, and one that is not JSON ends the relay."""
    raw = frame.raw
    if not (raw[0] == 0x7B and raw[-2:] == b"}\n" and (raw.isascii() or is_utf8(raw))):
        why = garbage(frame)
        if why is not None:
            return Tap(garbage=why)
    if b'"error"' not in raw and b'"done":true' not in raw and b'"done": true' not in raw:
        return None
    obj = frame_json(frame)
    if not isinstance(obj, dict):
        return None
    if obj.get("error"):
        return Tap(error=error_from_upstream(502, raw))
    if obj.get("done"):
        return Tap(usage=Usage.from_hub(usage_of_answer(obj)))
    return None


def response_from_upstream(body: dict, meta: Meta) -> dict:
    """Ollama ``stream:false`` answer -> hub ``chat.completion``."""
    msg = _message_of(body)
    calls = [_hub_tool_call(tc, meta, k) for k, tc in enumerate(msg.get("tool_calls") or [])]
    content = msg.get("content") or ""
    message: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
    if msg.get("thinking"):
        message["reasoning_content"] = msg["thinking"]
    if calls:
        message["tool_calls"] = calls
    return hub_completion(meta, message, _finish_from(body, bool(calls)), usage_from(body))


class FromUpstream:
    """One Ollama stream's NDJSON objects -> hub chunks; an ``{"error"}`` line, or EOF before ``done:true``, raises 502."""

    __slots__ = ("meta", "done", "started", "n_calls")

    def __init__(self, meta: Meta) -> None:
        self.meta, self.done = meta, False
        self.started = False
        self.n_calls = 0

    def event(self, event: Event) -> list[dict]:
        _, data = event
        obj = event_json(data, "Ollama")
        if not isinstance(obj, dict):
            raise ProxyError(502, "Ollama sent a stream line that is not a JSON object")
        if "error" in obj:
            raise ProxyError(502, _error_text(obj["error"]))
        meta = self.meta
        out = []
        if not self.started:
            self.started = True
            out.append(hub_chunk(meta, {"role": "assistant", "content": ""}))
        msg = _message_of(obj)
        if msg.get("thinking"):
            out.append(hub_chunk(meta, {"reasoning_content": msg["thinking"]}))
        if msg.get("content"):
            out.append(hub_chunk(meta, {"content": msg["content"]}))
        for tc in msg.get("tool_calls") or []:
            call = _hub_tool_call(tc, meta, self.n_calls)
            out.append(hub_chunk(meta, {"tool_calls": [{"index": self.n_calls, **call}]}))
            self.n_calls += 1
        if obj.get("done"):
            out.append(hub_chunk(meta, {}, _finish_from(obj, self.n_calls > 0)))
            out.append(hub_chunk(meta, None, usage=usage_from(obj)))
            self.done = True
        return out

    def end(self) -> list[dict]:
        if not self.done:
            raise ProxyError(502, "Ollama stream ended before its final done:true object")
        return []


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        error = error.get("message") or orjson.dumps(error).decode()
    return str(error)


def error_from_upstream(status: int, body: bytes) -> ProxyError:
    """``{"error": "<message>"}`` (any status) -> ProxyError with that status and message."""
    obj = json_or_none(body)
    if isinstance(obj, dict) and obj.get("error"):
        return ProxyError(status, _error_text(obj["error"]))
    return text_error(status, body, "Ollama")


def embeddings_to_upstream(hub: dict, model: str) -> tuple[str, dict]:
    """Hub embeddings request -> ("/api/embed", {"model", "input", "dimensions"?}); token arrays -> 400."""
    inp = hub.get("input")
    if not (isinstance(inp, str) or (isinstance(inp, list) and all(isinstance(s, str) for s in inp))):
        raise ProxyError(400, "input: Ollama backends embed strings or lists of strings, not token arrays", param="input")
    body: dict[str, Any] = {"model": model, "input": inp}
    if hub.get("dimensions") is not None:
        body["dimensions"] = hub["dimensions"]
    return "/api/embed", body


def embeddings_from_upstream(body: dict, meta: Meta) -> dict:
    """Ollama ``/api/embed`` answer -> OpenAI embeddings list; usage from ``prompt_eval_count``."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(body.get("embeddings") or [])],
        "model": meta.model,
        "usage": hub_usage(int(body.get("prompt_eval_count") or 0), 0),
    }
