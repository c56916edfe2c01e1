"""OpenAI Chat Completions: the hub format itself, so this module mostly validates and frames.

Same-format traffic (OpenAI client → OpenAI-compatible backend) never comes through here: it is
relayed byte for byte by ``llmproxy.relay``.  This module serves the other pairings.
"""
from __future__ import annotations

import re
from typing import Any

import orjson

from ..errors import ProxyError, bad_request
from ..sse import Event
from ..usage import Usage
from .common import FieldTypes, StreamWriter, Tap, check_types, frame_json, garbage, is_utf8, json_or_none, json_type, offsets, require_model, text_error
from .meta import Meta

STREAM_DECODER = "sse"
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
DONE = b"data: [DONE]\n\n"

# field → (accepted types, name used in the message)
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "stream": ((bool,), "a boolean"),
    "stream_options": ((dict,), "an object"),
    "tools": ((list,), "an array"),
    "max_tokens": ((int,), "an integer"),
    "max_completion_tokens": ((int,), "an integer"),
    "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number"),
    "n": ((int,), "an integer"),
    "stop": ((str, list), "a string or an array of strings"),
}


def check_fields(body: dict) -> None:
    """400 naming the first OpenAI field whose JSON type is wrong."""
    check_types(body, _TYPES)


# a message's optional fields → (accepted types, name used in the message); content is checked apart
_MESSAGE_TYPES: FieldTypes = {
    "name": ((str,), "a string"),
    "tool_calls": ((list,), "an array"),
    "tool_call_id": ((str,), "a string"),
}


def request_from_client(body: dict) -> dict:
    """Validate an OpenAI chat request; the hub request is the body itself.

    Each message once (role, content, name, tool_calls, tool_call_id) and each content part's
    ``type``: what a backend would choke on, without walking deeper.
    """
    require_model(body)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise bad_request("'messages' must be a non-empty array of messages", param="messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise bad_request(f"'messages[{i}]' must be an object, got {json_type(m)}", param=f"messages[{i}]")
        if m.get("role") not in ROLES:
            raise bad_request(
                f"'messages[{i}].role' must be one of {', '.join(sorted(ROLES))}, got {m.get('role')!r}",
                param=f"messages[{i}].role",
            )
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            _check_parts(content, i)
        if len(m) > 2:  # (role and content alone: nothing more to check)
            name, calls, call_id = m.get("name"), m.get("tool_calls"), m.get("tool_call_id")
            if not ((name is None or isinstance(name, str)) and (calls is None or isinstance(calls, list))
                    and (call_id is None or isinstance(call_id, str))):
                check_types(m, _MESSAGE_TYPES, f"messages[{i}].")  # names the field
    check_fields(body)
    return body


def _check_parts(content: Any, i: int) -> None:
    """400 unless ``content`` (of message ``i``) is an array of content parts: objects with a string ``type``."""
    where = f"messages[{i}].content"
    if not isinstance(content, list):
        raise bad_request(f"'{where}' must be a string, null or an array of content parts, got {json_type(content)}", param=where)
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            got = json_type(part) if not isinstance(part, dict) else "an object without a string 'type'"
            raise bad_request(f"'{where}[{j}]' must be a content part (an object with a string 'type'), got {got}", param=f"{where}[{j}]")


def wants_usage(body: dict) -> bool:
    """Whether the client asked for the final usage chunk of a stream."""
    so = body.get("stream_options")
    return bool(isinstance(so, dict) and so.get("include_usage"))


# ------------------------------------------------------------------ backend direction


def request_to_upstream(hub: dict, model: str, stream: bool) -> tuple[str, dict]:
    body = dict(hub)
    body["model"] = model
    body["stream"] = stream
    if stream:
        body["stream_options"] = {**(hub.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream_options", None)
    return "/chat/completions", body


def response_from_upstream(body: dict, meta: Meta) -> dict:
    return body


class FromUpstream:
    """One stream's chunks: already the hub's; ``[DONE]`` ends it, an in-band ``{"error": …}`` raises."""

    __slots__ = ("meta", "done")

    def __init__(self, meta: Meta) -> None:
        self.meta, self.done = meta, False

    def event(self, event: Event) -> list[dict]:
        _, data = event
        if data == b"[DONE]":
            self.done = True
            return []
        chunk = orjson.loads(data)
        if "error" in chunk and "choices" not in chunk:
            raise error_from_body(502, chunk)
        return [chunk]

    def end(self) -> list[dict]:
        return []  # (a backend that closes without [DONE] has still said all it had)


def usage_of_answer(body: Any) -> dict | None:
    """The hub usage of a whole answer (chat, completions, embeddings); None when it has none."""
    usage = body.get("usage") if isinstance(body, dict) else None
    return usage if isinstance(usage, dict) else None


# A run of events of the shape relay_tap passes on a byte check (one ``data:`` line each, a JSON object or [DONE]);
# the relay checks a whole run at once and hands relay_tap only the events relay_marks points into.
RELAY_SHAPE = re.compile(rb"(?:data: (?:\{[^\n]*\}|\[DONE\])\n\n)+").fullmatch


def relay_marks(run: bytes) -> list[int]:
    """Where in a run of ``RELAY_SHAPE`` relay_tap has something to read: usage (not ``"usage":null``, which every
    chunk of a stream with usage carries) and ``"error"``."""
    marks = offsets(run, b'"error"')
    for i in offsets(run, b'"usage"'):  # (two scans of the run in all: each costs about as much as the rest of the check)
        if run[i + 7:i + 12] != b":null" and run[i + 7:i + 13] != b": null":
            marks.append(i)
    return marks


def relay_tap(frame: Any, seen: dict) -> Tap | None:
    """The usage chunk (``choices: []``, or usage beside the last choice), an in-band ``{"error": …}``,
    and garbage: an event that is not ``data: {…}\\n\\n`` in UTF-8 (byte checks; ASCII is one C call) is
    parsed, and one that is not JSON (nor ``[DONE]``) ends the relay."""
    raw = frame.raw
    if not (raw[:7] == b"data: {" and raw[-3] == 0x7D and (raw.isascii() or is_utf8(raw))) and raw != DONE:
        why = garbage(frame, b"[DONE]")
        if why is not None:
            return Tap(garbage=why)
    if b'"usage"' in raw and b'"usage":null' not in raw and b'"usage": null' not in raw:
        chunk = frame_json(frame)
        usage = chunk.get("usage") if isinstance(chunk, dict) else None
        if usage:
            return Tap(usage=Usage.from_hub(usage), usage_only=not chunk.get("choices"))
    if b'"error"' in raw:
        chunk = frame_json(frame)
        if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
            return Tap(error=error_from_body(502, chunk))
    return None


def embeddings_to_upstream(hub: dict, model: str) -> tuple[str, dict]:
    return "/embeddings", {**hub, "model": model}


def embeddings_from_upstream(body: dict, meta: Meta) -> dict:
    return body


def error_from_upstream(status: int, body: bytes) -> ProxyError:
    data = json_or_none(body)
    return text_error(status, body, "the backend") if data is None else error_from_body(status, data)


def error_from_body(status: int, data: Any) -> ProxyError:
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return ProxyError(
            status,
            str(err.get("message") or f"upstream error {status}"),
            type=err.get("type") if isinstance(err.get("type"), str) else None,
            param=err.get("param"),
            code=err.get("code") if isinstance(err.get("code"), str) else None,
        )
    if isinstance(err, str):
        return ProxyError(status, err)
    return ProxyError(status, f"upstream answered HTTP {status}: {orjson.dumps(data).decode()[:300]}")


# ------------------------------------------------------------------ front-door direction


def response_to_client(hub: dict, meta: Meta) -> dict:
    return hub


class ToClient(StreamWriter):
    """Hub chunks as they are, one ``data:`` event each, then ``[DONE]``."""

    __slots__ = ()

    def __init__(self, meta: Meta) -> None:
        pass

    def chunk(self, chunk: dict) -> bytes:
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def chunks(self, chunks: list[dict]) -> bytes:
        """A batch in one join, with no Python call between its chunks."""
        return b"data: " + b"\n\ndata: ".join(map(orjson.dumps, chunks)) + b"\n\n" if chunks else b""

    def end(self) -> bytes:
        return DONE


def error_dict(err: ProxyError) -> dict:
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


def error_body(err: ProxyError) -> bytes:
    return orjson.dumps(error_dict(err))


def stream_error(err: ProxyError) -> bytes:
    return b"data: " + orjson.dumps(error_dict(err)) + b"\n\n"
