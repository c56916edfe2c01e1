"""The Gemini front door, spoken only by ``llmproxy mock``: Gemini request -> hub, hub -> Gemini response / stream / errors.

llmproxy itself has no Gemini front door, so this half of the Gemini translator lives beside the
emulator; ``llmproxy.translate.gemini`` holds the backend half that the proxy uses (and that
decodes what this module encodes).  ``request_from_client`` / ``response_to_client`` /
``ToClient`` (the stream writer) / ``error_body`` / ``stream_error``, as every front-door translator.
"""
from __future__ import annotations

import re
from typing import Any

import orjson

from ..errors import ProxyError
from ..translate.common import dump_args
from ..translate.meta import Meta
from ..usage import Usage

_HTTP_RPC = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
             409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
             500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
             504: "DEADLINE_EXCEEDED", 529: "UNAVAILABLE"}

_MODE_CHOICE = {"AUTO": "auto", "NONE": "none", "ANY": "required", "VALIDATED": "auto"}
_GEN_KEYS = {"maxOutputTokens": "max_completion_tokens", "temperature": "temperature", "topP": "top_p",
             "topK": "top_k", "seed": "seed", "candidateCount": "n", "presencePenalty": "presence_penalty",
             "frequencyPenalty": "frequency_penalty"}


def _get(obj: dict, camel: str) -> Any:
    """``obj[camel]``, or its snake_case spelling (the API accepts both)."""
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), camel))


def _want(value: Any, kind: type, param: str) -> Any:
    if value is not None and not isinstance(value, kind):
        raise ProxyError(400, f"{param}: must be {'an array' if kind is list else 'an object'}", param=param)
    return value


def request_from_client(body: dict) -> dict:
    """GenerateContentRequest -> hub request (contents, systemInstruction, generationConfig, tools, toolConfig)."""
    if not isinstance(body, dict):
        raise ProxyError(400, "body: must be a JSON object")
    hub: dict[str, Any] = {"model": body["model"]} if "model" in body else {}
    messages: list[dict] = []
    system = _get(body, "systemInstruction")
    if isinstance(system, str):
        system = {"parts": [{"text": system}]}
    if _want(system, dict, "systemInstruction"):
        text = "\n".join(p["text"] for p in system.get("parts") or [] if isinstance(p, dict) and isinstance(p.get("text"), str))
        if text:
            messages.append({"role": "system", "content": text})
    contents = _want(body.get("contents"), list, "contents")
    if not contents:
        raise ProxyError(400, "contents: must be a non-empty array", param="contents")
    calls: list[dict] = []  # every tool call so far, to answer functionResponses
    for i, turn in enumerate(contents):
        _want(turn, dict, f"contents[{i}]")
        parts = _want(turn.get("parts"), list, f"contents[{i}].parts") or []
        if turn.get("role") == "model":
            messages.append(_assistant_from_parts(parts, calls, i))
        else:
            messages.extend(_user_from_parts(parts, calls, i))
    hub["messages"] = messages
    tools = []
    for i, tool in enumerate(_want(body.get("tools"), list, "tools") or []):
        for j, decl in enumerate(_get(_want(tool, dict, f"tools[{i}]"), "functionDeclarations") or []):
            _want(decl, dict, f"tools[{i}].functionDeclarations[{j}]")
            schema = _get(decl, "parametersJsonSchema") or decl.get("parameters")
            fn = {"name": decl.get("name")}
            if decl.get("description"):
                fn["description"] = decl["description"]
            if isinstance(schema, dict):
                fn["parameters"] = _lower_types(schema)
            tools.append({"type": "function", "function": fn})
    if tools:
        hub["tools"] = tools
    fcc = _get(_want(_get(body, "toolConfig"), dict, "toolConfig") or {}, "functionCallingConfig") or {}
    if fcc.get("mode") in _MODE_CHOICE:
        names = _get(fcc, "allowedFunctionNames") or []
        hub["tool_choice"] = ({"type": "function", "function": {"name": names[0]}}
                              if fcc["mode"] == "ANY" and len(names) == 1 else _MODE_CHOICE[fcc["mode"]])
    hub.update(_hub_generation(_want(_get(body, "generationConfig"), dict, "generationConfig") or {}))
    return hub


def _assistant_from_parts(parts: list, calls: list[dict], i: int) -> dict:
    text, reasoning, tool_calls = [], [], []
    for part in parts:
        fc = _get(part, "functionCall") if isinstance(part, dict) else None
        if isinstance(fc, dict):
            call = {"id": fc.get("id") or f"call_{len(calls)}", "type": "function",
                    "function": {"name": fc.get("name"), "arguments": dump_args(fc.get("args") or {})}}
            if _get(part, "thoughtSignature"):
                call["extra_content"] = {"google": {"thought_signature": _get(part, "thoughtSignature")}}
            tool_calls.append(call)
            calls.append({"id": call["id"], "name": fc.get("name"), "answered": False})
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            (reasoning if part.get("thought") else text).append(part["text"])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or (None if tool_calls else "")}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _user_from_parts(parts: list, calls: list[dict], i: int) -> list[dict]:
    results, content = [], []
    for j, part in enumerate(parts):
        at = f"contents[{i}].parts[{j}]"
        _want(part, dict, at)
        fr = _get(part, "functionResponse")
        inline, file = _get(part, "inlineData"), _get(part, "fileData")
        if isinstance(fr, dict):
            results.append(_tool_result(fr, calls))
        elif isinstance(part.get("text"), str):
            if not part.get("thought"):
                content.append({"type": "text", "text": part["text"]})
        elif isinstance(inline, dict):
            mime, data = str(_get(inline, "mimeType") or ""), str(inline.get("data") or "")
            if mime.startswith("audio/"):
                content.append({"type": "input_audio", "input_audio": {"data": data, "format": mime[6:]}})
            elif mime.startswith("image/"):
                content.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
            else:
                content.append({"type": "file", "file": {"file_data": f"data:{mime};base64,{data}"}})
        elif isinstance(file, dict):
            content.append({"type": "image_url", "image_url": {"url": str(_get(file, "fileUri") or "")}})
        else:
            raise ProxyError(400, f"{at}: unsupported part (keys: {', '.join(map(str, part))})", param=at)
    out = results
    if content:
        only_text = all(c["type"] == "text" for c in content)
        out.append({"role": "user", "content": "".join(c["text"] for c in content) if only_text else content})
    return out


def _tool_result(fr: dict, calls: list[dict]) -> dict:
    """functionResponse -> tool message, matched to the call by id, else the oldest unanswered call of that name."""
    match = next((c for c in calls if fr.get("id") and c["id"] == fr.get("id")), None) or next(
        (c for c in calls if not c["answered"] and c["name"] == fr.get("name")), None)
    if match:
        match["answered"] = True
    response = fr.get("response")
    if isinstance(response, dict) and list(response) == ["result"] and isinstance(response["result"], str):
        content = response["result"]  # our own wrapping of a plain string, undone
    else:
        content = orjson.dumps(response if response is not None else {}).decode()
    return {"role": "tool", "tool_call_id": match["id"] if match else fr.get("id") or f"call_{fr.get('name')}",
            "content": content}


def _lower_types(schema: Any) -> Any:
    """OpenAPI-style upper-case type names (``"OBJECT"``) -> JSON Schema lower case, recursively."""
    if isinstance(schema, list):
        return [_lower_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}


def _hub_generation(cfg: dict) -> dict:
    hub: dict[str, Any] = {}
    for camel, key in _GEN_KEYS.items():
        if _get(cfg, camel) is not None:
            hub[key] = _get(cfg, camel)
    if _get(cfg, "stopSequences"):
        hub["stop"] = _get(cfg, "stopSequences")
    schema = _get(cfg, "responseJsonSchema") or _get(cfg, "responseSchema")
    if isinstance(schema, dict):
        hub["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": _lower_types(schema)}}
    elif _get(cfg, "responseMimeType") == "application/json":
        hub["response_format"] = {"type": "json_object"}
    thinking = _get(cfg, "thinkingConfig")
    if isinstance(thinking, dict):
        level, budget = _get(thinking, "thinkingLevel"), _get(thinking, "thinkingBudget")
        if isinstance(level, str) and level.lower() in ("minimal", "low", "medium", "high"):
            hub["reasoning_effort"] = level.lower()
        elif isinstance(budget, int):
            hub["reasoning_effort"] = ("none" if budget == 0 else "medium" if budget < 0 else
                                       "low" if budget <= 1024 else "medium" if budget <= 8192 else "high")
    return hub


_FINISH_OUT = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "function_call": "STOP",
               "content_filter": "SAFETY"}


def _usage_metadata(usage: dict) -> dict:
    u = Usage.from_hub(usage) or Usage()
    out = {"promptTokenCount": u.prompt, "candidatesTokenCount": u.completion - u.reasoning, "totalTokenCount": u.total}
    if u.reasoning:
        out["thoughtsTokenCount"] = u.reasoning
    if u.cached:
        out["cachedContentTokenCount"] = u.cached
    return out


def _args_obj(arguments: Any) -> dict:
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments.strip() else arguments
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {}


def _call_part(call: dict) -> dict:
    fn = call.get("function") or {}
    part: dict[str, Any] = {"functionCall": {"name": fn.get("name"), "args": _args_obj(fn.get("arguments"))}}
    sig = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
    if sig:
        part["thoughtSignature"] = sig
    return part


def _candidate(parts: list[dict], idx: int, finish: str | None = None) -> dict:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"} if parts else {"role": "model"}}
    if finish:
        cand["finishReason"] = _FINISH_OUT.get(finish, "STOP")
    cand["index"] = idx
    return cand


def response_to_client(hub: dict, meta: Meta) -> dict:
    """Hub chat.completion -> GenerateContentResponse (thoughts, text, functionCalls; usageMetadata)."""
    candidates = []
    for choice in hub.get("choices") or []:
        msg = choice.get("message") or {}
        parts: list[dict] = []
        if msg.get("reasoning_content"):
            parts.append({"text": msg["reasoning_content"], "thought": True})
        if isinstance(msg.get("content"), str) and msg["content"]:
            parts.append({"text": msg["content"]})
        parts.extend(_call_part(c) for c in msg.get("tool_calls") or [])
        candidates.append(_candidate(parts, choice.get("index") or 0, choice.get("finish_reason") or "stop"))
    out: dict[str, Any] = {"candidates": candidates}
    out["usageMetadata"] = _usage_metadata(hub.get("usage") or {})
    out["modelVersion"], out["responseId"] = meta.model, meta.id
    return out


def _sse(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"


class ToClient:
    """Hub chunks -> Gemini ``data: {…}\\r\\n\\r\\n`` events with only the new parts.

    Tool calls are collected until their choice finishes (Gemini sends whole functionCall parts);
    the final event carries them, the finishReason and the usageMetadata.
    """

    __slots__ = ("meta", "calls", "finish", "usage")

    def __init__(self, meta: Meta) -> None:
        self.meta = meta
        self.calls: dict[int, dict[int, dict]] = {}  # choice index -> tool index -> accumulated call
        self.finish: dict[int, str] = {}
        self.usage: dict | None = None

    def chunk(self, chunk: dict) -> bytes:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        candidates = []
        for choice in chunk.get("choices") or []:
            idx, delta = choice.get("index") or 0, choice.get("delta") or {}
            parts: list[dict] = []
            if delta.get("reasoning_content"):
                parts.append({"text": delta["reasoning_content"], "thought": True})
            if delta.get("content"):
                parts.append({"text": delta["content"]})
            for tc in delta.get("tool_calls") or []:
                acc = self.calls.setdefault(idx, {}).setdefault(tc.get("index") or 0, {"function": {"arguments": ""}})
                fn = tc.get("function") or {}
                acc["function"]["name"] = fn.get("name") or acc["function"].get("name")
                acc["function"]["arguments"] += fn.get("arguments") or ""
                if tc.get("extra_content"):
                    acc["extra_content"] = tc["extra_content"]
            if choice.get("finish_reason"):
                self.finish[idx] = choice["finish_reason"]
            if parts:
                candidates.append(_candidate(parts, idx))
        if not candidates:
            return b""
        return _sse({"candidates": candidates, "modelVersion": self.meta.model, "responseId": self.meta.id})

    def end(self) -> bytes:
        calls, finish, meta = self.calls, self.finish, self.meta
        final = [_candidate([_call_part(c) for _, c in sorted(calls.get(idx, {}).items())], idx, finish.get(idx, "stop"))
                 for idx in sorted(set(finish) | set(calls) or {0})]
        out: dict[str, Any] = {"candidates": final}
        if self.usage:
            out["usageMetadata"] = _usage_metadata(self.usage)
        out["modelVersion"], out["responseId"] = meta.model, meta.id
        return _sse(out)


def error_body(err: ProxyError) -> bytes:
    """Google error shape ``{"error":{code,message,status[,details:[RetryInfo]]}}``."""
    rpc = _HTTP_RPC.get(err.status, "INTERNAL" if err.status >= 500 else "INVALID_ARGUMENT")
    inner: dict[str, Any] = {"code": err.status, "message": err.message, "status": rpc}
    if err.retry_after is not None:
        inner["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                             "retryDelay": f"{err.retry_after:g}s"}]
    return orjson.dumps({"error": inner})


def stream_error(err: ProxyError) -> bytes:
    """The same error as a final SSE event (what Gemini clients see after a 200 stream started)."""
    return b"data: " + error_body(err) + b"\r\n\r\n"
