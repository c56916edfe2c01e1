"""A relayed stream that turns to garbage (bytes no SDK can read) ends with the front door's error event
and a 502 ``upstream_garbage`` row; before the first byte it is an ordinary failure the request fails over on."""
from __future__ import annotations

import aiohttp
import anthropic
import ollama
import openai
import orjson
import pytest

from conftest import Reply, fixture_bytes, openai_config, sse_wire

MSGS = [{"role": "user", "content": "hi"}]
OPENAI_STREAM = "openai/stream-text-usage.sse"

# What a broken upstream (a proxy in between, a crashed worker, a wrong encoding) may send inside a stream.
GARBAGE = {
    "not_utf8": b'data: {"choices":[{"index":0,"delta":{"content":"caf\xe9"}}]}\n\n',
    "not_json": b"data: <html><body>502 Bad Gateway</body></html>\n\n",
    "cut_json": b'data: {"choices":[{"index":0,"delta":{"content":"x\n\n',
}


def _events(raw: bytes, sep: bytes = b"\n\n") -> list[bytes]:
    """The events (or lines) of a body, each with its terminator."""
    return [e + sep for e in raw.split(sep) if e]


def _stream(events: list[bytes], garbage: bytes, at: int, content_type: str) -> tuple[Reply, bytes]:
    """``events`` with ``garbage`` before events[at]: the first two events in their own read, the rest in the next.

    Returns the reply and what the client must get before the error: everything before the garbage.
    """
    head, tail = b"".join(events[:2]), b"".join(events[2:at]) + garbage + b"".join(events[at:])
    return Reply(head + tail, content_type=content_type, split=[len(head)], gap=0.1), b"".join(events[:at])


def _text(events: list[bytes]) -> str:
    out = []
    for e in events:
        if e.startswith(b"data: {"):
            out += [ch["delta"].get("content") or "" for ch in orjson.loads(e[6:]).get("choices") or []]
    return "".join(out)


async def _post(url: str, body: dict) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        return r.status, await r.read()


async def _after(url: str, body: dict, before: bytes) -> bytes:
    """What a 200 stream sent after ``before`` (every event before the garbage, those in its own read too)."""
    status, raw = await _post(url, body)
    assert status == 200 and raw.startswith(before)
    return raw[len(before):]


async def _rows_are_garbage(p) -> list[dict]:  # noqa: ANN001
    """The two requests a test sent (SDK and raw), each logged as a 502 upstream_garbage."""
    rows = await p.rows()
    assert len(rows) == 2
    for row in rows:
        _row_is_garbage(row)
    return rows


def _row_is_garbage(row: dict, status: int = 502) -> None:
    assert (row["status"], row["error_type"]) == (status, "upstream_garbage")
    assert row["error"].startswith("backend 'up' sent a stream event that is not")


@pytest.mark.parametrize("kind", list(GARBAGE))
async def test_openai_relay_ends_with_an_error_event_not_garbage(upstream, proxy, kind):
    events = _events(fixture_bytes(OPENAI_STREAM))
    reply, before = _stream(events, GARBAGE[kind], 4, "text/event-stream")
    up = await upstream({"/v1/chat/completions": reply})
    p = await proxy(openai_config(up.url))
    # every event before the garbage, then one error event, then the end
    [last] = _events(await _after(p.url + "/v1/chat/completions", {"model": "gpt", "stream": True, "messages": MSGS}, before))
    err = orjson.loads(last[6:])["error"]
    assert (err["type"], err["code"]) == ("upstream_garbage", "upstream_garbage") and "not " in err["message"]
    # the SDK raises its own APIError (it crashed with UnicodeDecodeError / JSONDecodeError), after the text so far
    text = []
    with pytest.raises(openai.APIError) as e:
        async for chunk in await p.openai().chat.completions.create(model="gpt", messages=MSGS, stream=True):
            text += [ch.delta.content or "" for ch in chunk.choices]
    assert "sent a stream event that is not" in e.value.message
    assert "".join(text) == _text(events[:4])
    for row in await _rows_are_garbage(p):
        assert row["first_byte_ms"] is not None


async def test_garbage_as_the_first_event_fails_over(upstream, proxy):
    events = _events(fixture_bytes(OPENAI_STREAM))
    bad = await upstream({"/v1/chat/completions": Reply(GARBAGE["not_json"] + b"".join(events), content_type="text/event-stream")})
    good = await upstream({"/v1/chat/completions": Reply(b"".join(events), content_type="text/event-stream")})
    cfg = openai_config(bad.url, models={"gpt": {"routes": [{"backend": "up", "model": "a"}, {"backend": "good", "model": "b"}]}})
    cfg["backends"]["good"] = {"api": "openai", "url": good.url + "/v1"}
    p = await proxy(cfg)
    status, raw = await _post(p.url + "/v1/chat/completions", {"model": "gpt", "stream": True, "messages": MSGS})
    assert status == 200 and raw == b"".join(e for e in events if b'"choices":[]' not in e)  # (the usage chunk: not asked for)
    [row] = await p.rows()
    assert (row["status"], row["backend"], row["attempts"]) == (200, "good", 2)
    assert [(a["backend"], a["status"]) for a in orjson.loads(row["attempt_log"])] == [("up", 502), ("good", 200)]


@pytest.mark.parametrize("kind", list(GARBAGE))
async def test_garbage_in_the_first_read_after_good_events_ends_the_stream(upstream, proxy, kind):
    """The whole answer in one read: the events before the garbage start the stream (as in the translated path),
    then the error event; no failover, since the client already has a 200 and text."""
    events = _events(fixture_bytes(OPENAI_STREAM))
    up = await upstream({"/v1/chat/completions": Reply(b"".join(events[:3]) + GARBAGE[kind] + b"".join(events[3:]), content_type="text/event-stream")})
    good = await upstream({"/v1/chat/completions": Reply(b"".join(events), content_type="text/event-stream")})
    cfg = openai_config(up.url, models={"gpt": {"routes": [{"backend": "up", "model": "a"}, {"backend": "good", "model": "b"}]}})
    cfg["backends"]["good"] = {"api": "openai", "url": good.url + "/v1"}
    p = await proxy(cfg)
    [last] = _events(await _after(p.url + "/v1/chat/completions", {"model": "gpt", "stream": True, "messages": MSGS}, b"".join(events[:3])))
    assert orjson.loads(last[6:])["error"]["code"] == "upstream_garbage"
    [row] = await p.rows()
    _row_is_garbage(row)
    assert (row["backend"], row["attempts"]) == ("up", 1) and row["first_byte_ms"] is not None


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("kind", list(GARBAGE))
async def test_garbage_first_is_a_502_and_what_only_looks_odd_passes(upstream, proxy, kind, crlf):
    """The byte checks doubt a comment, a last event without its blank line and \r\n line ends: those are parsed and pass."""
    fine = fixture_bytes(OPENAI_STREAM).replace(b"data: [DONE]\n\n", b": keep-alive\n\n") + b"data: [DONE]"
    if crlf:
        fine = fine.replace(b"\n", b"\r\n")
    up = await upstream({"/v1/chat/completions": Reply(fine, content_type="text/event-stream", split="random")})
    p = await proxy(openai_config(up.url, models={"gpt": {"backend": "up", "max_attempts": 1}}))
    req = {"model": "gpt", "stream": True, "stream_options": {"include_usage": True}, "messages": MSGS}
    assert await _post(p.url + "/v1/chat/completions", req) == (200, fine)
    up.routes["/v1/chat/completions"] = Reply(GARBAGE[kind] + fine, content_type="text/event-stream")
    status, raw = await _post(p.url + "/v1/chat/completions", req)
    assert status == 502 and orjson.loads(raw)["error"]["code"] == "upstream_garbage"
    ok, bad = await p.rows()
    assert (ok["status"], ok["error"]) == (200, None) and ok["completion_tokens"]
    _row_is_garbage(bad)


@pytest.mark.parametrize("garbage", [
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\xff"}}\n\n',
    b"event: content_block_delta\ndata: <html>502</html>\n\n",
], ids=["not_utf8", "not_json"])
async def test_anthropic_relay_ends_with_an_error_event_not_garbage(upstream, proxy, garbage):
    events = _events(fixture_bytes("anthropic/stream-text.sse"))
    reply, before = _stream(events, garbage, 5, "text/event-stream")
    up = await upstream({"/v1/messages": reply})
    p = await proxy({"backends": {"up": {"api": "anthropic", "url": up.url}}, "models": {"sonnet": {"backend": "up"}}})
    client = anthropic.AsyncAnthropic(base_url=p.url, api_key="x", max_retries=0)
    p.clients.append(client)
    with pytest.raises(anthropic.APIStatusError) as e:  # an `event: error`: the SDK raises (it crashed on the bytes)
        async with client.messages.stream(model="sonnet", max_tokens=10, messages=MSGS) as s:
            await s.get_final_message()
    assert "sent a stream event that is not" in str(e.value)
    [last] = _events(await _after(p.url + "/v1/messages", {"model": "sonnet", "max_tokens": 10, "stream": True, "messages": MSGS}, before))
    assert last.startswith(b"event: error\n") and orjson.loads(last.split(b"data: ", 1)[1])["error"]["type"] == "api_error"
    await _rows_are_garbage(p)


@pytest.mark.parametrize("garbage", [b'{"model":"x","message":{"role":"assistant","content":"\xff"},"done":false}\n', b"<html>502</html>\n"],
                         ids=["not_utf8", "not_json"])
async def test_ollama_relay_ends_with_an_error_line_not_garbage(upstream, proxy, garbage):
    lines = _events(fixture_bytes("ollama/stream-tool-call-docs.ndjson"), b"\n")
    reply, before = _stream(lines, garbage, 3, "application/x-ndjson")
    up = await upstream({"/api/chat": reply})
    p = await proxy({"backends": {"up": {"api": "ollama", "url": up.url}}, "models": {"chat": {"backend": "up"}}})
    client = ollama.AsyncClient(host=p.url)
    p.clients.append(type("C", (), {"close": client._client.aclose})())
    with pytest.raises(ollama.ResponseError) as e:  # an {"error"} line: the client raises (it crashed on the bytes)
        async for _ in await client.chat(model="chat", messages=MSGS, stream=True):
            pass
    assert "sent a stream event that is not" in str(e.value)
    assert "sent a stream event that is not" in orjson.loads(await _after(p.url + "/api/chat", {"model": "chat", "messages": MSGS}, before))["error"]
    await _rows_are_garbage(p)


@pytest.mark.parametrize("garbage", [
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"\xff"}\n\n',
    b"event: response.output_text.delta\ndata: <html>502</html>\n\n",
], ids=["not_utf8", "not_json"])
async def test_responses_relay_ends_with_an_error_event_not_garbage(upstream, proxy, garbage):
    """/v1/responses to a ``responses: relay`` backend: the same rule as the other relays."""
    events = _events(sse_wire("responses/stream-function-call.sse"))
    reply, before = _stream(events, garbage, 4, "text/event-stream")
    up = await upstream({"/v1/responses": reply})
    p = await proxy({"backends": {"up": {"api": "openai", "url": up.url + "/v1", "responses": "relay"}}, "models": {"gpt": {"backend": "up"}}})
    with pytest.raises(openai.APIError) as e:  # the SDK raises the error event (it crashed on the bytes)
        async for _ in await p.openai().responses.create(model="gpt", input="hi", stream=True):
            pass
    assert "sent a stream event that is not" in str(e.value)
    [last] = _events(await _after(p.url + "/v1/responses", {"model": "gpt", "input": "hi", "stream": True}, before))
    assert b'"upstream_garbage"' in last
    await _rows_are_garbage(p)
