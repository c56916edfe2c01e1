"""Request bodies every door refuses with a 400 naming what is wrong, before anything reaches a backend."""
from __future__ import annotations

import io
import logging
import re

import aiohttp
import orjson
import pytest

from conftest import Reply, fixture_bytes
from llmproxy import console

SECRET = "sk-upstream-secret-0123456789"
MSGS = [{"role": "user", "content": "hi"}]


def _config(url: str) -> dict:
    """One model per backend api, all on the fake upstream at ``url``."""
    return {"backends": {"oa": {"api": "openai", "url": url + "/v1", "headers": {"Authorization": f"Bearer {SECRET}"}},
                         "an": {"api": "anthropic", "url": url, "headers": {"x-api-key": SECRET}},
                         "ge": {"api": "gemini", "url": url, "headers": {"x-goog-api-key": SECRET}},
                         "ol": {"api": "ollama", "url": url}},
            "models": {"openai": {"backend": "oa"}, "anthropic": {"backend": "an"}, "gemini": {"backend": "ge"}, "ollama": {"backend": "ol"}}}


def _tool(schema: object) -> dict:
    return {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": schema}}}}


DOORS = {  # door → (path, a body with ``deep`` in a field each backend gets)
    "openai": ("/v1/chat/completions", lambda m, d: {"model": m, "messages": MSGS, "tools": [_tool(d)], "metadata": d}),
    "anthropic": ("/v1/messages", lambda m, d: {"model": m, "max_tokens": 5, "messages": MSGS, "metadata": d,
                                                "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {"a": d}}}]}),
    "count_tokens": ("/v1/messages/count_tokens", lambda m, d: {"model": m, "messages": MSGS,
                                                                "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {"a": d}}}]}),
    "ollama": ("/api/chat", lambda m, d: {"model": m, "messages": MSGS, "tools": [_tool(d)], "options": {"x": d}}),
}


@pytest.mark.parametrize("depth", [255, 600, 1000, 1100])  # (over 1,024: more than orjson reads)
@pytest.mark.parametrize("backend", ["openai", "anthropic", "ollama"])
@pytest.mark.parametrize("door", list(DOORS))
async def test_a_body_nested_too_deep_is_a_400_naming_the_limit(upstream, proxy, door, backend, depth):
    """Relayed or translated, every door answers in its own shape; before, 255–1,024 levels were a 500."""
    up = await upstream({})
    p = await proxy(_config(up.url))
    path, body = DOORS[door]
    status, raw = await _post(p.url + path, _dump(body(backend, "@@"), depth))
    assert status == 400
    assert _message(door, raw) == "request body nests arrays and objects 255 or more levels deep; the limit is 254"
    assert up.seen == []
    [row] = await p.rows()
    assert row["status"] == 400 and row["error_type"] == "invalid_request_error"


async def test_count_tokens_estimate_of_content_nested_too_deep_is_a_400(upstream, proxy):
    up = await upstream({})
    p = await proxy(_config(up.url))
    body = {"model": "openai", "messages": [{"role": "user", "content": ["@@"]}]}
    status, raw = await _post(p.url + "/v1/messages/count_tokens", _dump(body, 1000, b"[", b"]"))
    assert status == 400 and "the limit is 254" in _message("count_tokens", raw)


async def _post(url: str, data: bytes) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.post(url, data=data) as r:
        return r.status, await r.read()


def _message(door: str, raw: bytes) -> str:
    """The error message, read from the door's own error shape."""
    body = orjson.loads(raw)
    if door in ("anthropic", "count_tokens"):
        assert body["type"] == "error"
        return body["error"]["message"]
    return body["error"] if door == "ollama" else body["error"]["message"]


def _dump(body: dict, depth: int, open_: bytes = b'{"k":[', close: bytes = b"]}") -> bytes:
    """``body`` as JSON with "@@" replaced by a value nested about ``depth`` levels (orjson cannot write it)."""
    per = open_.count(b"[") + open_.count(b"{")
    return orjson.dumps(body).replace(b'"@@"', open_ * (depth // per) + b'"x"' + close * (depth // per))


async def test_254_levels_go_through_255_do_not(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    p = await proxy(_config(up.url))
    for levels, status in ((254, 200), (255, 400)):  # the body object is the first level
        value = b"[" * (levels - 1) + b"]" * (levels - 1)
        body = orjson.dumps({"model": "openai", "messages": MSGS, "x": "@@"}).replace(b'"@@"', value)
        assert (await _post(p.url + "/v1/chat/completions", body))[0] == status
    assert len(up.seen) == 1


# ------------------------------------------------------------------ console lines cannot be forged

FORGED = "oa/x\n12:00:00 ← up ✓ 200 first byte 1 ms, 2 ms"  # through the `backend/model` route, before: two console lines
CHAT_DOORS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "count_tokens": "/v1/messages/count_tokens",
              "ollama": "/api/chat", "embeddings": "/v1/embeddings", "embed": "/api/embed"}


@pytest.mark.parametrize("model", [FORGED, "gpt\x1b[2J", "gpt\u2028x", "gpt\x7f", "gpt\x85"], ids=["newline", "escape", "u2028", "del", "nel"])
@pytest.mark.parametrize("door", list(CHAT_DOORS))
async def test_a_model_name_with_control_characters_is_a_400(upstream, proxy, door, model):
    up = await upstream({})
    p = await proxy(_config(up.url))
    body = {"model": model, "messages": MSGS, "max_tokens": 5, "input": "hi"}
    status, raw = await _post(p.url + CHAT_DOORS[door], orjson.dumps(body))
    assert status == 400
    assert _message(door.replace("embeddings", "openai").replace("embed", "ollama"), raw).startswith(
        f"'model' must not contain control characters or line breaks (got {model!r})")
    assert up.seen == []


async def test_console_fields_are_escaped(upstream, proxy, monkeypatch):
    out = io.StringIO()
    handler = console.ConsoleHandler(out)
    monkeypatch.setattr(console, "_console", handler)
    logger = logging.getLogger("llmproxy")
    logger.addHandler(handler)
    try:
        text = "no such model\n12:00:00 ← up ✓ 200 first byte 1 ms, 2 ms\x1b[2J"
        up = await upstream({"/v1/chat/completions": Reply(text.encode(), status=400, content_type="text/plain")})
        p = await proxy(_config(up.url))
        status, raw = await _post(p.url + "/v1/chat/completions", orjson.dumps({"model": "oa/x", "messages": MSGS}))
        assert status == 400 and orjson.loads(raw)["error"]["message"] == text  # the client gets the backend's text as it is
        logger.warning("discovery on %s failed: %s", "oa", "HTTP 500: a\nb")  # a field: escaped
        logger.warning("reload failed:\n%s", ValueError("  - one\n  - two"))  # the message's own lines (and an error's) stay
    finally:
        logger.removeHandler(handler)
    handler.flush()
    lines = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in out.getvalue().splitlines()]
    assert lines[0].startswith("→ oa x ") and lines[1].startswith("← oa ✗ 400 ")
    assert lines[1].endswith(": no such model\\n12:00:00 ← up ✓ 200 first byte 1 ms, 2 ms\\x1b[2J")
    assert lines[2:] == ["discovery on oa failed: HTTP 500: a\\nb", "reload failed:", "  - one", "  - two"]


# ------------------------------------------------------------------ message fields, relayed or translated

BAD_MESSAGES = {  # door → [(messages, the door's message, OpenAI's param)]
    "openai": [
        ([{"role": "user", "content": 5}], "'messages[0].content' must be a string, null or an array of content parts, got a number", "messages[0].content"),
        ([{"role": "user", "content": {"type": "text"}}], "'messages[0].content' must be a string, null or an array of content parts, got an object", "messages[0].content"),
        ([{"role": "user", "content": ["hi"]}], "'messages[0].content[0]' must be a content part (an object with a string 'type'), got a string", "messages[0].content[0]"),
        ([{"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}],
         "'messages[0].content[1]' must be a content part (an object with a string 'type'), got an object without a string 'type'", "messages[0].content[1]"),
        ([{"role": "user", "content": "hi", "name": 5}], "'messages[0].name' must be a string, got a number", "messages[0].name"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": {"id": "c"}}],
         "'messages[1].tool_calls' must be an array, got an object", "messages[1].tool_calls"),
        ([{"role": "tool", "content": "x", "tool_call_id": 7}], "'messages[0].tool_call_id' must be a string, got a number", "messages[0].tool_call_id"),
    ],
    "anthropic": [
        ([], "messages: must be a non-empty list of messages", None),
        ("hi", "messages: must be a non-empty list of messages", None),
        ([5], "messages[0]: must be an object", None),
        ([{"role": "user", "content": 5}], "messages[0].content: must be a string or a list of content blocks", None),
        ([{"role": "user", "content": "hi"}, {"role": "assistant"}], "messages[1].content: must be a string or a list of content blocks", None),
        ([{"role": "bot", "content": "hi"}], "messages[0].role: 'bot' must be user or assistant", None),
    ],
    "ollama": [
        ("hi", "messages: must be a list of messages", None),
        ([5], "messages[0]: must be an object", None),
        ([{"role": "user", "content": 5}], "messages[0].content: must be a string", None),
        ([{"role": "user", "content": "hi", "images": "aGk="}], "messages[0].images: must be a list of base64 strings", None),
        ([{"role": "assistant", "content": "hi", "images": [5]}], "messages[0].images: must be a list of base64 strings", None),
    ],
}
CASES = [(door, *case) for door, cases in BAD_MESSAGES.items() for case in cases]
DOOR_PATHS = {"openai": ["/v1/chat/completions"], "anthropic": ["/v1/messages", "/v1/messages/count_tokens"], "ollama": ["/api/chat"]}


@pytest.mark.parametrize("door, messages, says, param", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
async def test_a_message_field_of_the_wrong_type_is_a_400_naming_it(upstream, proxy, door, messages, says, param):
    """Relayed (before: passed on as it was, `"content": 5` answered 200) or translated, the same 400."""
    up = await upstream({})
    p = await proxy(_config(up.url))
    for path in DOOR_PATHS[door]:
        for backend in (door, "openai" if door != "openai" else "anthropic"):  # the relay, then a translation
            status, raw = await _post(p.url + path, orjson.dumps({"model": backend, "max_tokens": 5, "messages": messages}))
            assert (status, _message(door, raw)) == (400, says), (path, backend)
            if door == "openai":
                assert orjson.loads(raw)["error"]["param"] == param
    assert up.seen == []


@pytest.mark.parametrize("body, says", [
    ({"prompt": 5}, "prompt: must be a string"),
    ({"prompt": "hi", "system": ["be brief"]}, "system: must be a string"),
    ({"prompt": "hi", "images": "aGk="}, "images: must be a list of base64 strings"),
])
async def test_ollama_generate_fields_of_the_wrong_type_are_a_400(upstream, proxy, body, says):
    up = await upstream({})
    p = await proxy(_config(up.url))
    for backend in ("ollama", "openai"):
        status, raw = await _post(p.url + "/api/generate", orjson.dumps({"model": backend, **body}))
        assert (status, orjson.loads(raw)["error"]) == (400, says), backend
    assert up.seen == []
