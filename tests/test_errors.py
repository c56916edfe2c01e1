"""Bad input gets a precise error in the OpenAI shape, the process keeps serving, and the row is written."""
from __future__ import annotations

import asyncio
import socket

import aiohttp
import openai
import orjson
import pytest

from conftest import Reply, fixture_bytes, openai_config

SECRET = "sk-upstream-secret-0123456789"
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


async def post(url: str, body, **kw):  # noqa: ANN001, ANN201
    async with aiohttp.ClientSession() as s:
        data = orjson.dumps(body) if isinstance(body, (dict, list)) else body
        async with s.post(url + "/v1/chat/completions", data=data, **kw) as r:
            return r.status, await r.read()


def err(raw: bytes) -> dict:
    e = orjson.loads(raw)["error"]
    assert set(e) == {"message", "type", "param", "code"}
    return e


@pytest.mark.parametrize(
    "body, status, needle, param",
    [
        (b"{not json", 400, "not valid JSON", None),
        (b"", 400, "body is empty", None),
        (b"[1, 2]", 400, "must be a JSON object", None),
        ({"messages": []}, 400, "'model' must be a non-empty string (got missing)", "model"),
        ({"model": 5, "messages": []}, 400, "'model' must be a non-empty string (got a number)", "model"),
        ({"model": "gpt", "messages": "hi"}, 400, "'messages' must be a non-empty array", "messages"),
        ({"model": "gpt", "messages": [{"role": "wizard", "content": "x"}]}, 400, "'messages[0].role' must be one of", "messages[0].role"),
        ({**CHAT, "stream": "yes"}, 400, "'stream' must be a boolean, got a string", "stream"),
        ({**CHAT, "max_tokens": "10"}, 400, "'max_tokens' must be an integer", "max_tokens"),
        ({**CHAT, "temperature": True}, 400, "'temperature' must be a number, got a boolean", "temperature"),
        ({**CHAT, "model": "gtp"}, 404, "model 'gtp' not found; closest: gpt", "model"),
    ],
)
async def test_bad_requests(upstream, proxy, body, status, needle, param):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    p = await proxy(openai_config(up.url))
    got_status, raw = await post(p.url, body)
    assert got_status == status
    e = err(raw)
    assert needle in e["message"] and e["param"] == param
    assert not up.seen, "a bad request must not reach the upstream"
    # the process keeps serving
    ok_status, _ = await post(p.url, CHAT)
    assert ok_status == 200
    rows = await p.rows()
    assert [r["status"] for r in rows] == [status, 200]
    assert rows[0]["error_type"] == e["type"]


async def test_body_over_limit_is_413(upstream, proxy):
    up = await upstream({})
    p = await proxy(openai_config(up.url, limits={"max_body_mb": 0.01}))
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 20000}]}
    status, raw = await post(p.url, big)
    assert status == 413 and "limits.max_body_mb" in err(raw)["message"]
    # chunked (no Content-Length) too
    async def gen():  # noqa: ANN202
        for _ in range(20):
            yield b"x" * 1000

    status, raw = await post(p.url, gen())
    assert status == 413
    assert [r["status"] for r in await p.rows()] == [413, 413]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_unreachable_is_502(proxy):
    p = await proxy(openai_config(f"http://127.0.0.1:{closed_port()}"))
    with pytest.raises(openai.APIStatusError) as e:
        await p.openai().chat.completions.create(**CHAT)
    assert e.value.status_code == 502 and "unreachable" in e.value.message
    [row] = await p.rows()
    assert row["status"] == 502 and row["backend"] == "up"


async def test_first_byte_timeout_is_504(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"), hang_before=5)})
    cfg = openai_config(up.url)
    cfg["backends"]["up"]["timeout"] = {"first_byte": 0.3}
    p = await proxy(cfg)
    status, raw = await post(p.url, CHAT)
    assert status == 504 and "timeout.first_byte" in err(raw)["message"]


async def test_idle_timeout_mid_stream_ends_stream_with_error_event(upstream, proxy):
    reply = Reply(fixture_bytes("openai/stream-text-usage.sse"), content_type="text/event-stream", split=200, hang_after=3)
    up = await upstream({"/v1/chat/completions": reply})
    cfg = openai_config(up.url)
    cfg["backends"]["up"]["timeout"] = {"idle": 0.3, "first_byte": 10}
    p = await proxy(cfg)
    status, raw = await post(p.url, {**CHAT, "stream": True})
    assert status == 200
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1].startswith(b'data: {"error":')
    assert "timeout.idle" in orjson.loads(events[-1][6:])["error"]["message"]
    # the SDK raises on it, cleanly
    with pytest.raises(openai.APIError):
        async for _ in await p.openai().chat.completions.create(**CHAT, stream=True):
            pass
    rows = await p.rows()
    assert rows[0]["status"] == 504 and rows[0]["first_byte_ms"] is not None
    # cut by idle (0.3 s after the last bytes), not by the longer first_byte deadline set before them
    assert rows[0]["total_ms"] < 3000


async def test_total_timeout_cuts_a_slow_but_steady_stream(upstream, proxy):
    """Each piece well within idle, the whole over total: the stream ends in-band at timeout.total."""
    reply = Reply(fixture_bytes("openai/stream-text-usage.sse"), content_type="text/event-stream", split=400, gap=0.1)
    up = await upstream({"/v1/chat/completions": reply})
    cfg = openai_config(up.url)
    cfg["backends"]["up"]["timeout"] = {"idle": 5, "total": 0.5}
    p = await proxy(cfg)
    status, raw = await post(p.url, {**CHAT, "stream": True})
    assert status == 200
    events = [e for e in raw.split(b"\n\n") if e]
    assert "timeout.total" in orjson.loads(events[-1][6:])["error"]["message"]
    [row] = await p.rows()
    assert row["status"] == 504 and 400 < row["total_ms"] < 2000


@pytest.mark.parametrize("fixture, status", [("openai/error-400-unsupported-parameter.json", 400), ("openai/error-400-unsupported-value.json", 400), (None, 503)])
async def test_upstream_error_keeps_status_and_message(upstream, proxy, fixture, status):
    body = fixture_bytes(fixture) if fixture else b"upstream is overloaded"
    up = await upstream({"/v1/chat/completions": Reply(body, status=status, content_type="application/json" if fixture else "text/plain")})
    p = await proxy(openai_config(up.url, models={"gpt": {"backend": "up", "max_attempts": 1}}))
    got, raw = await post(p.url, CHAT)
    e = err(raw)
    assert got == status
    if fixture:
        want = orjson.loads(body)["error"]
        assert (e["message"], e["param"], e["code"]) == (want["message"], want["param"], want["code"])
    else:
        assert e["message"] == "upstream is overloaded"


async def test_upstream_secret_never_leaks(upstream, proxy):
    body = orjson.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}.", "type": "invalid_request_error", "code": "invalid_api_key", "param": None}})
    up = await upstream({"/v1/chat/completions": Reply(body, status=401)})
    p = await proxy(openai_config(up.url))
    got, raw = await post(p.url, CHAT)
    assert got == 401 and SECRET not in raw.decode() and "***" in err(raw)["message"]
    assert up.seen[0].headers["Authorization"] == f"Bearer {SECRET}"  # it was sent upstream...
    async with aiohttp.ClientSession() as s:
        async with s.get(p.url + "/health") as r:
            health = await r.text()
    rows = await p.rows()
    assert SECRET not in health and SECRET not in repr(rows)  # ...and nowhere else


async def test_client_disconnect_cancels_upstream(upstream, proxy):
    reply = Reply(fixture_bytes("openai/stream-text-usage.sse"), content_type="text/event-stream", split=300, gap=0.2)
    up = await upstream({"/v1/chat/completions": reply})
    p = await proxy(openai_config(up.url))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(p.url + "/v1/chat/completions", json={**CHAT, "stream": True})
        await resp.content.readany()  # the first bytes arrived
        resp.close()  # the client hangs up
    await asyncio.wait_for(up.done.wait(), 2)
    assert up.cancelled == 1  # the upstream request was cut, long before its ~2.5 s of gaps
    for _ in range(50):
        rows = await p.rows()
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows[0]["status"] == 499 and rows[0]["error_type"] == "cancelled"


async def test_500_concurrent_requests_lose_no_row(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/stream-text-usage.sse"), content_type="text/event-stream")})
    p = await proxy(openai_config(up.url))
    conn = aiohttp.TCPConnector(limit=500)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one(i: int) -> int:
            async with s.post(p.url + "/v1/chat/completions", json={**CHAT, "stream": True, "model": "gpt" if i % 5 else "nope"}) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(one(i) for i in range(500)))
    if statuses.count(200) != 400:
        print([r["error"] for r in await p.rows() if r["status"] not in (200, 404)][:5])
    assert statuses.count(404) == 100 and statuses.count(200) == 400
    rows = await p.rows()
    assert len(rows) == 500 and len({r["id"] for r in rows}) == 500
    assert p.state.log.dropped == 0


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "ol/llama", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/embeddings", {"model": "ol/nomic", "input": "hi"}),
])
async def test_a_translated_answer_that_is_not_json_is_a_502_with_a_row(upstream, proxy, path, body):
    """An Ollama backend behind a captive portal: the same 502 a relayed answer gets, not a 500 (embeddings was)."""
    html = Reply(b"<html>captive portal</html>", content_type="text/html")
    up = await upstream({"/api/chat": html, "/api/embed": html})
    cfg = openai_config(up.url)
    cfg["backends"]["ol"] = {"api": "ollama", "url": up.url}
    p = await proxy(cfg)
    async with aiohttp.ClientSession() as s, s.post(p.url + path, data=orjson.dumps(body)) as r:
        status, raw = r.status, await r.read()
    assert status == 502
    e = err(raw)
    assert e["code"] == "upstream_garbage" and "is not JSON (text/html, 27 bytes)" in e["message"]
    [row] = await p.rows()
    assert row["status"] == 502 and row["backend"] == "ol" and "not JSON" in row["error"]


def _message(path: str, raw: bytes) -> str:
    body = orjson.loads(raw)
    if path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        return body["error"]["message"]
    if path.startswith("/api/"):
        return body["error"]
    return body["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/api/chat", "/api/embed"])
@pytest.mark.parametrize("body, says", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "'model' must be a non-empty string (got missing)"),
    ({"model": 7, "messages": [{"role": "user", "content": "hi"}]}, "'model' must be a non-empty string (got a number)"),
    ({"model": "", "messages": [{"role": "user", "content": "hi"}]}, "'model' must be a non-empty string (got an empty string)"),
    ({"model": "gpt", "stream": "yes", "messages": [{"role": "user", "content": "hi"}], "input": "hi"}, "'stream' must be a boolean, got a string"),
])
async def test_every_door_checks_model_and_stream_alike_in_its_own_shape(upstream, proxy, path, body, says):
    up = await upstream({})
    p = await proxy(openai_config(up.url))
    async with aiohttp.ClientSession() as s, s.post(p.url + path, data=orjson.dumps(body)) as r:
        status, raw = r.status, await r.read()
    assert status == 400 and _message(path, raw) == says
    assert up.seen == []  # refused before routing
    [row] = await p.rows()
    assert row["status"] == 400
