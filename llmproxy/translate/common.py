"""Helpers shared by the format modules: hub chunk/response builders, data URLs, tool calls.

Pure functions only (no I/O, clock or random); every variable value arrives as an argument.
"""
from __future__ import annotations

import base64
import re
from typing import Any, NamedTuple

import orjson

from ..errors import ProxyError, bad_request
from ..usage import Usage
from .meta import Meta

# ---------------------------------------------------------------- hub shapes


# field → (accepted JSON types, the name used in the message)
FieldTypes = dict[str, tuple[tuple[type, ...], str]]


def json_type(v: Any) -> str:
    """A JSON value's type as a message names it."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(v), "a number")


def check_types(body: dict, types: FieldTypes, prefix: str = "") -> None:
    """400 naming the first field (as ``prefix`` + name, in the body's order) whose JSON type is wrong (null counts
    as absent).  The body's own fields are walked (a request has a few; ``types`` may name many)."""
    for name, v in body.items():
        t = types.get(name)
        if t is not None and v is not None and (not isinstance(v, t[0]) or (isinstance(v, bool) and bool not in t[0])):
            raise bad_request(f"'{prefix}{name}' must be {t[1]}, got {json_type(v)}", param=prefix + name)


def require_model(body: dict) -> str:
    """The request's model name; 400 when it is missing or not a non-empty string."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        got = "missing" if model is None else "an empty string" if model == "" else json_type(model)
        raise bad_request(f"'model' must be a non-empty string (got {got})", param="model")
    if not model.isprintable():  # a line break in a name would forge console lines
        raise bad_request(f"'model' must not contain control characters or line breaks (got {model[:100]!r})", param="model")
    return model


_ROUTING: FieldTypes = {"stream": ((bool,), "a boolean")}


def check_routing(body: dict) -> dict:
    """All a door that relays checks before routing: the model, and ``stream`` a boolean if present
    (the rest is the backend's to judge, or the translator's)."""
    require_model(body)
    check_types(body, _ROUTING)
    return body


class StreamWriter:
    """What every front door's ``ToClient`` shares: a batch of hub chunks (those one upstream read made) is each
    chunk's bytes, joined; a format that can write a batch at once does so instead."""

    __slots__ = ()

    def chunk(self, chunk: dict) -> bytes:
        raise NotImplementedError

    def chunks(self, chunks: list[dict]) -> bytes:
        return b"".join([self.chunk(c) for c in chunks])


def hub_chunk(meta: Meta, delta: dict | None, finish: str | None = None, usage: dict | None = None) -> dict:
    """One hub ``chat.completion.chunk`` with a single choice; ``delta=None`` makes the ``choices: []`` usage chunk."""
    c = {"id": meta.id, "object": "chat.completion.chunk", "created": meta.created, "model": meta.model,
         "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        c["usage"] = usage
    return c


def hub_usage_chunk(meta: Meta, usage: dict) -> dict:
    """The final hub usage chunk (``choices: []``)."""
    return hub_chunk(meta, None, usage=usage)


def hub_completion(meta: Meta, message: dict, finish: str, usage: dict) -> dict:
    """A hub non-stream ``chat.completion`` with a single choice."""
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def synth_tool_call_id(meta_id: str, k: int) -> str:
    """A deterministic tool-call id from the response id and the call's position, ``[A-Za-z0-9_-]`` only."""
    return _ID_UNSAFE.sub("_", f"call_{meta_id}_{k}")


# ---------------------------------------------------------------- content


def split_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<payload>`` -> (mime, payload); None when ``url`` is not a base64 data URL."""
    if not url.startswith("data:"):
        return None
    head, sep, payload = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[: -len(";base64")].split(";")[0], payload


_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_mime(b64: str, default: str = "image/png") -> str:
    """The image MIME type from the magic bytes of base64 data (png, jpeg, gif, webp), else ``default``."""
    head = b64[:24]
    try:
        raw = base64.b64decode(head[: len(head) // 4 * 4], validate=False)
    except (ValueError, TypeError):
        return default
    for magic, mime in _IMAGE_MAGIC:
        if raw.startswith(magic):
            return mime
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    return default


def text_of(content: Any, where: str, sep: str = "\n") -> str:
    """Text of an OpenAI message ``content`` (None, str, or a list of parts); non-text parts -> 400."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ProxyError(400, f"{where}: must be a string or a list of content parts", param=where)
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "input_text", "output_text"):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ProxyError(400, f"{where}[{i}]: only text parts are allowed here, got {kind!r}", param=where)
        texts.append(str(part.get("text") or ""))
    return sep.join(texts)


# ---------------------------------------------------------------- tool calls


def parse_tool_args(arguments: Any, where: str) -> dict:
    """An OpenAI tool call ``arguments`` JSON string -> object; "" -> {}; invalid or non-object JSON -> 400."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if not isinstance(arguments, str):
        raise ProxyError(400, f"{where}: must be a JSON string", param=where)
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise ProxyError(400, f"{where}: is not valid JSON: {arguments[:80]!r}", param=where) from None
    if not isinstance(value, dict):
        raise ProxyError(400, f"{where}: must be a JSON object, got {type(value).__name__}", param=where)
    return value


def dump_args(arguments: Any) -> str:
    """Object arguments -> the compact JSON string OpenAI carries."""
    return orjson.dumps(arguments if arguments is not None else {}).decode()


# ---------------------------------------------------------------- what a relay reads of a stream


class Tap(NamedTuple):
    """What one upstream event tells a byte-for-byte relay (each format's ``relay_tap`` returns it,
    or None for the ordinary event, found by a byte check without parsing)."""

    usage: Usage | None = None  # the usage so far, when this event says it (what the row gets, not a hub dict to read again)
    error: ProxyError | None = None  # an error the backend sent in the stream
    usage_only: bool = False  # the event carries nothing but usage: a client that did not ask for usage does not get it
    garbage: str | None = None  # why the event cannot be passed on (not UTF-8, not JSON): the relay ends the stream there


def is_utf8(raw: bytes) -> bool:
    """Whether ``raw`` decodes as UTF-8 (a relay_tap asks only when ``raw.isascii()`` said no)."""
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def offsets(run: bytes, needle: bytes) -> list[int]:
    """Every offset of ``needle`` in ``run`` (a relay_marks helper: one C search each)."""
    out = []
    i = run.find(needle)
    while i >= 0:
        out.append(i)
        i = run.find(needle, i + len(needle))
    return out


def plain_sse(raw: bytes) -> bool:
    """An SSE event of the ordinary shape, ``event: …`` or ``data: {…``, ending ``}\\n\\n``, in UTF-8 (byte checks:
    ASCII is one C call); anything else is for ``garbage`` to look at."""
    return (raw[:7] == b"event: " or raw[:7] == b"data: {") and raw[-3] == 0x7D and (raw.isascii() or is_utf8(raw))


def sse_garbage(frame: Any) -> Tap | None:
    """The garbage check of an SSE relay_tap whose events carry JSON data: a Tap saying why, or None."""
    if plain_sse(frame.raw):
        return None
    why = garbage(frame)
    return None if why is None else Tap(garbage=why)


def garbage(frame: Any, literal: bytes | None = None) -> str | None:
    """Why an event a relay_tap's byte checks are in doubt about cannot go to the client (any SDK
    would choke on it): bytes that are not UTF-8, or data that is not JSON (``literal``, such as
    ``[DONE]``, excepted).  None when it may go on: an event without data (a comment, a keep-alive)
    or with JSON data the byte checks did not expect (``\\r\\n`` line ends, a last event cut short of its blank line)."""
    raw = frame.raw
    try:
        raw.decode()
    except UnicodeDecodeError as e:
        return f"is not UTF-8 (byte {e.start}: {raw[max(0, e.start - 40):e.start + 20]!r})"
    data = frame.data
    if data is None or data == literal:
        return None
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return f"is not JSON: {raw[:120]!r}"
    return None


def frame_json(frame: Any) -> Any:
    """A frame's data as JSON; None when it has no data or the data is not JSON (a relay passes it on as it is)."""
    data = frame.data
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


# ---------------------------------------------------------------- error bodies


def event_json(data: bytes, provider: str) -> Any:
    """A stream event's (or NDJSON line's) data parsed as JSON; 502 naming ``provider`` when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProxyError(502, f"{provider} sent a stream event that is not JSON: {data[:200]!r}") from None


def json_or_none(body: bytes) -> Any:
    """An upstream body parsed as JSON, or None when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def text_error(status: int, body: bytes, provider: str) -> ProxyError:
    """An error body llmproxy cannot read as the provider's shape: keep its text (or say it was empty)."""
    text = body.decode("utf-8", "replace").strip()[:500]
    return ProxyError(status if status >= 400 else 502, text or f"{provider} answered HTTP {status} with an empty body")
