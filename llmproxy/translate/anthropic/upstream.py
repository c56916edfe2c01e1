"""Anthropic backends: hub (OpenAI Chat Completions) request -> Anthropic Messages, Anthropic answer -> hub.

- every ``system``/``developer`` message, wherever it stands, becomes top-level ``system``: a string
  for one plain text, else a list of text blocks (one per part, ``cache_control`` kept);
- ``role:"tool"`` results become ``tool_result`` blocks at the head of the next user turn;
  consecutive same-role turns are merged; a trailing assistant turn is a prefill and loses its
  trailing whitespace (the API rejects it);
- ``max_tokens`` is required: ``max_completion_tokens`` / ``max_tokens``, else ``DEFAULT_MAX_TOKENS``;
- ``reasoning_effort`` -> ``thinking.budget_tokens`` from ``THINKING_BUDGET`` (kept below
  ``max_tokens``; with no client limit, ``max_tokens`` grows by the budget). With thinking on,
  ``temperature`` and ``top_p`` are dropped: the API rejects anything but their defaults then;
- ``temperature`` is clamped to 0..1; ``stop`` -> ``stop_sequences``; ``user`` -> ``metadata.user_id``;
- ``response_format`` json_schema -> ``output_config.format``; json_object has no Anthropic
  equivalent and becomes ``JSON_OBJECT_INSTRUCTION`` appended to ``system``;
- dropped (no Anthropic equivalent): ``seed``, ``frequency_penalty``, ``presence_penalty``,
  ``logit_bias``, ``logprobs``, ``top_logprobs``, ``stream_options``, ``store``, ``metadata``,
  ``service_tier``, ``prediction``, ``modalities``, ``audio``, a message's ``name``, a tool's
  ``strict``, a tool call's ``extra_content``; ``n`` > 1 is a 400.
- stop reasons: ``end_turn``/``stop_sequence``/``pause_turn`` -> ``stop`` (pause_turn: a server
  tool paused the turn; the client sees what was produced so far), ``max_tokens`` and
  ``model_context_window_exceeded`` -> ``length``, ``refusal`` -> ``content_filter``, any tool
  call -> ``tool_calls``. Unknown blocks (server tools, ``compaction``), ``citations`` and
  ``stop_sequence`` are dropped.
- usage: ``input_tokens`` excludes the cache, so prompt = input + cache read + cache write. When
  ``usage.iterations`` is present (compaction runs an extra sampling step) the top-level counts
  cover only the last step, so the billed total is the sum over the iterations.
"""
from __future__ import annotations

import re
from typing import Any

from ...errors import ProxyError
from ...sse import Event
from ...usage import Usage, hub_usage
from ..common import (
    Tap,
    dump_args,
    event_json,
    frame_json,
    hub_chunk,
    hub_completion,
    hub_usage_chunk,
    json_or_none,
    offsets,
    parse_tool_args,
    split_data_url,
    sse_garbage,
    text_error,
)
from ..meta import Meta
from .shared import ERROR_STATUS, _bad, _tool_id

STREAM_DECODER = "sse"
PATH = "/v1/messages"

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when the hub request names none (Anthropic requires one)."""

THINKING_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
"""``reasoning_effort`` -> ``thinking.budget_tokens``; 1024 is Anthropic's minimum budget."""
MIN_THINKING_BUDGET = 1024

JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object only, with no text before or after it."

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


# ======================================================================= hub request -> Anthropic


def request_to_upstream(hub: dict, model: str, stream: bool) -> tuple[str, dict]:
    """Hub (OpenAI chat) request -> ``("/v1/messages", Anthropic body)``."""
    messages = hub.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list")
    if hub.get("n") not in (None, 1):
        raise _bad("n", "Anthropic returns one choice; n must be 1")
    system, turns = _turns(messages)
    if not turns:
        raise _bad("messages", "needs at least one user or assistant message besides system messages")
    body: dict[str, Any] = {"model": model}
    limit = hub.get("max_completion_tokens") or hub.get("max_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise _bad("max_tokens", "must be a positive integer")
    thinking = _thinking(hub.get("reasoning_effort"), limit)
    body["max_tokens"] = limit or DEFAULT_MAX_TOKENS + (thinking["budget_tokens"] if thinking else 0)
    fmt = hub.get("response_format") or {}
    if not isinstance(fmt, dict):
        raise _bad("response_format", "must be an object")
    if fmt.get("type") == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    if system:
        plain = len(system) == 1 and system[0].keys() == {"type", "text"}
        body["system"] = system[0]["text"] if plain else system
    body["messages"] = [{"role": role, "content": _compact(blocks)} for role, blocks in turns]
    if thinking:
        body["thinking"] = thinking
    else:
        _sampling(hub, body)
    stop = hub.get("stop")
    if stop:
        body["stop_sequences"] = _stop_sequences(stop)
    _tools(hub, body)
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema", "must be a JSON Schema object")
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if isinstance(hub.get("user"), str) and hub["user"]:
        body["metadata"] = {"user_id": hub["user"]}
    if stream:
        body["stream"] = True
    return PATH, body


def _turns(messages: list) -> tuple[list[dict], list[tuple[str, list[dict]]]]:
    """OpenAI messages -> (system blocks, [(role, blocks)]) with same-role runs merged."""
    system: list[dict] = []
    turns: list[tuple[str, list[dict]]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(where, "must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(m.get("content"), f"{where}.content"))
            continue
        if role == "user":
            role, blocks = "user", _user_blocks(m.get("content"), f"{where}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(m, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(m, where)]
        else:
            raise _bad(f"{where}.role", f"{role!r} is not one of system, developer, user, assistant, tool")
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    for role, blocks in turns:
        if role == "user":  # tool results must open the user turn that answers the tool calls
            blocks.sort(key=lambda b: b["type"] != "tool_result")
    if turns and turns[-1][0] == "assistant":
        _trim_prefill(turns)
    return system, turns


def _trim_prefill(turns: list[tuple[str, list[dict]]]) -> None:
    """A final assistant turn is a prefill, which must not end in whitespace."""
    blocks = turns[-1][1]
    last = blocks[-1]
    if last["type"] == "text":
        last["text"] = last["text"].rstrip()
        if not last["text"]:
            blocks.pop()
    if not blocks:
        turns.pop()


def _compact(blocks: list[dict]) -> str | list[dict]:
    """One plain text block -> a string (the common short form); anything else stays blocks."""
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
        return blocks[0]["text"]
    return blocks


def _text_block(part: dict) -> dict:
    block = {"type": "text", "text": str(part.get("text") or "")}
    if "cache_control" in part:  # OpenRouter/LiteLLM-style hint, meaningful to Anthropic
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, where: str) -> list[dict]:
    """System content (string or text parts) -> non-empty text blocks."""
    return _user_blocks(content, where, text_only=True)


def _user_blocks(content: Any, where: str, text_only: bool = False) -> list[dict]:
    """User (or tool) content -> text/image/document blocks; empty texts are dropped."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(where, "must be a string or a list of content parts")
    out = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                out.append(_text_block(part))
        elif text_only:
            raise _bad(f"{where}[{j}]", "only text parts are allowed here")
        elif kind == "image_url":
            out.append(_image_block(part.get("image_url"), f"{where}[{j}].image_url"))
        elif kind == "file":
            out.append(_document_block(part.get("file"), f"{where}[{j}].file"))
        else:
            raise _bad(f"{where}[{j}]", f"content part type {kind!r} cannot be sent to Anthropic")
    return out


def _image_block(image: Any, where: str) -> dict:
    """OpenAI ``image_url`` -> Anthropic image: data URL -> base64 source, http(s) URL -> url source."""
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise _bad(where, "needs a url")
    data = split_data_url(url)
    if data:
        return {"type": "image", "source": {"type": "base64", "media_type": data[0], "data": data[1]}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(where, "url must be a base64 data URL or an http(s) URL")


def _document_block(file: Any, where: str) -> dict:
    """OpenAI ``file`` part with a base64 PDF data URL -> Anthropic document block."""
    data = split_data_url(file.get("file_data") or "") if isinstance(file, dict) else None
    if not data or data[0] != "application/pdf":
        raise _bad(where, "only inline PDF files (file_data data URL) can be sent to Anthropic")
    return {"type": "document", "source": {"type": "base64", "media_type": data[0], "data": data[1]}}


def _assistant_blocks(m: dict, where: str) -> list[dict]:
    """Assistant message -> thinking blocks (unchanged, first), text, then tool_use blocks."""
    out = [dict(b) for b in m.get("thinking_blocks") or () if isinstance(b, dict)
           and b.get("type") in ("thinking", "redacted_thinking")]
    content = m.get("content")
    if isinstance(content, str):
        if content:
            out.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                raise _bad(f"{where}.content[{j}]", "only text parts are allowed in an assistant message")
            text = part.get("text") or part.get("refusal")
            if text:
                out.append(_text_block({**part, "text": text}))
    elif content is not None:
        raise _bad(f"{where}.content", "must be a string, a list of text parts or null")
    for k, call in enumerate(m.get("tool_calls") or ()):
        at = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(at, "needs function.name")
        args = parse_tool_args(fn.get("arguments"), f"{at}.function.arguments")
        out.append({"type": "tool_use", "id": _tool_id(call.get("id"), "", k), "name": fn["name"], "input": args})
    return out


def _tool_result(m: dict, where: str) -> dict:
    """``role:"tool"`` message -> ``tool_result`` block (string content, or text/image blocks)."""
    call_id = m.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_call_id", "is required for a tool message")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(call_id, "", 0)}
    content = m.get("content")
    if isinstance(content, list):
        content = _compact(blocks) if (blocks := _user_blocks(content, f"{where}.content")) else ""
    if content:
        block["content"] = content
    return block


def _thinking(effort: Any, limit: int | None) -> dict | None:
    """``reasoning_effort`` -> Anthropic ``thinking`` (None: thinking off)."""
    if effort in (None, "none"):
        return None
    if effort not in THINKING_BUDGET:
        raise _bad("reasoning_effort", f"must be one of none, {', '.join(THINKING_BUDGET)}")
    budget = THINKING_BUDGET[effort]
    if limit is not None:
        budget = min(budget, limit - 1)  # Anthropic: budget_tokens < max_tokens
        if budget < MIN_THINKING_BUDGET:
            raise _bad("max_tokens", f"must be above {MIN_THINKING_BUDGET} for reasoning_effort on Anthropic")
    return {"type": "enabled", "budget_tokens": budget}


def _sampling(hub: dict, body: dict) -> None:
    temperature = hub.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        body["temperature"] = min(max(float(temperature), 0.0), 1.0)  # OpenAI allows 0..2
    if isinstance(hub.get("top_p"), (int, float)):
        body["top_p"] = hub["top_p"]


def _stop_sequences(stop: Any) -> list[str]:
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("stop", "must be a string or a list of strings")
    return [s for s in stops if s]


def _tools(hub: dict, body: dict) -> None:
    """``tools`` / ``tool_choice`` / ``parallel_tool_calls`` -> Anthropic ``tools`` / ``tool_choice``."""
    tools = hub.get("tools")
    if not tools:
        return
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"tools[{i}]", "only function tools with a name can be sent to Anthropic")
        entry = {"name": fn["name"]}
        if fn.get("description"):
            entry["description"] = fn["description"]
        entry["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        out.append(entry)
    body["tools"] = out
    choice = hub.get("tool_choice")
    if choice in (None, "auto"):
        tc: dict[str, Any] = {"type": "auto"}
    elif choice == "none":
        body["tool_choice"] = {"type": "none"}
        return
    elif choice == "required":
        tc = {"type": "any"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        tc = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad("tool_choice", "must be auto, none, required or {type: function, function: {name}}")
    if hub.get("parallel_tool_calls") is False:
        tc["disable_parallel_tool_use"] = True
    if choice is not None or len(tc) > 1:
        body["tool_choice"] = tc


# ======================================================================= Anthropic answer -> hub


def usage_counts(usage: Any) -> dict[str, int]:
    """The integer counts present in an Anthropic usage object (summed over ``iterations`` if given)."""
    if not isinstance(usage, dict):
        return {}
    steps = usage.get("iterations")
    if isinstance(steps, list) and steps:
        return {k: sum(s.get(k) or 0 for s in steps if isinstance(s, dict)) for k in _USAGE_KEYS}
    return {k: v for k in _USAGE_KEYS if isinstance(v := usage.get(k), int)}


def counts_usage(counts: dict[str, int]) -> Usage:
    """The usage of Anthropic counts (its ``input_tokens`` excludes cache reads and writes)."""
    read = counts.get("cache_read_input_tokens", 0)
    write = counts.get("cache_creation_input_tokens", 0)
    return Usage(counts.get("input_tokens", 0) + read + write, counts.get("output_tokens", 0), read, write)


def counts_to_hub_usage(counts: dict[str, int]) -> dict:
    """Hub usage from Anthropic counts."""
    u = counts_usage(counts)
    return hub_usage(u.prompt, u.completion, cached=u.cached, cache_write=u.cache_write)


def usage_of_answer(body: Any) -> dict | None:
    """The hub usage of a whole Anthropic answer (a message, or a count_tokens result); None when it has none."""
    usage = body.get("usage") if isinstance(body, dict) else None
    return counts_to_hub_usage(usage_counts(usage)) if isinstance(usage, dict) else None


# A run of events of the shape relay_tap passes on a byte check (an ``event:`` line and one ``data:`` line of a JSON
# object each); the relay checks a whole run at once and hands relay_tap only the events relay_marks points into.
RELAY_SHAPE = re.compile(rb"(?:event: [a-z_]+\ndata: \{[^\n]*\}\n\n)+").fullmatch


def relay_marks(run: bytes) -> list[int]:
    """Where in a run of ``RELAY_SHAPE`` relay_tap has something to read: the usage of ``message_start`` and
    ``message_delta``, and an error (the same byte checks as relay_tap's)."""
    marks = offsets(run, b"error")
    for i in offsets(run, b"message_"):  # (one scan for both names; message_stop has nothing to read)
        if run[i + 8:i + 13] in (b"start", b"delta"):
            marks.append(i)
    return marks


def relay_tap(frame: Any, seen: dict) -> Tap | None:
    """Usage from ``message_start`` and ``message_delta`` (cumulative counts, kept in ``seen``), ``event: error``,
    and garbage: an event that is not ``event: …}\\n\\n`` (or ``data: {…}\\n\\n``) in UTF-8 (byte checks) is parsed, and one whose data is not JSON ends the relay."""
    bad = sse_garbage(frame)
    if bad is not None:
        return bad
    raw = frame.raw
    if b"message_start" in raw or b"message_delta" in raw:
        data = frame_json(frame)
        if not isinstance(data, dict):
            return None
        kind = frame.name or data.get("type")
        if kind == "message_start":
            seen.update(usage_counts((data.get("message") or {}).get("usage")))
        elif kind == "message_delta":
            seen.update(usage_counts(data.get("usage")))
        else:
            return None
        return Tap(usage=counts_usage(seen)) if seen else None
    if b"error" in raw and (frame.name == "error" or b'"type":"error"' in raw or b'"type": "error"' in raw):
        return Tap(error=error_from_upstream(200, frame.data or b""))
    return None


def response_from_upstream(body: dict, meta: Meta) -> dict:
    """Anthropic ``message`` -> hub ``chat.completion``."""
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict] = []
    calls: list[dict] = []
    for block in body.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            fn = {"name": block.get("name") or "", "arguments": dump_args(block.get("input"))}
            calls.append({"id": _tool_id(block.get("id"), meta.id, len(calls)), "type": "function", "function": fn})
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            thinking_blocks.append({"type": "thinking", "thinking": reasoning[-1], "signature": block.get("signature") or ""})
        elif kind == "redacted_thinking":
            thinking_blocks.append({"type": "redacted_thinking", "data": block.get("data")})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else STOP_REASONS.get(body.get("stop_reason"), "stop")
    return hub_completion(meta, message, finish, counts_to_hub_usage(usage_counts(body.get("usage"))))


class FromUpstream:
    """One Anthropic stream's events -> hub chunks; ``event: error`` raises, and so does an end before ``message_stop``."""

    __slots__ = ("meta", "done", "blocks", "counts", "stop_reason", "tools")

    def __init__(self, meta: Meta) -> None:
        self.meta, self.done = meta, False
        self.blocks: dict[int, dict] = {}  # Anthropic block index -> what we keep of the open block
        self.counts: dict[str, int] = {}
        self.stop_reason: str | None = None
        self.tools = 0

    def event(self, event: Event) -> list[dict]:
        name, data = event
        data = event_json(data, "Anthropic")
        if not isinstance(data, dict):
            return []
        meta = self.meta
        kind = name or data.get("type")  # the `event:` line is the dispatch key, as in Anthropic's SDK
        if kind == "content_block_delta":  # (most events: looked at first; most of them text)
            delta = data.get("delta")
            if not isinstance(delta, dict):
                return []
            if delta.get("type") == "text_delta":
                text = delta.get("text")
                return [hub_chunk(meta, {"content": text})] if text else []
            delta = _block_delta(self.blocks.get(data.get("index", 0)), delta)
            return [hub_chunk(meta, delta)] if delta else []
        if kind == "error":
            raise _error(200, data)
        if kind == "message_start":
            self.counts.update(usage_counts((data.get("message") or {}).get("usage")))
            return [hub_chunk(meta, {"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            out = []
            block = data.get("content_block")
            block = block if isinstance(block, dict) else {}
            state = {"type": block.get("type"), "text": [], "signature": "", "args": False, "block": block}
            self.blocks[data.get("index", 0)] = state
            if state["type"] == "tool_use":
                state["k"], self.tools = self.tools, self.tools + 1
                call = {"index": state["k"], "id": _tool_id(block.get("id"), meta.id, state["k"]), "type": "function",
                        "function": {"name": block.get("name") or "", "arguments": ""}}
                out.append(hub_chunk(meta, {"tool_calls": [call]}))
            return out + [hub_chunk(meta, delta) for delta in _start_text(state, block)]
        if kind == "content_block_stop":
            delta = _block_stop(self.blocks.pop(data.get("index", 0), None))
            return [hub_chunk(meta, delta)] if delta else []
        if kind == "message_delta":
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
            self.counts.update(usage_counts(data.get("usage")))
        elif kind == "message_stop":
            self.done = True
            finish = "tool_calls" if self.tools else STOP_REASONS.get(self.stop_reason, "stop")
            out = [hub_chunk(meta, {}, finish)]
            if self.counts:
                out.append(hub_usage_chunk(meta, counts_to_hub_usage(self.counts)))
            return out
        return []  # ping and event types added later: nothing to do

    def end(self) -> list[dict]:
        if not self.done:
            raise ProxyError(502, "Anthropic stream ended before message_stop")
        return []


def _start_text(state: dict, block: dict) -> list[dict]:
    """Text already present in a content_block_start (normally empty)."""
    if state["type"] == "text" and block.get("text"):
        return [{"content": block["text"]}]
    if state["type"] == "thinking" and block.get("thinking"):
        state["text"].append(block["thinking"])
        return [{"reasoning_content": block["thinking"]}]
    return []


def _block_delta(state: dict | None, delta: dict) -> dict | None:
    """One content_block_delta of a tool or thinking block (text is read in ``event``) -> a hub delta (or None for empty/unknown deltas)."""
    kind = delta.get("type")
    if state is None:
        return None
    if kind == "input_json_delta" and state["type"] == "tool_use" and delta.get("partial_json"):
        state["args"] = True
        return {"tool_calls": [{"index": state["k"], "function": {"arguments": delta["partial_json"]}}]}
    if kind == "thinking_delta" and state["type"] == "thinking" and delta.get("thinking"):
        state["text"].append(delta["thinking"])
        return {"reasoning_content": delta["thinking"]}
    if kind == "signature_delta" and state["type"] == "thinking":
        state["signature"] += delta.get("signature") or ""
    return None


def _block_stop(state: dict | None) -> dict | None:
    """A closing block: a tool without input gets ``{}``; thinking gets its signature block."""
    if state is None:
        return None
    if state["type"] == "tool_use" and not state["args"]:
        return {"tool_calls": [{"index": state["k"], "function": {"arguments": "{}"}}]}
    if state["type"] == "thinking":
        block = {"type": "thinking", "thinking": "".join(state["text"]), "signature": state["signature"]}
        return {"thinking_blocks": [block]}
    if state["type"] == "redacted_thinking":
        return {"thinking_blocks": [{"type": "redacted_thinking", "data": state["block"].get("data")}]}
    return None


def _error(status: int, payload: Any) -> ProxyError:
    """Anthropic ``{"type":"error","error":{type,message}}`` -> ProxyError; a generic status
    (no HTTP error status, as in a stream, or a bare 500) is replaced by the one the type implies."""
    err = payload.get("error") if isinstance(payload, dict) else None
    err = err if isinstance(err, dict) else {}
    kind = err.get("type")
    if status < 400 or status == 500:
        status = ERROR_STATUS.get(kind, status if status >= 400 else 502)
    message = err.get("message") if isinstance(err.get("message"), str) else None
    return ProxyError(status, message or f"Anthropic {kind or 'error'} (HTTP {status})")


def error_from_upstream(status: int, body: bytes) -> ProxyError:
    """Anthropic error body -> ProxyError with Anthropic's message; non-JSON bodies keep their text."""
    payload = json_or_none(body)
    return text_error(status, body, "Anthropic") if payload is None else _error(status, payload)
