"""The Ollama front door end to end: the official ``ollama`` client → llmproxy → fake upstreams on real sockets."""
from __future__ import annotations

from types import SimpleNamespace

import aiohttp
import ollama
import orjson
import pytest

from conftest import Reply, fixture_bytes

SECRET = "sk-upstream-secret-0123456789"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _config(url: str, api: str) -> dict:
    backend = {"api": api, "url": url + ("/v1" if api == "openai" else "")}
    if api != "ollama":
        backend["headers"] = {"Authorization" if api == "openai" else "x-api-key": SECRET}
    return {"backends": {"up": backend},
            "models": {"chat": {"backend": "up", "model": "upstream-model", "params": {"temperature": 0.3, "max_tokens": 77}},
                       "emb": {"backend": "up", "model": "upstream-embed"}},
            "aliases": {"fast": "chat"}}


def _client(p) -> ollama.AsyncClient:  # noqa: ANN001
    c = ollama.AsyncClient(host=p.url)
    p.clients.append(SimpleNamespace(close=c._client.aclose))  # the httpx client underneath, closed at teardown
    return c


def _ndjson(name: str, split=None) -> Reply:  # noqa: ANN001
    return Reply(fixture_bytes(name), content_type="application/x-ndjson", split=split)


BACKENDS = {
    "openai": {"stream": ("/v1/chat/completions", "openai/stream-tool-call-usage.sse", "text/event-stream"),
               "text": ("/v1/chat/completions", "openai/stream-text-usage.sse", "text/event-stream"),
               "whole": ("/v1/chat/completions", "openai/nonstream-tool-call.json", "application/json")},
    "anthropic": {"stream": ("/v1/messages", "anthropic/stream-tool-use-docs.sse", "text/event-stream"),
                  "text": ("/v1/messages", "anthropic/stream-thinking.sse", "text/event-stream"),
                  "whole": ("/v1/messages", "anthropic/nonstream-text-and-tool-use.json", "application/json")},
}


async def _start(upstream, proxy, api: str, kind: str):  # noqa: ANN001, ANN202
    path, name, ctype = BACKENDS[api][kind]
    up = await upstream({path: Reply(fixture_bytes(name), content_type=ctype, split="random")})
    return up, await proxy(_config(up.url, api))


# ------------------------------------------------------------------ the model list


async def test_tags_ps_show_version(upstream, proxy):
    up = await upstream({})
    p = await proxy(_config(up.url, "openai"))
    c = _client(p)
    listed = (await c.list()).models
    assert [(m.model, m.details.family) for m in listed] == [("chat", "up"), ("emb", "up"), ("fast", "up")]
    async with aiohttp.ClientSession() as s:
        async with s.get(p.url + "/api/tags") as r:
            raw = await r.json()
        async with s.get(p.url + "/api/version") as r:
            assert (await r.json())["version"]
        async with s.get(p.url + "/api/tags") as r:
            assert await r.json() == raw  # digests stable
    entry = raw["models"][0]
    assert entry["name"] == entry["model"] == "chat" and len(entry["digest"]) == 64
    assert {"modified_at", "size", "details"} <= entry.keys()
    assert len({m["digest"] for m in raw["models"]}) == 3
    running = (await c.ps()).models
    assert [m.model for m in running] == ["chat", "emb", "fast"] and running[0].digest == entry["digest"]
    shown = await c.show("fast")
    assert "tools" in shown.capabilities and shown.details.family == "up"
    with pytest.raises(ollama.ResponseError) as e:
        await c.show("missing")
    assert e.value.status_code == 404 and "missing" in e.value.error


async def test_tags_filtered_by_client_key(upstream, proxy):
    up = await upstream({})
    cfg = _config(up.url, "openai")
    cfg["access"] = {"clients": [{"name": "webui", "key": "sk-webui-client-key-0123456789", "models": ["chat"]}]}
    p = await proxy(cfg)
    async with aiohttp.ClientSession() as s:
        async with s.get(p.url + "/api/tags") as r:
            assert r.status == 401 and "error" in await r.json()
        async with s.get(p.url + "/api/tags", headers={"Authorization": "Bearer sk-webui-client-key-0123456789"}) as r:
            assert [m["name"] for m in (await r.json())["models"]] == ["chat"]


# ------------------------------------------------------------------ chat over OpenAI and Anthropic backends


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_chat_stream_with_tools(upstream, proxy, api):
    up, p = await _start(upstream, proxy, api, "stream")
    parts = [part async for part in await _client(p).chat(model="fast", messages=[{"role": "user", "content": "go"}], tools=TOOLS, stream=True)]
    calls = [tc for part in parts for tc in part.message.tool_calls or []]
    assert len(calls) == 1 and not parts[-1].message.tool_calls
    want = {"openai": ("multiply", {"a": 1231, "b": 2331}), "anthropic": ("get_weather", {"location": "San Francisco, CA", "unit": "fahrenheit"})}[api]
    assert (calls[0].function.name, dict(calls[0].function.arguments)) == want
    last = parts[-1]
    assert last.done and last.done_reason == "stop" and last.prompt_eval_count > 0 and last.eval_count > 0
    assert all(not part.done for part in parts[:-1])
    [row] = await p.rows()
    assert row["front"] == "ollama" and row["endpoint"] == "chat" and row["stream"] == 1 and row["prompt_tokens"] == last.prompt_eval_count
    sent = up.seen[0].body
    assert sent["model"] == "upstream-model" and sent["temperature"] == 0.3  # route params reach the backend


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_chat_nonstream_with_tools_and_tool_turn(upstream, proxy, api):
    up, p = await _start(upstream, proxy, api, "whole")
    r = await _client(p).chat(model="chat", stream=False, tools=TOOLS, options={"num_predict": 50, "temperature": 0.9}, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "cold"},
    ])
    assert r.done and r.message.tool_calls and r.prompt_eval_count > 0
    sent = up.seen[0].body
    if api == "openai":
        assert sent["max_tokens"] == 50 and sent["temperature"] == 0.9  # the client's options beat route params
        assert sent["messages"][2]["role"] == "tool" and sent["messages"][2]["tool_call_id"] == sent["messages"][1]["tool_calls"][0]["id"]
    else:
        assert sent["max_tokens"] == 50 and sent["messages"][1]["content"][0]["input"] == {"city": "Oslo"}
        assert sent["messages"][2]["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_generate(upstream, proxy, api):
    up, p = await _start(upstream, proxy, api, "text")
    parts = [part async for part in await _client(p).generate(model="chat", prompt="Say hi", system="Be brief.", stream=True)]
    text = "".join(part.response for part in parts)
    assert text and parts[-1].done and parts[-1].eval_count > 0
    if api == "anthropic":  # thinking arrives as `thinking`
        assert "".join(part.thinking or "" for part in parts).startswith("The user wants")
    sent = up.seen[0].body
    assert "Be brief." in orjson.dumps(sent).decode() and "Say hi" in orjson.dumps(sent).decode()
    [row] = await p.rows()
    assert row["endpoint"] == "generate" and row["front"] == "ollama"


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_generate_nonstream(upstream, proxy, api):
    up, p = await _start(upstream, proxy, api, "whole")
    one = await _client(p).generate(model="chat", prompt="again", stream=False)
    assert one.done and one.done_reason == "stop" and one.prompt_eval_count > 0
    assert not up.seen[0].body.get("stream")


async def test_chat_errors_in_ollama_shape(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/error-400-unsupported-value.json"), status=400)})
    p = await proxy(_config(up.url, "openai"))
    c = _client(p)
    with pytest.raises(ollama.ResponseError) as e:
        await c.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404 and "nope" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        await c.chat(model="chat", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 400 and "developer" in e.value.error
    async with aiohttp.ClientSession() as s:
        async with s.post(p.url + "/api/chat", data=b"{") as r:
            assert r.status == 400 and list(await r.json()) == ["error"]
    assert [r["status"] for r in await p.rows()] == [404, 400, 400]


# ------------------------------------------------------------------ native relay to an Ollama backend


@pytest.mark.parametrize("split", [None, "random", 1])
async def test_relay_to_ollama_is_byte_faithful(upstream, proxy, split):
    name = "ollama/stream-tool-call-blog-excerpt.ndjson"
    up = await upstream({"/api/chat": _ndjson(name, split)})
    p = await proxy(_config(up.url, "ollama"))
    body = {"model": "fast", "messages": [{"role": "user", "content": "weather"}], "tools": TOOLS, "keep_alive": "5m",
            "options": {"temperature": 0.8, "num_ctx": 8192}, "think": True}
    async with aiohttp.ClientSession() as s:
        async with s.post(p.url + "/api/chat", json=body) as r:
            got = await r.read()
            assert r.headers["Content-Type"].startswith("application/x-ndjson")
    assert got == fixture_bytes(name)
    sent = up.seen[0].body
    assert sent["model"] == "upstream-model" and sent["keep_alive"] == "5m" and sent["think"] is True
    assert sent["options"] == {"num_predict": 77, "temperature": 0.8, "num_ctx": 8192}  # params → options, client wins
    [row] = await p.rows()
    assert row["front"] == "ollama" and row["stream"] == 1


async def test_relay_to_ollama_sdk_and_usage(upstream, proxy):
    up = await upstream({"/api/chat": _ndjson("ollama/stream-tool-call-docs.ndjson", "random"),
                         "/api/generate": Reply(fixture_bytes("ollama/nonstream-text.json"))})
    p = await proxy(_config(up.url, "ollama"))
    c = _client(p)
    parts = [part async for part in await c.chat(model="chat", messages=[{"role": "user", "content": "x"}], tools=TOOLS, stream=True)]
    assert parts[0].message.tool_calls[0].function.arguments == {"city": "Tokyo"}
    r = await c.generate(model="chat", prompt="x", stream=False)
    assert r.done  # relayed as is (the fixture is a chat-shaped body)
    rows = await p.rows()
    assert [(x["prompt_tokens"], x["completion_tokens"]) for x in rows] == [(169, 15), (44, 4)]


async def test_relay_midstream_error_logged(upstream, proxy):
    name = "ollama/stream-error-midstream-docs.ndjson"
    up = await upstream({"/api/chat": _ndjson(name)})
    p = await proxy(_config(up.url, "ollama"))
    async with aiohttp.ClientSession() as s:
        async with s.post(p.url + "/api/chat", json={"model": "chat", "messages": [{"role": "user", "content": "x"}]}) as r:
            assert await r.read() == fixture_bytes(name)
    [row] = await p.rows()
    assert row["error"] and row["status"] >= 500


# ------------------------------------------------------------------ embeddings


async def test_embed_over_openai_and_ollama(upstream, proxy):
    emb = {"object": "list", "data": [{"object": "embedding", "index": 1, "embedding": [0.3]}, {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
           "model": "e", "usage": {"prompt_tokens": 5, "total_tokens": 5}}
    up = await upstream({"/v1/embeddings": Reply(orjson.dumps(emb))})
    p = await proxy(_config(up.url, "openai"))
    r = await _client(p).embed(model="emb", input=["a", "b"])
    assert r.embeddings == [[0.1, 0.2], [0.3]] and r.prompt_eval_count == 5 and r.model == "emb"
    assert up.seen[0].body == {"model": "upstream-embed", "input": ["a", "b"]}

    native = {"model": "upstream-embed", "embeddings": [[0.5, 0.25]], "total_duration": 1, "prompt_eval_count": 2}
    up2 = await upstream({"/api/embed": Reply(orjson.dumps(native))})
    p2 = await proxy(_config(up2.url, "ollama"))
    r = await _client(p2).embed(model="emb", input="hello")
    assert r.embeddings == [[0.5, 0.25]]
    assert up2.seen[0].body == {"model": "upstream-embed", "input": "hello"}
    row = (await p2.rows())[-1]  # both proxies share the test folder, so the log
    assert (row["endpoint"], row["stream"], row["prompt_tokens"]) == ("embed", 0, 2)
