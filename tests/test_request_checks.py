"""Request bodies every door refuses with a 400 naming what is wrong, before anything reaches a backend."""
from __future__ import annotations

import aiohttp
import orjson
import pytest

from conftest import Reply, fixture_bytes

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
