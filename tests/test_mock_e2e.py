"""llmproxy in front of its own emulator (``llmproxy mock``), one backend per api, driven by the openai SDK.

This is the demo path: every format's mock endpoints are encoded by llmproxy's front-door
translators and decoded again by its backend translators, so both directions meet here.
"""
from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiohttp import web

from llmproxy.mock import make_mock_app

BACKENDS = {"anthropic": "", "gemini": "", "ollama": "", "openai": "/v1"}
MODELS = {"claude": ("anthropic", "claude-sonnet-4"), "gem": ("gemini", "gemini-2.5-flash"),
          "llama": ("ollama", "llama3.2"), "gpt": ("openai", "gpt-4o-mini")}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ECHO = "Hello from the llmproxy mock! You said: "


@pytest.fixture
async def mock(aiohttp_server):
    """The emulator on a real socket, recording (path, JSON body) of every request it gets."""
    seen: list[tuple[str, dict | None]] = []

    @web.middleware
    async def record(request: web.Request, handler):  # noqa: ANN001, ANN202
        raw = await request.read()
        seen.append((request.path, orjson.loads(raw) if raw else None))
        return await handler(request)

    app = make_mock_app(chunks=3)
    app.middlewares.append(record)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), seen


async def _proxy(proxy, url: str):  # noqa: ANN001, ANN202
    backends = {api: {"api": api, "url": url + suffix} for api, suffix in BACKENDS.items()}
    backends["anthropic"]["headers"] = {"anthropic-version": "2023-06-01"}
    models = {name: {"backend": api, "model": model} for name, (api, model) in MODELS.items()}
    models.update({"gem-emb": {"backend": "gemini", "model": "text-embedding-004"}, "oll-emb": {"backend": "ollama", "model": "all-minilm"},
                   "gpt-emb": {"backend": "openai", "model": "text-embedding-3-small"}})
    return await proxy({"backends": backends, "models": models})


def _fold(chunks) -> dict:  # noqa: ANN001
    out = {"text": "", "reasoning": "", "blocks": [], "calls": {}, "finish": None, "usage": []}
    for c in chunks:
        if c.usage:
            out["usage"].append(c.usage)
        for ch in c.choices:
            d = ch.delta
            out["text"] += d.content or ""
            out["reasoning"] += getattr(d, "reasoning_content", None) or ""
            out["blocks"] += getattr(d, "thinking_blocks", None) or []
            for tc in d.tool_calls or []:
                slot = out["calls"].setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
            out["finish"] = ch.finish_reason or out["finish"]
    return out


@pytest.mark.parametrize("model", list(MODELS))
async def test_chat_stream_tools_reasoning_through_mock(proxy, mock, model):
    url, seen = mock
    p = await _proxy(proxy, url)
    c = p.openai()
    api, upstream_model = MODELS[model]

    r = await c.chat.completions.create(model=model, messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == ECHO + "hello there" and r.choices[0].finish_reason == "stop"
    assert r.model == upstream_model and r.usage.prompt_tokens > 0 and r.usage.completion_tokens == 9

    stream = await c.chat.completions.create(model=model, messages=[{"role": "user", "content": "stream please"}], stream=True,
                                             stream_options={"include_usage": True})
    got = _fold([chunk async for chunk in stream])
    assert (got["text"], got["finish"]) == (ECHO + "stream please", "stop")
    [usage] = got["usage"]
    assert usage.completion_tokens == 9

    stream = await c.chat.completions.create(model=model, messages=[{"role": "user", "content": "no usage"}], stream=True)
    assert _fold([chunk async for chunk in stream])["usage"] == []

    # turn 1: reasoning, then a tool call; turn 2: the tool result goes back, with the thinking blocks
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    stream = await c.chat.completions.create(model=model, messages=msgs, tools=TOOLS, stream=True, reasoning_effort="low")
    got = _fold([chunk async for chunk in stream])
    assert got["finish"] == "tool_calls" and got["reasoning"].startswith("The mock thinks")
    [call] = got["calls"].values()
    assert call["id"] and call["name"] == "get_weather" and orjson.loads(call["arguments"]) == {"city": "mock"}
    assistant = {"role": "assistant", "content": None, "reasoning_content": got["reasoning"], "tool_calls": [{"id": call["id"], "type": "function",
                 "function": {"name": call["name"], "arguments": call["arguments"]}}]}
    if got["blocks"]:
        assistant["thinking_blocks"] = got["blocks"]
    msgs += [assistant, {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    r = await c.chat.completions.create(model=model, messages=msgs, tools=TOOLS)
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == ECHO + "weather in Paris?"
    _check_turn2(api, seen[-1][1], call)

    rows = await p.rows()
    assert [(row["status"], row["backend"], row["upstream_model"]) for row in rows] == [(200, api, upstream_model)] * 5
    assert [row["stream"] for row in rows] == [0, 1, 1, 1, 0]
    assert all(row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 for row in rows)


def _check_turn2(api: str, body: dict, call: dict) -> None:
    """The second turn reached the emulator in the backend's own shape."""
    if api == "anthropic":
        blocks = body["messages"][1]["content"]
        assert [b["type"] for b in blocks] == ["thinking", "tool_use"] and blocks[0]["signature"]
        assert body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": call["id"], "content": "sunny"}
    elif api == "gemini":
        assert body["contents"][1]["parts"][0]["functionCall"]["name"] == "get_weather"
        assert body["contents"][2]["parts"][0]["functionResponse"] == {"name": "get_weather", "response": {"result": "sunny"}}
    elif api == "ollama":
        assert body["messages"][1]["thinking"].startswith("The mock thinks")
        assert body["messages"][2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": call["id"]}
    else:
        assert body["messages"][2] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}


@pytest.mark.parametrize("model", ["gem-emb", "oll-emb", "gpt-emb"])
async def test_embeddings_through_mock(proxy, mock, model):
    url, seen = mock
    p = await _proxy(proxy, url)
    r = await p.openai().embeddings.create(model=model, input=["one two", "three"], dimensions=4)
    assert [d.index for d in r.data] == [0, 1] and all(len(d.embedding) == 4 for d in r.data)
    assert seen[-1][0] == {"gem-emb": "/v1beta/models/text-embedding-004:batchEmbedContents", "oll-emb": "/api/embed",
                           "gpt-emb": "/v1/embeddings"}[model]


async def test_mock_model_lists_in_each_format(mock):
    url, _ = mock
    async with aiohttp.ClientSession() as s:
        async def get(path: str, **headers: str) -> dict:
            async with s.get(url + path, headers=headers) as r:
                assert r.status == 200
                return await r.json()

        assert [m["id"] for m in (await get("/v1/models"))["data"]] == ["mock-small", "mock-large"]
        ant = await get("/v1/models", **{"anthropic-version": "2023-06-01"})
        assert ant["data"][0]["type"] == "model" and ant["has_more"] is False and ant["first_id"] == "mock-small"
        gem = await get("/v1beta/models")
        assert gem["models"][0]["name"] == "models/mock-small" and "generateContent" in gem["models"][0]["supportedGenerationMethods"]
        tags = await get("/api/tags")
        assert all(m["name"] == m["model"] for m in tags["models"]) and tags["models"][0]["details"]["family"] == "mock"
        async with s.post(url + "/v1beta/models/x:countTokens", json={}) as r:
            assert r.status == 404 and (await r.json())["error"]["status"] == "NOT_FOUND"


async def test_mock_speaks_to_the_native_sdks(mock):
    """The anthropic and ollama SDKs read the emulator's lists, chats and streams."""
    import anthropic
    import ollama

    url, _ = mock
    ac = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
    try:
        assert [m.id async for m in ac.models.list()] == ["mock-small", "mock-large"]
        msg = await ac.messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": "hey"}])
        assert msg.content[0].text == ECHO + "hey" and msg.stop_reason == "end_turn"
        async with ac.messages.stream(model="m", max_tokens=50, messages=[{"role": "user", "content": "hey"}],
                                      thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
            final = await stream.get_final_message()
        assert [b.type for b in final.content] == ["thinking", "text"] and final.content[0].signature
    finally:
        await ac.close()
    oc = ollama.AsyncClient(host=url)
    try:
        assert [m.model for m in (await oc.list()).models] == ["mock-small", "mock-large"]
        emb = await oc.embed(model="m", input=["a", "b"])
        assert len(emb.embeddings) == 2
        parts = [part.message.content async for part in await oc.chat(model="m", messages=[{"role": "user", "content": "yo"}], stream=True)]
        assert "".join(parts) == ECHO + "yo"
    finally:
        await oc._client.aclose()


async def test_mock_never_calls_an_agent_tool(proxy, mock):
    """Claude Code offers Agent first, and each agent it starts offers Agent again: a mock calling it started agents
    without end. It calls the first other tool, and answers in text when only agent tools are offered."""
    url, _ = await _proxy_url(proxy, mock)
    agent = {"type": "function", "function": {"name": "Agent", "parameters": {"type": "object", "properties": {"prompt": {"type": "string"}}}}}
    bash = {"type": "function", "function": {"name": "Bash", "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}
    async with aiohttp.ClientSession() as s:
        for tools, want in (([agent, bash], "Bash"), ([agent], None)):
            async with s.post(url + "/v1/chat/completions", json={"model": "claude", "tools": tools,
                                                                  "messages": [{"role": "user", "content": "Say hello"}]}) as r:
                msg = (await r.json())["choices"][0]["message"]
            assert [c["function"]["name"] for c in msg.get("tool_calls") or []] == ([want] if want else [])
            assert want or msg["content"].startswith(ECHO)


async def _proxy_url(proxy, mock):  # noqa: ANN001, ANN202
    url, seen = mock
    p = await _proxy(proxy, url)
    return p.url, seen
