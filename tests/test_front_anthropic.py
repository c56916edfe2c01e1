"""The Anthropic front door end to end: the official ``anthropic`` SDK → llmproxy → fake upstreams on real sockets.

Over an ``api: anthropic`` backend the request is relayed (bytes compared with the recorded stream);
over OpenAI and Ollama backends it is translated through the hub.
"""
from __future__ import annotations

import aiohttp
import anthropic
import orjson
import pytest

from yarl import URL

from conftest import Reply, fixture_bytes

SECRET = "sk-ant-upstream-secret-0123456789"
TOOLS = [{
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
                     "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
# What Claude Code puts in a request body beyond the basics.
CLAUDE_CODE = {
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.329.136; cc_entrypoint=sdk-cli;"},
               {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
               {"type": "text", "text": "Be brief."}],
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "metadata": {"user_id": "user_abc_account__session_1"},
}
EXTRA_BODY = {"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
              "output_config": {"effort": "medium"}, "unknown_future_field": {"a": [1, 2]}}
BETA = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"


def _sse(name: str, split=None) -> Reply:  # noqa: ANN001
    return Reply(fixture_bytes(name), content_type="text/event-stream; charset=utf-8", split=split)


def _config(url: str, api: str = "anthropic", **model_extra) -> dict:  # noqa: ANN003
    backend = {"api": api, "url": url}
    if api == "anthropic":
        backend["headers"] = {"x-api-key": SECRET}
    elif api == "openai":
        backend = {"api": "openai", "url": url + "/v1", "headers": {"Authorization": f"Bearer {SECRET}"}}
    return {"backends": {"up": backend}, "models": {"sonnet": {"backend": "up", "model": "claude-upstream-name", **model_extra}}}


def _client(p, **kw) -> anthropic.AsyncAnthropic:  # noqa: ANN001, ANN003
    c = anthropic.AsyncAnthropic(base_url=p.url, api_key=kw.pop("api_key", "sk-client-key"), max_retries=0, **kw)
    p.clients.append(c)
    return c


def _events(raw: bytes) -> list[dict]:
    return [orjson.loads(line[6:]) for line in raw.splitlines() if line.startswith(b"data: ")]


# ------------------------------------------------------------------ relay to an Anthropic backend


@pytest.mark.parametrize("name", ["anthropic/stream-thinking.sse", "anthropic/stream-tool-use-docs.sse",
                                  "anthropic/stream-cache-read-unknown-block.sse"])
@pytest.mark.parametrize("split", [None, "random", 1])
async def test_relay_stream_is_byte_faithful(upstream, proxy, name, split):
    up = await upstream({"/v1/messages": _sse(name, split)})
    p = await proxy(_config(up.url, params={"max_tokens": 1000, "temperature": 0.5}))
    client = _client(p)
    async with client.messages.with_streaming_response.create(
        model="sonnet", max_tokens=4096, stream=True, tools=TOOLS, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": BETA}, extra_query={"beta": "true"}, extra_body=EXTRA_BODY, **CLAUDE_CODE,
    ) as resp:
        got = b"".join([piece async for piece in resp.iter_bytes()])
    assert got == fixture_bytes(name)
    seen = up.seen[0]
    assert seen.path == "/v1/messages" and seen.query == "beta=true"
    assert seen.headers["x-api-key"] == SECRET  # the configured key, never the client's
    assert seen.headers["anthropic-beta"] == BETA and seen.headers["anthropic-version"] == client.default_headers["anthropic-version"]
    body = seen.body
    assert body["model"] == "claude-upstream-name"
    assert body["max_tokens"] == 4096 and body["temperature"] == 0.5  # params merged under the client's values
    for k, v in {**CLAUDE_CODE, **EXTRA_BODY, "tools": TOOLS}.items():
        assert body[k] == v, k  # unknown and Anthropic-only fields untouched
    [row] = await p.rows()
    start = next(e for e in _events(fixture_bytes(name)) if e["type"] == "message_start")["message"]["usage"]
    delta = [e for e in _events(fixture_bytes(name)) if e["type"] == "message_delta"][-1]["usage"]
    assert row["front"] == "anthropic" and row["status"] == 200 and row["stream"] == 1
    assert row["completion_tokens"] == delta["output_tokens"] or "iterations" in delta
    assert row["prompt_tokens"] >= start["input_tokens"] + start.get("cache_read_input_tokens", 0)
    assert row["cached_tokens"] == start.get("cache_read_input_tokens", 0) or "iterations" in delta


async def test_relay_stream_parsed_by_sdk(upstream, proxy):
    up = await upstream({"/v1/messages": _sse("anthropic/stream-thinking.sse", "random")})
    p = await proxy(_config(up.url))
    async with _client(p).messages.stream(model="sonnet", max_tokens=2048, messages=[{"role": "user", "content": "two pelican names"}],
                                          thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        msg = await stream.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].signature  # the signature survives, so the next turn can send the block back
    assert msg.usage.input_tokens == 46


async def test_relay_nonstream_and_client_version_header(upstream, proxy):
    name = "anthropic/nonstream-text-and-tool-use.json"
    up = await upstream({"/v1/messages": Reply(fixture_bytes(name))})
    p = await proxy(_config(up.url))
    raw = await _client(p).messages.with_raw_response.create(
        model="sonnet", max_tokens=100, tools=TOOLS, messages=[{"role": "user", "content": "update"}],
        extra_headers={"anthropic-version": "2099-01-01"})
    assert raw.http_response.content == fixture_bytes(name)
    msg = await raw.parse()
    assert msg.content[1].type == "tool_use" and msg.content[1].input == {} and msg.stop_reason == "tool_use"
    assert up.seen[0].headers["anthropic-version"] == "2099-01-01"  # the client's version replaces the default
    [row] = await p.rows()
    assert (row["prompt_tokens"], row["completion_tokens"], row["stream"]) == (602, 93, 0)


async def test_relay_configured_header_wins(upstream, proxy):
    up = await upstream({"/v1/messages": Reply(fixture_bytes("anthropic/nonstream-text.json"))})
    cfg = _config(up.url)
    cfg["backends"]["up"]["headers"]["anthropic-beta"] = "configured-beta"
    p = await proxy(cfg)
    await _client(p).messages.create(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}],
                                     extra_headers={"anthropic-beta": "client-beta"})
    assert up.seen[0].headers["anthropic-beta"] == "configured-beta"


async def test_relay_client_header_that_cannot_be_sent_is_that_clients_400(upstream, proxy):
    """A byte llmproxy cannot write upstream as it came (here UTF-8 in anthropic-beta) is the sender's 400,
    naming the header: no retry, no breaker, so the next client's request on the same route goes through."""
    import asyncio

    up = await upstream({"/v1/messages": Reply(fixture_bytes("anthropic/nonstream-text.json"))})
    p = await proxy(_config(up.url))
    host, port = URL(p.url).host, URL(p.url).port
    body = orjson.dumps({"model": "sonnet", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    reader, writer = await asyncio.open_connection(host, port)  # raw bytes: an SDK would refuse to send them
    writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nanthropic-version: 2023-06-01\r\n"
                 b"anthropic-beta: tools-\xe2\x82\xac-2024\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = await reader.read()
    writer.close()
    head, _, raw = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    got = orjson.loads(raw)
    assert got["type"] == "error" and got["error"]["type"] == "invalid_request_error" and "header 'anthropic-beta'" in got["error"]["message"]
    assert not up.seen  # nothing went up, nothing was retried
    msg = await _client(p).messages.create(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert msg.content[0].text and len(up.seen) == 1  # another client, right after: served
    async with aiohttp.ClientSession() as s, s.get(p.url + "/health") as r:
        route = (await r.json())["backends"]["up"]["routes"]["claude-upstream-name"]
    assert route["state"] == "closed" and route["failures"] == 0
    rows = await p.rows()
    assert [(r["status"], r["attempts"]) for r in rows] == [(400, 1), (200, 1)]


async def test_relay_upstream_errors_in_anthropic_shape(upstream, proxy):
    up = await upstream({"/v1/messages": Reply(fixture_bytes("anthropic/error-529-overloaded.json"), status=529)})
    p = await proxy(_config(up.url))
    with pytest.raises(anthropic.APIStatusError) as e:
        await _client(p).messages.create(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 529 and e.value.body["error"]["type"] == "overloaded_error"
    assert SECRET not in str(e.value.body)


async def test_relay_mid_stream_error_passes_and_is_logged(upstream, proxy):
    up = await upstream({"/v1/messages": _sse("anthropic/stream-error-event-docs.sse")})
    p = await proxy(_config(up.url))
    with pytest.raises(anthropic.APIStatusError) as e:  # the SDK raises on an `event: error`
        async with _client(p).messages.stream(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}]) as s:
            await s.get_final_message()
    assert "overloaded" in str(e.value).lower()
    [row] = await p.rows()
    assert row["status"] == 529 and "Overloaded" in row["error"]


# ------------------------------------------------------------------ count_tokens


async def test_count_tokens_relayed(upstream, proxy):
    up = await upstream({"/v1/messages/count_tokens": Reply(b'{"input_tokens":1234}')})
    p = await proxy(_config(up.url, params={"max_tokens": 1000}))
    r = await _client(p).messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
                                               system=CLAUDE_CODE["system"], extra_headers={"anthropic-beta": BETA},
                                               extra_query={"beta": "true"})
    assert r.input_tokens == 1234
    seen = up.seen[0]
    assert seen.path == "/v1/messages/count_tokens" and seen.query == "beta=true"
    assert seen.headers["anthropic-beta"] == BETA
    assert seen.body["model"] == "claude-upstream-name" and "max_tokens" not in seen.body  # count_tokens takes no params
    [row] = await p.rows()
    assert row["endpoint"] == "count_tokens" and row["front"] == "anthropic" and row["prompt_tokens"] is None


async def test_query_string_goes_up_as_the_client_wrote_it(upstream, proxy):
    """``%23`` must not cut the query short, and ``+``/``%20`` must not change: the bytes go up as sent."""
    up = await upstream({"/v1/messages": Reply(fixture_bytes("anthropic/nonstream-text.json"))})
    p = await proxy(_config(up.url))
    raw = "beta=true&note=a%23b+c%20d&empty="
    async with aiohttp.ClientSession() as s:
        async with s.post(URL(f"{p.url}/v1/messages?{raw}", encoded=True), json={"model": "sonnet", "max_tokens": 5,
                          "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200, await r.text()
    assert up.seen[0].query == raw


async def test_count_tokens_local_estimate(upstream, proxy):
    up = await upstream({})
    p = await proxy(_config(up.url, api="openai"))
    c = _client(p)
    msgs = [{"role": "user", "content": "word " * 400}]
    bare = (await c.messages.count_tokens(model="sonnet", messages=msgs)).input_tokens
    full = (await c.messages.count_tokens(model="sonnet", messages=msgs, tools=TOOLS, system=CLAUDE_CODE["system"])).input_tokens
    assert 500 <= bare <= 520  # 2,000 characters at 4 per token, plus framing
    assert full > bare + 20  # system prompt and tool schemas count
    assert up.seen == []  # never a completion


# ------------------------------------------------------------------ translated: OpenAI backend


async def test_openai_backend_stream_with_tools(upstream, proxy):
    up = await upstream({"/v1/chat/completions": _sse("openai/stream-tool-call-usage.sse", "random")})
    p = await proxy(_config(up.url, api="openai"))
    async with _client(p).messages.stream(
        model="sonnet", max_tokens=128000, tools=TOOLS, messages=[
            {"role": "system", "content": "Injected system message."},  # what Claude Code sends inside messages
            {"role": "user", "content": [{"type": "text", "text": "1231 * 2331?", "cache_control": {"type": "ephemeral"}}]}],
        extra_headers={"anthropic-beta": BETA}, extra_body=EXTRA_BODY, **CLAUDE_CODE,
    ) as stream:
        msg = await stream.get_final_message()
    [tool] = [b for b in msg.content if b.type == "tool_use"]
    assert tool.name == "multiply" and tool.input == {"a": 1231, "b": 2331} and tool.id == "call_1EYWDzueHEp8OsB8jJSEp7WB"
    assert msg.stop_reason == "tool_use" and msg.id.startswith("msg_")
    assert msg.usage.output_tokens > 0
    sent = up.seen[0].body
    assert sent["model"] == "claude-upstream-name" and sent["stream"] is True
    assert sent["messages"][0] == {"role": "system", "content": "You are Claude Code.\n\nBe brief.\n\nInjected system message."}
    assert sent["reasoning_effort"] == "low" and sent["max_completion_tokens"] == 128000
    for dropped in ("thinking", "metadata", "context_management", "output_config", "system", "unknown_future_field"):
        assert dropped not in sent, dropped
    assert b"cache_control" not in orjson.dumps(sent)
    assert sent["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]
    [row] = await p.rows()
    assert row["front"] == "anthropic" and row["backend"] == "up" and row["prompt_tokens"] > 0


async def test_openai_backend_stream_text_events(upstream, proxy):
    """Every event with its ``event:`` line, one content_block_stop per block, usage in message_delta."""
    up = await upstream({"/v1/chat/completions": _sse("openai/stream-text-usage.sse")})
    p = await proxy(_config(up.url, api="openai"))
    async with _client(p).messages.with_streaming_response.create(
            model="sonnet", max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}]) as resp:
        raw = b"".join([piece async for piece in resp.iter_bytes()])
        assert resp.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in raw.split(b"\n\n") if f.strip()]
    names = [f.split(b"\n")[0] for f in frames]
    assert all(n.startswith(b"event: ") for n in names)
    kinds = [n[7:].decode() for n in names]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 1
    final = _events(raw)[-2]
    assert final["usage"]["output_tokens"] > 0 and final["delta"]["stop_reason"] == "end_turn"


async def test_openai_backend_nonstream_and_tool_result_turn(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-tool-call.json"))})
    p = await proxy(_config(up.url, api="openai"))
    msg = await _client(p).messages.create(model="sonnet", max_tokens=200, tools=TOOLS, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                                     {"type": "text", "text": "and now?"}]},
    ])
    assert msg.content[0].type == "tool_use" and msg.content[0].input == {"country": "Crumpet"}
    assert msg.usage.input_tokens == 92 and msg.usage.output_tokens == 17
    sent = up.seen[0].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "toolu_1"
    assert orjson.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert sent[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    assert sent[3] == {"role": "user", "content": "and now?"}


# ------------------------------------------------------------------ translated: Ollama backend


async def test_ollama_backend_stream_tool_call(upstream, proxy):
    up = await upstream({"/api/chat": Reply(fixture_bytes("ollama/stream-tool-call-docs.ndjson"), content_type="application/x-ndjson", split="random")})
    p = await proxy(_config(up.url, api="ollama"))
    async with _client(p).messages.stream(model="sonnet", max_tokens=100, tools=TOOLS,
                                          messages=[{"role": "user", "content": "weather in Tokyo"}], **CLAUDE_CODE) as stream:
        msg = await stream.get_final_message()
    [tool] = msg.content
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.input == {"city": "Tokyo"}
    assert msg.stop_reason == "tool_use" and msg.usage.input_tokens == 169 and msg.usage.output_tokens == 15
    sent = up.seen[0].body
    assert sent["model"] == "claude-upstream-name" and sent["messages"][0]["role"] == "system"
    assert sent["think"] == "low" and sent["options"]["num_predict"] == 100


async def test_ollama_backend_nonstream_thinking(upstream, proxy):
    up = await upstream({"/api/chat": Reply(fixture_bytes("ollama/nonstream-thinking-tool-call-cloud.json"))})
    p = await proxy(_config(up.url, api="ollama"))
    msg = await _client(p).messages.create(model="sonnet", max_tokens=100, tools=TOOLS, thinking={"type": "adaptive"},
                                           messages=[{"role": "user", "content": "search ollama bash lib"}])
    assert [b.type for b in msg.content] == ["thinking", "tool_use"]
    assert msg.content[0].thinking.startswith("The user wants") and msg.content[1].input == {"query": "ollama bash lib"}
    assert up.seen[0].body["stream"] is False


# ------------------------------------------------------------------ errors in Anthropic's shape


async def test_errors_from_the_door(upstream, proxy):
    up = await upstream({})
    cfg = _config(up.url, api="openai")
    p = await proxy(cfg)
    c = _client(p)
    with pytest.raises(anthropic.NotFoundError) as e:
        await c.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body == {"type": "error", "error": {"type": "not_found_error", "message": e.value.body["error"]["message"]}}
    with pytest.raises(anthropic.BadRequestError) as e:
        await c.messages.create(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": [{"type": "server_thing"}]}])
    assert e.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError):
        await c.post("/v1/messages", cast_to=object, body={"messages": []})  # no model
    [*rows] = await p.rows()
    assert [r["status"] for r in rows] == [404, 400, 400] and {r["front"] for r in rows} == {"anthropic"}


async def test_auth_and_size_errors(upstream, proxy):
    up = await upstream({})
    cfg = _config(up.url, api="openai")
    cfg["access"] = {"clients": [{"name": "cc", "key": "sk-good-client-key-0123456789", "models": ["other"]}]}
    cfg["limits"] = {"max_body_mb": 0.001}
    p = await proxy(cfg)
    with pytest.raises(anthropic.AuthenticationError) as e:
        await _client(p, api_key="sk-bad").messages.create(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        await _client(p, api_key="sk-good-client-key-0123456789").messages.create(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIStatusError) as e:
        await _client(p, api_key="sk-good-client-key-0123456789").messages.create(model="other", max_tokens=10, messages=[{"role": "user", "content": "x" * 5000}])
    assert e.value.status_code == 413 and e.value.body["error"]["type"] == "request_too_large"


async def test_count_tokens_falls_back_when_backend_lacks_it(upstream, proxy):
    """An Anthropic-compatible server without count_tokens: estimated; Anthropic's own 'model: …' 404 passes on."""
    up = await upstream({"/v1/messages/count_tokens": Reply(b"404: Not Found", status=404, content_type="text/plain")})
    p = await proxy(_config(up.url))
    r = await _client(p).messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": "word " * 40}])
    assert r.input_tokens == 54 and len(up.seen) == 1
    up.routes["/v1/messages/count_tokens"] = Reply(fixture_bytes("anthropic/error-404-not-found.json"), status=404)
    with pytest.raises(anthropic.NotFoundError) as e:
        await _client(p).messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["message"] == "model: claude-does-not-exist"


async def test_translated_mid_stream_error_is_an_error_event(upstream, proxy):
    events = fixture_bytes("openai/stream-text-usage.sse").split(b"\n\n")[:2]
    body = b"\n\n".join(events) + b'\n\ndata: {"error":{"message":"The server had an error while processing your request.","type":"server_error"}}\n\n'
    up = await upstream({"/v1/chat/completions": Reply(body, content_type="text/event-stream")})
    p = await proxy(_config(up.url, api="openai"))
    async with _client(p).messages.with_streaming_response.create(
            model="sonnet", max_tokens=10, stream=True, messages=[{"role": "user", "content": "x"}]) as resp:
        raw = b"".join([piece async for piece in resp.iter_bytes()])
    last = raw.rstrip(b"\n").split(b"\n\n")[-1]
    assert last.startswith(b"event: error\ndata: ")
    assert orjson.loads(last.split(b"data: ", 1)[1])["error"]["message"].startswith("The server had an error")
    [row] = await p.rows()
    assert row["status"] >= 500 and row["front"] == "anthropic"
