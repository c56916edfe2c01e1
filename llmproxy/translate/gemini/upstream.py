"""Google Gemini (Generative Language API) backends: hub (OpenAI Chat Completions) -> ``generateContent``, answer -> hub.

``request_to_upstream`` / ``response_from_upstream`` / ``FromUpstream`` (the stream reader) / ``error_from_upstream``
/ ``embeddings_*``.  (The Gemini front door, which only ``llmproxy mock`` speaks, is ``llmproxy/mock/gemini.py``.)

Decisions worth knowing (see also the docstrings below):

- Model names become part of the URL path, so they must match ``_MODEL_RE``: an optional
  ``models/`` or ``tunedModels/`` prefix, then letters, digits, ``.``, ``-``, ``_`` (first
  character alphanumeric, at most 128).  Anything else is a 400 naming the model; the name is
  percent-escaped as well.  ``tunedModels/x`` goes to ``/v1beta/tunedModels/x:…``.
- System/developer messages anywhere in the conversation are all folded, in order, into
  ``systemInstruction`` (Gemini has no mid-conversation system turn).
- Tool schemas go into ``parameters`` (OpenAPI subset, accepted by every model) after
  ``clean_schema``; ``response_format.json_schema`` goes unchanged into ``responseJsonSchema``.
- Gemini gives no tool-call ids: ids are ``call_<meta.id>_<k>`` (``call_<meta.id>_<c>_<k>`` for
  candidate c > 0); results are routed back by looking the id up in the earlier assistant turn.
- Dropped on the way to Gemini: ``parallel_tool_calls``, ``logit_bias``, ``user``, ``metadata``,
  ``store``, ``stream_options``, ``modalities``/``audio``, ``thinking_blocks`` and
  ``reasoning_content`` of assistant turns (Gemini wants only signatures back, not thoughts).
- Dropped on the way back: output ``inlineData`` (generated images), ``executableCode`` /
  ``codeExecutionResult`` parts, thought signatures on text parts (only functionCall signatures
  matter for replay), safety ratings, grounding and citation metadata.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from ...errors import ProxyError
from ...sse import Event
from ...usage import hub_usage
from ..common import (
    dump_args,
    event_json,
    hub_chunk,
    hub_usage_chunk,
    json_or_none,
    parse_tool_args,
    split_data_url,
    synth_tool_call_id,
    text_error,
    text_of,
)
from ..meta import Meta
from .schema import clean_schema

STREAM_DECODER = "sse"

# ---------------------------------------------------------------------------------------------
# URL safety

_MODEL_RE = re.compile(r"(?:(models|tunedModels)/)?([A-Za-z0-9][A-Za-z0-9._-]{0,127})")


def model_resource(model: str) -> tuple[str, str]:
    """``(collection, escaped_name)`` for a model name; ProxyError(400) for anything path-unsafe.

    ``models/gemini-2.5-flash`` and ``gemini-2.5-flash`` are the same model; ``tunedModels/x`` a tuned one.
    """
    m = _MODEL_RE.fullmatch(model) if isinstance(model, str) else None
    if m is None:
        shown = repr(model)
        shown = shown if len(shown) <= 100 else shown[:97] + "..."
        raise ProxyError(
            400,
            f"model {shown} is not a valid Gemini model name: use letters, digits, '.', '-', '_' "
            "with an optional 'models/' or 'tunedModels/' prefix",
            param="model",
        )
    # Second line of defence: the validated name cannot contain anything quote() changes.
    return m.group(1) or "models", quote(m.group(2), safe="")


def _method_path(model: str, method: str) -> str:
    collection, name = model_resource(model)
    return f"/v1beta/{collection}/{name}:{method}"


# ---------------------------------------------------------------------------------------------
# Hub request -> Gemini request

_EFFORT_BUDGET = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_EXT_MIME = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
    "gif": "image/gif", "heic": "image/heic", "heif": "image/heif", "pdf": "application/pdf",
}
_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3", "flac": "audio/flac", "ogg": "audio/ogg",
               "aac": "audio/aac", "aiff": "audio/aiff"}


def request_to_upstream(hub: dict, model: str, stream: bool) -> tuple[str, dict]:
    """Hub request -> (path, GenerateContentRequest body)."""
    path = _method_path(model, "streamGenerateContent?alt=sse" if stream else "generateContent")
    system, contents = _contents(hub.get("messages"))
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = _tools(hub)
    if tools:
        body["tools"] = [{"functionDeclarations": tools}]
    tool_config = _tool_config(hub.get("tool_choice", hub.get("function_call")))
    if tool_config:
        body["toolConfig"] = {"functionCallingConfig": tool_config}
    config = _generation_config(hub)
    if config:
        body["generationConfig"] = config
    return path, body


def _contents(messages: Any) -> tuple[list[dict], list[dict]]:
    """OpenAI messages -> (systemInstruction parts, contents) with same-role turns merged."""
    if not isinstance(messages, list) or not messages:
        raise ProxyError(400, "messages: must be a non-empty array", param="messages")
    system: list[dict] = []
    contents: list[dict] = []
    calls: dict[str, str] = {}  # tool_call_id -> function name
    pending: list[str] = []  # names of the last assistant turn's calls not yet answered, in order
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ProxyError(400, f"messages[{i}]: must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend({"text": t} for t in [text_of(msg.get("content"), f"{where}.content")] if t)
            continue
        if role == "user":
            turn, parts = "user", _user_parts(msg.get("content"), where)
        elif role == "assistant":
            turn, parts = "model", _assistant_parts(msg, where, calls)
            if parts:  # an empty assistant message (some clients send one) keeps the open calls
                pending = [p["functionCall"]["name"] for p in parts if "functionCall" in p]
        elif role in ("tool", "function"):
            name = _result_name(msg, calls, pending, where)
            turn, parts = "user", [{"functionResponse": {"name": name, "response": _result_obj(msg, where)}}]
        else:
            raise ProxyError(400, f"{where}.role: unsupported role {role!r}", param=f"{where}.role")
        if not parts:
            continue  # Gemini rejects empty turns (e.g. an assistant message with content null)
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    if not contents:
        raise ProxyError(400, "messages: Gemini needs at least one user or assistant message", param="messages")
    return system, contents


def _user_parts(content: Any, where: str) -> list[dict]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise ProxyError(400, f"{where}.content: must be a string or an array of parts", param=f"{where}.content")
    parts = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                parts.append({"text": str(part["text"])})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_media_part(url, at))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = str(audio.get("format") or "wav").lower()
            parts.append({"inlineData": {"mimeType": _AUDIO_MIME.get(fmt, f"audio/{fmt}"), "data": audio.get("data") or ""}})
        elif kind == "file":
            data = (part.get("file") or {}).get("file_data")
            if not isinstance(data, str) or not data.startswith("data:"):
                raise ProxyError(400, f"{at}: Gemini needs file parts as file_data data URLs", param=at)
            parts.append(_media_part(data, at))
        else:
            raise ProxyError(400, f"{at}: unsupported content part type {kind!r}", param=at)
    return parts


def _media_part(url: Any, at: str) -> dict:
    """An image/file URL -> inlineData (data URL) or fileData (http(s)/gs URI, MIME from the extension).

    A remote URL without a known extension gets ``mimeType: "image/*"``; Gemini fetches public
    http(s) URLs and Files API / ``gs://`` URIs itself, so nothing is downloaded here.
    """
    if not isinstance(url, str) or not url:
        raise ProxyError(400, f"{at}: missing url", param=at)
    if url.startswith("data:"):
        split = split_data_url(url)
        if split is None or not split[0]:
            raise ProxyError(400, f"{at}: expected a data:<mime>;base64,<data> URL", param=at)
        return {"inlineData": {"mimeType": split[0], "data": split[1]}}
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https", "gs"):
        raise ProxyError(400, f"{at}: only data:, http(s): and gs: URLs are supported", param=at)
    ext = urlsplit(url).path.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return {"fileData": {"mimeType": _EXT_MIME.get(ext, "image/*"), "fileUri": url}}


def _assistant_parts(msg: dict, where: str, calls: dict[str, str]) -> list[dict]:
    text = text_of(msg.get("content"), f"{where}.content")
    parts: list[dict] = [{"text": text}] if text else []
    tool_calls = msg.get("tool_calls") or []
    if msg.get("function_call"):  # legacy functions API
        tool_calls = [{"function": msg["function_call"]}]
    for j, tc in enumerate(tool_calls):
        at = f"{where}.tool_calls[{j}]"
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ProxyError(400, f"{at}.function: needs a name", param=at)
        args = parse_tool_args(fn.get("arguments"), f"{at}.function.arguments")
        part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": args}}
        sig = ((tc.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
        if tc.get("id"):
            calls[tc["id"]] = fn["name"]
    return parts


def _result_name(msg: dict, calls: dict[str, str], pending: list[str], where: str) -> str:
    """The function a tool result answers: by tool_call_id, else by order within the last assistant turn."""
    name = calls.get(msg.get("tool_call_id")) or msg.get("name")
    if not name and pending:
        name = pending[0]
    if not name:
        raise ProxyError(400, f"{where}.tool_call_id: no earlier assistant tool call with id "
                         f"{msg.get('tool_call_id')!r}", param=f"{where}.tool_call_id")
    if name in pending:
        pending.remove(name)
    return name


def _result_obj(msg: dict, where: str) -> dict:
    """Tool result content -> functionResponse.response (a JSON object; other values wrapped in ``result``)."""
    text = text_of(msg.get("content"), f"{where}.content")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"result": text}


def _tools(hub: dict) -> list[dict]:
    tools = hub.get("tools")
    if tools is None and hub.get("functions"):
        tools = [{"type": "function", "function": f} for f in hub["functions"]]
    if not tools:
        return []
    if not isinstance(tools, list):
        raise ProxyError(400, "tools: must be an array", param="tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ProxyError(400, f"tools[{i}]: only function tools with a name are supported by Gemini",
                             param=f"tools[{i}]")
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if isinstance(fn.get("parameters"), dict):
            decl["parameters"] = clean_schema(fn["parameters"])
        out.append(decl)
    return out


def _tool_config(choice: Any) -> dict | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"mode": _TOOL_MODES[choice]}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type", "function") == "function" else None
        name = name or choice.get("name")  # legacy function_call={"name": ...}
        if isinstance(name, str):
            return {"mode": "ANY", "allowedFunctionNames": [name]}
        if choice.get("type") == "allowed_tools":
            allowed = choice.get("allowed_tools") or {}
            if allowed.get("mode") == "required":
                names = [(t.get("function") or {}).get("name") for t in allowed.get("tools") or []]
                return {"mode": "ANY", "allowedFunctionNames": [n for n in names if n]}
            return {"mode": "AUTO"}  # Gemini cannot restrict names in AUTO mode
    raise ProxyError(400, f"tool_choice: unsupported value {choice!r}", param="tool_choice")


def _generation_config(hub: dict) -> dict:
    cfg: dict[str, Any] = {}
    max_tokens = hub.get("max_completion_tokens", hub.get("max_tokens"))
    for key, value in (
        ("maxOutputTokens", max_tokens), ("temperature", hub.get("temperature")), ("topP", hub.get("top_p")),
        ("topK", hub.get("top_k")), ("seed", hub.get("seed")), ("candidateCount", hub.get("n")),
        ("presencePenalty", hub.get("presence_penalty")), ("frequencyPenalty", hub.get("frequency_penalty")),
    ):
        if value is not None:
            cfg[key] = value
    stop = hub.get("stop")
    if stop:
        cfg["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = hub.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        cfg["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if fmt["type"] == "json_schema" and isinstance(schema, dict):
            cfg["responseJsonSchema"] = schema
    effort = hub.get("reasoning_effort")
    if effort is not None:
        if effort not in _EFFORT_BUDGET:
            raise ProxyError(400, f"reasoning_effort: unsupported value {effort!r} "
                             f"(one of {', '.join(_EFFORT_BUDGET)})", param="reasoning_effort")
        budget = _EFFORT_BUDGET[effort]
        cfg["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True} if budget else {"thinkingBudget": 0}
    return cfg


# ---------------------------------------------------------------------------------------------
# Gemini response / stream -> hub

_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "MODEL_ARMOR",
             "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "IMAGE_OTHER"}


def _finish(reason: str | None, tool_calls: bool) -> str:
    """Gemini finishReason -> hub finish_reason; tool calls in the content win over ``STOP``."""
    if tool_calls:
        return "tool_calls"
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED or (reason or "").startswith("IMAGE_"):
        return "content_filter"
    return "stop"


def _usage(meta_usage: dict) -> dict:
    """usageMetadata -> hub usage (completion = candidates + thoughts; tool-use prompt counted as input)."""
    thoughts = int(meta_usage.get("thoughtsTokenCount") or 0)
    return hub_usage(
        int(meta_usage.get("promptTokenCount") or 0) + int(meta_usage.get("toolUsePromptTokenCount") or 0),
        int(meta_usage.get("candidatesTokenCount") or 0) + thoughts,
        cached=int(meta_usage.get("cachedContentTokenCount") or 0),
        reasoning=thoughts,
    )


def _has_counts(meta_usage: Any) -> bool:
    return isinstance(meta_usage, dict) and any(k.endswith("TokenCount") for k in meta_usage)


def _call_id(meta: Meta, cand: int, k: int) -> str:
    return synth_tool_call_id(meta.id if cand == 0 else f"{meta.id}_{cand}", k)


def _tool_call(meta: Meta, cand: int, k: int, name: str, arguments: str, sig: str | None) -> dict:
    call: dict[str, Any] = {"id": _call_id(meta, cand, k), "type": "function",
                            "function": {"name": name, "arguments": arguments}}
    if sig:
        call["extra_content"] = {"google": {"thought_signature": sig}}
    return call


def _raise_if_error(body: Any) -> None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        raise _error_from_obj(body["error"], 0)


def response_from_upstream(body: dict, meta: Meta) -> dict:
    """GenerateContentResponse -> hub chat.completion (one choice per candidate)."""
    _raise_if_error(body)
    choices = []
    for cand in sorted(body.get("candidates") or [], key=lambda c: c.get("index") or 0):
        idx = cand.get("index") or 0
        text, reasoning, calls = [], [], []
        for part in (cand.get("content") or {}).get("parts") or []:
            fc = part.get("functionCall")
            if isinstance(fc, dict) and fc.get("name"):
                args = dump_args(fc.get("args") or {})
                calls.append(_tool_call(meta, idx, len(calls), fc["name"], args, part.get("thoughtSignature")))
            elif isinstance(part.get("text"), str):
                (reasoning if part.get("thought") else text).append(part["text"])
        content = "".join(text)
        message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else "")}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": idx, "message": message, "finish_reason": _finish(cand.get("finishReason"), bool(calls))})
    if not choices:  # prompt blocked (promptFeedback.blockReason) or an empty answer
        blocked = bool((body.get("promptFeedback") or {}).get("blockReason"))
        choices.append({"index": 0, "message": {"role": "assistant", "content": ""},
                        "finish_reason": "content_filter" if blocked else "stop"})
    return {"id": meta.id, "object": "chat.completion", "created": meta.created, "model": meta.model,
            "choices": choices, "usage": _usage(body.get("usageMetadata") or {})}


def _chunk(meta: Meta, idx: int, delta: dict, finish: str | None = None) -> dict:
    chunk = hub_chunk(meta, delta, finish)
    chunk["choices"][0]["index"] = idx  # candidateCount > 1: one choice per candidate
    return chunk


class FromUpstream:
    """One Gemini SSE (or JSON-array) stream's events -> hub chunks; finish chunks and usage once, at the end.

    Vertex ``functionCall.partialArgs`` streams are assembled: the call's first delta (id, name,
    ``""``) is sent when it opens and the whole arguments JSON as one fragment when it closes
    (an empty ``functionCall`` part, the next named call, or the end of the candidate).
    Gemini has no end event of its own: ``done`` stays False and the stream ends at upstream EOF.
    """

    __slots__ = ("meta", "done", "cands", "usage", "blocked")

    def __init__(self, meta: Meta) -> None:
        self.meta, self.done = meta, False
        self.cands: dict[int, dict] = {}  # candidate index -> {"calls": n, "finish": str|None, "open": partial call}
        self.usage: Any = None
        self.blocked = False

    def event(self, event: Event) -> list[dict]:
        _, data = event
        body = event_json(data, "Gemini")
        _raise_if_error(body)
        if not isinstance(body, dict):
            return []
        meta, cands = self.meta, self.cands
        out: list[dict] = []
        if body.get("usageMetadata"):
            self.usage = body["usageMetadata"]
        if (body.get("promptFeedback") or {}).get("blockReason"):
            self.blocked = True
        if not cands:
            cands[0] = {"calls": 0, "finish": None, "open": None}
            out.append(_chunk(meta, 0, {"role": "assistant", "content": ""}))
        for cand in body.get("candidates") or []:
            idx = cand.get("index") or 0
            if idx not in cands:
                cands[idx] = {"calls": 0, "finish": None, "open": None}
                out.append(_chunk(meta, idx, {"role": "assistant", "content": ""}))
            state = cands[idx]
            for part in (cand.get("content") or {}).get("parts") or []:
                for delta in _part_deltas(part, state, meta, idx):
                    out.append(_chunk(meta, idx, delta))
            if cand.get("finishReason"):
                state["finish"] = cand["finishReason"]
        return out

    def end(self) -> list[dict]:
        meta, cands = self.meta, self.cands
        if not self.blocked and not any(s["finish"] for s in cands.values()):  # (an open partial call is not closed then)
            raise ProxyError(502, "Gemini stream ended without a finishReason (upstream connection cut?)")
        out: list[dict] = []
        for idx in sorted(cands):
            state = cands[idx]
            for delta in _close_partial(state):
                out.append(_chunk(meta, idx, delta))
        for idx in sorted(cands):
            state = cands[idx]
            reason = "content_filter" if self.blocked and not state["finish"] else _finish(state["finish"], state["calls"] > 0)
            out.append(_chunk(meta, idx, {}, reason))
        if _has_counts(self.usage):
            out.append(hub_usage_chunk(meta, _usage(self.usage)))
        return out


def _part_deltas(part: dict, state: dict, meta: Meta, idx: int) -> list[dict]:
    """The hub deltas of one streamed part (empty text / signature-only parts give none)."""
    fc = part.get("functionCall")
    if isinstance(fc, dict):
        return _call_deltas(fc, part.get("thoughtSignature"), state, meta, idx)
    text = part.get("text")
    if isinstance(text, str) and text:
        return [{"reasoning_content": text} if part.get("thought") else {"content": text}]
    return []


def _call_deltas(fc: dict, sig: str | None, state: dict, meta: Meta, idx: int) -> list[dict]:
    out: list[dict] = []
    name, partial = fc.get("name"), fc.get("partialArgs")
    if name or not (partial or fc.get("willContinue")):
        out += _close_partial(state)  # a new call, or an empty functionCall{} terminator
    if name:
        k = state["calls"]
        state["calls"] += 1
        if fc.get("willContinue"):  # Vertex streamed arguments follow
            state["open"] = {"k": k, "args": dict(fc.get("args") or {}), "cont": set()}
            call = _tool_call(meta, idx, k, name, "", sig)
        else:
            call = _tool_call(meta, idx, k, name, dump_args(fc.get("args") or {}), sig)
        out.append({"tool_calls": [{"index": k, **call}]})
    elif partial and state["open"] is not None:
        _apply_partial(state["open"], partial)
        if not fc.get("willContinue"):
            out += _close_partial(state)
    return out


def _close_partial(state: dict) -> list[dict]:
    call, state["open"] = state["open"], None
    if call is None:
        return []
    return [{"tool_calls": [{"index": call["k"], "function": {"arguments": dump_args(call["args"])}}]}]


_PATH_RE = re.compile(r"\.([A-Za-z_$][\w$-]*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]|\[\"((?:[^\"\\]|\\.)*)\"\]")


def _apply_partial(call: dict, partial: list) -> None:
    """Apply Vertex ``partialArgs[{jsonPath, stringValue|numberValue|boolValue|nullValue, willContinue}]``.

    String pieces of one path are concatenated while the previous piece said ``willContinue``.
    Paths that cannot be parsed are ignored.
    """
    for arg in partial:
        if not isinstance(arg, dict) or not isinstance(arg.get("jsonPath"), str):
            continue
        path = arg["jsonPath"]
        keys = _parse_path(path)
        if not keys:
            continue
        if "stringValue" in arg:
            value = str(arg["stringValue"])
            if path in call["cont"]:
                value = str(_get_path(call["args"], keys) or "") + value
        elif "numberValue" in arg:
            value = arg["numberValue"]
        elif "boolValue" in arg:
            value = arg["boolValue"]
        elif "nullValue" in arg:
            value = None
        else:
            continue
        _set_path(call["args"], keys, value)
        (call["cont"].add if arg.get("willContinue") else call["cont"].discard)(path)


def _parse_path(path: str) -> list:
    if not path.startswith("$"):
        return []
    keys: list = []
    pos = 1
    while pos < len(path):
        m = _PATH_RE.match(path, pos)
        if not m:
            return []
        name, num, sq, dq = m.groups()
        keys.append(int(num) if num is not None else name if name is not None else sq if sq is not None else dq)
        pos = m.end()
    return keys


def _get_path(node: Any, keys: list) -> Any:
    for key in keys:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and key < len(node) else None
        else:
            node = node.get(key) if isinstance(node, dict) else None
    return node


def _set_path(node: Any, keys: list, value: Any) -> None:
    for key, nxt in zip(keys, keys[1:] + [None]):
        fresh: Any = value if nxt is None else [] if isinstance(nxt, int) else {}
        if isinstance(key, int):
            if not isinstance(node, list) or key > len(node):
                return
            if key == len(node):
                node.append(fresh)
            elif nxt is None or not isinstance(node[key], (dict, list)):
                node[key] = fresh
            node = node[key]
        else:
            if not isinstance(node, dict):
                return
            if nxt is None or not isinstance(node.get(key), (dict, list)):
                node[key] = fresh
            node = node[key]


# ---------------------------------------------------------------------------------------------
# Errors

_RPC_STATUS = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "UNKNOWN": 500, "INTERNAL": 500, "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}


def error_from_upstream(status: int, body: bytes) -> ProxyError:
    """A Gemini error body (``{"error":{code,message,status,details}}``, maybe wrapped in ``[ ]``) -> ProxyError."""
    data = json_or_none(body)
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    return _error_from_obj(err, status) if isinstance(err, dict) else text_error(status, body, "Gemini")


def _error_from_obj(err: dict, status: int) -> ProxyError:
    rpc = err.get("status") if isinstance(err.get("status"), str) else None
    if status < 400:  # an error inside a 200 stream: trust the body
        code = err.get("code")
        status = code if isinstance(code, int) and code >= 400 else _RPC_STATUS.get(rpc or "", 502)
    retry = reason = None
    for detail in err.get("details") or []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.RetryInfo"):
            m = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(detail.get("retryDelay", "")))
            retry = float(m.group(1)) if m else None
        elif kind.endswith("google.rpc.ErrorInfo") and isinstance(detail.get("reason"), str):
            reason = detail["reason"]
    message = err.get("message") if isinstance(err.get("message"), str) and err.get("message") else (rpc or "Gemini error")
    return ProxyError(status, message, code=reason or rpc, retry_after=retry)


# ---------------------------------------------------------------------------------------------
# Embeddings


def embeddings_to_upstream(hub: dict, model: str) -> tuple[str, dict]:
    """OpenAI embeddings request -> batchEmbedContents (one request per input string)."""
    path = _method_path(model, "batchEmbedContents")
    collection, name = model_resource(model)
    texts = hub.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ProxyError(400, "input: Gemini embeddings need a string or a non-empty array of strings", param="input")
    base: dict[str, Any] = {"model": f"{collection}/{name}"}
    dims = hub.get("dimensions")
    if dims is not None:
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            raise ProxyError(400, "dimensions: must be a positive integer", param="dimensions")
        base["outputDimensionality"] = dims
    return path, {"requests": [{**base, "content": {"parts": [{"text": t}]}} for t in texts]}


def embeddings_from_upstream(body: dict, meta: Meta) -> dict:
    """batchEmbedContents response -> OpenAI embeddings list (floats; Gemini reports no token count)."""
    _raise_if_error(body)
    data = [{"object": "embedding", "index": i, "embedding": (e or {}).get("values") or []}
            for i, e in enumerate(body.get("embeddings") or [])]
    prompt = int((body.get("usageMetadata") or {}).get("promptTokenCount") or 0)
    return {"object": "list", "data": data, "model": meta.model, "usage": hub_usage(prompt, 0)}
