"""The Ollama front door: Ollama client (``/api/chat``, ``/api/generate``) -> hub (OpenAI Chat Completions) -> Ollama answer.

Used by Ollama clients and by ``llmproxy mock``.  Worth knowing:

* Ollama -> hub: ``options`` other than num_predict/temperature/top_p/stop/seed/penalties (``top_k``,
  ``num_ctx``, ``repeat_penalty``…), ``keep_alive``, ``logprobs``, ``raw``/``template``/``context`` are dropped;
  a generate ``suffix`` (fill-in-the-middle) is a 400;
* durations (nanoseconds) in Ollama answers come from an optional hub extension ``"durations_ns":
  {"total_duration", "load_duration", "prompt_eval_duration", "eval_duration"}`` on the hub response or on the
  usage chunk; absent ones are 0.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

import orjson

from ...errors import ProxyError
from ..common import StreamWriter, check_routing, dump_args, parse_tool_args, sniff_image_mime, text_of
from ..meta import Meta

_DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


# =================================================================== Ollama client -> hub (front door)


def _bad(where: str, what: str) -> ProxyError:
    return ProxyError(400, f"{where}: {what}", param=where)


def _opt_type(body: dict, key: str, types: type | tuple, what: str, where: str | None = None) -> Any:
    value = body.get(key)
    if value is not None and (not isinstance(value, types) or isinstance(value, bool) and bool not in _tuple(types)):
        raise _bad(where or key, f"must be {what}")
    return value


def _tuple(types: type | tuple) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def check_chat(body: dict) -> dict:
    """What the Ollama door checks of ``/api/chat`` before routing, whatever the backend (a relay
    sends the rest on as it is): the model, ``stream``, and each message once: an object, its
    ``content`` a string, its ``images`` a list of strings."""
    check_routing(body)
    for i, msg in enumerate(_opt_type(body, "messages", list, "a list of messages") or ()):
        if not isinstance(msg, dict):
            raise _bad(f"messages[{i}]", "must be an object")
        _opt_type(msg, "content", str, "a string", f"messages[{i}].content")
        _check_images(msg.get("images"), f"messages[{i}].images")
    return body


def check_generate(body: dict) -> dict:
    """The same for ``/api/generate``: ``prompt`` and ``system`` strings, ``images`` a list of strings."""
    check_routing(body)
    _opt_type(body, "prompt", str, "a string")
    _opt_type(body, "system", str, "a string")
    _check_images(body.get("images"), "images")
    return body


def _check_images(images: Any, where: str) -> None:
    if images is not None and (not isinstance(images, list) or not all(isinstance(s, str) for s in images)):
        raise _bad(where, "must be a list of base64 strings")


def request_from_client(body: dict) -> dict:
    """Ollama ``/api/chat`` request -> hub request (``stream`` defaults to true, as in Ollama)."""
    messages = _opt_type(body, "messages", list, "a list of messages") or []
    hub_messages: list[dict] = []
    pending: list[tuple[str, str]] = []  # (id, name) of the latest assistant turn's calls not yet answered
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _bad(f"messages[{i}]", "must be an object")
        hub_messages.append(_message_from_client(msg, f"messages[{i}]", i, pending))
    hub = _hub_request(body, hub_messages)
    tools = _opt_type(body, "tools", list, "a list of tools")
    if tools:
        hub["tools"] = tools
    return hub


def request_from_generate(body: dict) -> dict:
    """Ollama ``/api/generate`` request (prompt, system, images) -> hub request."""
    prompt = _opt_type(body, "prompt", str, "a string") or ""
    system = _opt_type(body, "system", str, "a string")
    if _opt_type(body, "suffix", str, "a string"):
        raise _bad("suffix", "fill-in-the-middle cannot be forwarded to this model; drop suffix")
    messages = [{"role": "system", "content": system}] if system else []
    messages.append(_user_from_client(prompt, body.get("images"), "images"))
    return _hub_request(body, messages)


def _hub_request(body: dict, messages: list[dict]) -> dict:
    """The parts shared by chat and generate: model, stream, options, format, think."""
    model = _opt_type(body, "model", str, "a string")
    if not model:
        raise _bad("model", "is required")
    hub: dict[str, Any] = {"model": model, "messages": messages}
    stream = _opt_type(body, "stream", bool, "true or false")
    hub["stream"] = True if stream is None else stream
    if hub["stream"]:
        hub["stream_options"] = {"include_usage": True}
    fmt = body.get("format")
    if fmt == "json":
        hub["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        hub["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    elif fmt not in (None, ""):
        raise _bad("format", 'must be "json" or a JSON schema object')
    hub.update(_options_from_client(_opt_type(body, "options", dict, "an object") or {}))
    think = body.get("think")
    if think is True:
        hub["reasoning_effort"] = "medium"
    elif think is False:
        hub["reasoning_effort"] = "none"
    elif think in ("low", "medium", "high"):
        hub["reasoning_effort"] = think
    elif think == "max":
        hub["reasoning_effort"] = "high"
    elif think is not None:
        raise _bad("think", 'must be true, false, "low", "medium" or "high"')
    return hub


def _options_from_client(options: dict) -> dict:
    out: dict[str, Any] = {}
    num = _opt_type(options, "num_predict", int, "an integer", "options.num_predict")
    if num is not None and num > 0:  # -1 (infinite) and -2 (fill context) mean "no limit"
        out["max_tokens"] = num
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = _opt_type(options, key, (int, float), "a number", f"options.{key}")
        if value is not None:
            out[key] = value
    seed = _opt_type(options, "seed", int, "an integer", "options.seed")
    if seed is not None:
        out["seed"] = seed
    stop = options.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _bad("options.stop", "must be a list of strings")
        if stop:
            out["stop"] = stop
    return out


def _message_from_client(msg: dict, where: str, i: int, pending: list[tuple[str, str]]) -> dict:
    role = msg.get("role")
    content = _opt_type(msg, "content", str, "a string", f"{where}.content") or ""
    if role == "system":
        return {"role": "system", "content": content}
    if role == "user":
        return _user_from_client(content, msg.get("images"), f"{where}.images")
    if role == "assistant":
        return _assistant_from_client(msg, content, where, i, pending)
    if role == "tool":
        call_id = _opt_type(msg, "tool_call_id", str, "a string", f"{where}.tool_call_id")
        name = _opt_type(msg, "tool_name", str, "a string", f"{where}.tool_name")
        return {"role": "tool", "tool_call_id": _answered_call(pending, call_id, name, i), "content": content}
    raise _bad(f"{where}.role", 'must be "system", "user", "assistant" or "tool"')


def _answered_call(pending: list[tuple[str, str]], call_id: str | None, name: str | None, i: int) -> str:
    """The id of the call a tool message answers: its own id, else the first open call by name, else by order."""
    if call_id:
        match = next((p for p in pending if p[0] == call_id), None)
    else:
        match = next((p for p in pending if p[1] == name), None) or (pending[0] if pending else None)
    if match:
        pending.remove(match)
    return call_id or (match[0] if match else f"call_{i}")


def _user_from_client(content: str, images: Any, where: str) -> dict:
    if not images:
        return {"role": "user", "content": content}
    _check_images(images, where)
    parts: list[dict] = [{"type": "text", "text": content}] if content else []
    for b64 in images:
        parts.append({"type": "image_url", "image_url": {"url": f"data:{sniff_image_mime(b64)};base64,{b64}"}})
    return {"role": "user", "content": parts}


def _assistant_from_client(msg: dict, content: str, where: str, i: int, pending: list[tuple[str, str]]) -> dict:
    calls = _opt_type(msg, "tool_calls", list, "a list", f"{where}.tool_calls") or []
    out: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
    thinking = _opt_type(msg, "thinking", str, "a string", f"{where}.thinking")
    if thinking:
        out["reasoning_content"] = thinking
    pending.clear()
    hub_calls = []
    for k, tc in enumerate(calls):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"{where}.tool_calls[{k}].function", "must be an object with a name")
        args = fn.get("arguments")
        if args is not None and not isinstance(args, dict):
            raise _bad(f"{where}.tool_calls[{k}].function.arguments", "must be an object")
        call_id = tc.get("id") if isinstance(tc.get("id"), str) and tc.get("id") else f"call_{i}_{k}"
        pending.append((call_id, fn["name"]))
        hub_calls.append({"id": call_id, "type": "function", "function": {"name": fn["name"], "arguments": dump_args(args)}})
    if hub_calls:
        out["tool_calls"] = hub_calls
    return out


# =================================================================== hub -> Ollama client (front door answers)


def _created_at(meta: Meta) -> str:
    return datetime.fromtimestamp(meta.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _done_reason(finish: str | None) -> str:
    return "length" if finish == "length" else "stop"


def _final_fields(finish: str | None, usage: dict | None, durations: dict | None) -> dict:
    usage = usage or {}
    durations = durations or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "done": True,
        "done_reason": _done_reason(finish),
        "total_duration": int(durations.get("total_duration") or 0),
        "load_duration": int(durations.get("load_duration") or 0),
        "prompt_eval_count": prompt,
        "prompt_eval_duration": int(durations.get("prompt_eval_duration") or 0),
        "eval_count": completion,
        "eval_duration": int(durations.get("eval_duration") or 0),
    }


def _chat_part(content: str, thinking: str, calls: list[dict]) -> dict:
    """The ``message`` body of a chat object."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    return {"message": message}


def _generate_part(content: str, thinking: str, calls: list[dict]) -> dict:
    """The ``response`` body of a generate object (generate has no tool calls: they are dropped)."""
    part: dict[str, Any] = {"response": content}
    if thinking:
        part["thinking"] = thinking
    return part


def _client_tool_call(call_id: str | None, k: int, name: str, arguments: Any) -> dict:
    out: dict[str, Any] = {"id": call_id} if call_id else {}
    out["function"] = {"index": k, "name": name, "arguments": arguments}
    return out


def _encode_response(hub: dict, meta: Meta, part: Callable[[str, str, list[dict]], dict]) -> dict:
    choice = (hub.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    calls = [
        _client_tool_call(
            tc.get("id"), k, (tc.get("function") or {}).get("name", ""),
            _args_object((tc.get("function") or {}).get("arguments")),
        )
        for k, tc in enumerate(msg.get("tool_calls") or [])
    ]
    content = msg.get("content")
    text = content if isinstance(content, str) else text_of(content, "content", "")
    out = {"model": meta.model, "created_at": _created_at(meta)}
    out.update(part(text, msg.get("reasoning_content") or "", calls))
    out.update(_final_fields(choice.get("finish_reason"), hub.get("usage"), hub.get("durations_ns")))
    return out


def _args_object(arguments: Any) -> dict:
    try:
        return parse_tool_args(arguments, "tool_calls.function.arguments")
    except ProxyError as e:
        raise ProxyError(502, f"the backend sent tool call arguments that are not a JSON object ({e.message})") from None


def response_to_client(hub: dict, meta: Meta) -> dict:
    """Hub ``chat.completion`` -> Ollama ``/api/chat`` final object."""
    return _encode_response(hub, meta, _chat_part)


def response_to_generate(hub: dict, meta: Meta) -> dict:
    """Hub ``chat.completion`` -> Ollama ``/api/generate`` final object."""
    return _encode_response(hub, meta, _generate_part)


def _line(obj: dict) -> bytes:
    return orjson.dumps(obj) + b"\n"


class ToClient(StreamWriter):
    """Hub chunks -> Ollama ``/api/chat`` NDJSON lines; tool calls are buffered per index and sent whole at the
    finish chunk; the done:true line comes after the hub stream ends.  ``part`` shapes each line's body."""

    __slots__ = ("head", "calls", "finish", "usage", "durations")
    part = staticmethod(_chat_part)

    def __init__(self, meta: Meta) -> None:
        self.head = {"model": meta.model, "created_at": _created_at(meta)}
        self.calls: dict[int, dict] = {}  # index -> {"id", "name", "args"}
        self.finish: str | None = None
        self.usage: dict | None = None
        self.durations: dict | None = None

    def chunk(self, chunk: dict) -> bytes:
        part, head, calls = self.part, self.head, self.calls
        out = []
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        self.durations = chunk.get("durations_ns") or self.durations
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            content, thinking = delta.get("content") or "", delta.get("reasoning_content") or ""
            if content or thinking:
                out.append(_line({**head, **part(content, thinking, []), "done": False}))
            for frag in delta.get("tool_calls") or []:
                _buffer_call(calls, frag)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                if calls:
                    out.append(self._calls_line())
        return out[0] if len(out) == 1 else b"".join(out)

    def end(self) -> bytes:
        out = [self._calls_line()] if self.calls else []
        out.append(_line({**self.head, **self.part("", "", []), **_final_fields(self.finish, self.usage, self.durations)}))
        return b"".join(out)

    def _calls_line(self) -> bytes:
        """The buffered tool calls, whole, in one line (and the buffer emptied)."""
        return _line({**self.head, **self.part("", "", _flush_calls(self.calls)), "done": False})


class ToGenerate(ToClient):
    """Hub chunks -> Ollama ``/api/generate`` NDJSON lines (the same, each line's body a ``response``)."""

    __slots__ = ()
    part = staticmethod(_generate_part)


def _buffer_call(calls: dict[int, dict], frag: dict) -> None:
    k = frag.get("index", len(calls))
    call = calls.setdefault(k, {"id": None, "name": "", "args": ""})
    if frag.get("id"):
        call["id"] = frag["id"]
    fn = frag.get("function") or {}
    if fn.get("name"):
        call["name"] = fn["name"]
    if fn.get("arguments"):
        call["args"] += fn["arguments"] if isinstance(fn["arguments"], str) else dump_args(fn["arguments"])


def _flush_calls(calls: dict[int, dict]) -> list[dict]:
    out = [_client_tool_call(c["id"], k, c["name"], _args_object(c["args"])) for k, c in sorted(calls.items())]
    calls.clear()
    return out


def error_body(err: ProxyError) -> bytes:
    """Ollama error body ``{"error": "<message>"}``."""
    return orjson.dumps({"error": err.message})


def stream_error(err: ProxyError) -> bytes:
    """The same error as a final NDJSON line."""
    return orjson.dumps({"error": err.message}) + b"\n"
