"""OpenAI client → OpenAI-compatible backend, end to end through sockets, with the official SDK."""
from __future__ import annotations

import asyncio

import openai
import orjson
import pytest
from aiohttp import web

from conftest import Reply, fixture_bytes, openai_config

STREAMS = ["openai/stream-text-usage.sse", "openai/stream-tool-call-usage.sse", "openai/stream-text-japanese.sse",
           "openai/stream-tool-call-japanese-args.sse", "openai/stream-text-extra-chunk-after-usage.sse"]


def _sse(name: str, split=None, **kw) -> Reply:  # noqa: ANN001
    return Reply(fixture_bytes(name), content_type="text/event-stream; charset=utf-8", split=split, **kw)


def _expected_text(name: str) -> str:
    out = []
    for line in fixture_bytes(name).splitlines():
        if line.startswith(b"data: {"):
            for ch in orjson.loads(line[6:]).get("choices") or []:
                out.append(ch["delta"].get("content") or "")
    return "".join(out)


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("split", [None, "random", 1])
async def test_stream_text_reaches_sdk_intact(upstream, proxy, name, split):
    up = await upstream({"/v1/chat/completions": _sse(name, split)})
    p = await proxy(openai_config(up.url))
    client = p.openai()
    stream = await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
    text, calls, usage_seen = [], {}, False
    async for chunk in stream:
        if chunk.usage:
            usage_seen = True
        for ch in chunk.choices:
            text.append(ch.delta.content or "")
            for tc in ch.delta.tool_calls or []:
                calls[tc.index] = calls.get(tc.index, "") + (tc.function.arguments or "")
    assert "".join(text) == _expected_text(name)
    for args in calls.values():
        orjson.loads(args)  # the concatenated fragments are valid JSON
    assert not usage_seen, "the client did not ask for include_usage, so the usage chunk must not reach it"
    # ...but the upstream was asked for it, and the model name was rewritten
    sent = up.seen[0].body
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "gpt-4o-mini"
    [row] = await p.rows()
    assert row["status"] == 200 and row["stream"] == 1 and row["backend"] == "up"
    if b'"usage":{' in fixture_bytes(name):
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_a_streams_head_goes_out_with_its_first_event(upstream, proxy, monkeypatch, model):
    """The response head and the first piece leave in one send, relayed or translated (aiohttp sends a
    stream's head alone at ``prepare`` unless told otherwise: one more syscall per stream)."""
    sent: list[bytes] = []
    cls = asyncio.selector_events._SelectorSocketTransport
    for name in ("write", "writelines"):
        def spy(self, data, _orig=getattr(cls, name), _many=name == "writelines"):  # noqa: ANN001
            sent.append(b"".join(data) if _many else bytes(data))
            return _orig(self, data)
        monkeypatch.setattr(cls, name, spy)
    up = await upstream({"/v1/chat/completions": _sse("openai/stream-text-usage.sse"),
                         "/v1/messages": Reply(fixture_bytes("anthropic/stream-text.sse"), content_type="text/event-stream")})
    cfg = openai_config(up.url)
    cfg["backends"]["an"] = {"api": "anthropic", "url": up.url}
    cfg["models"]["claude"] = {"backend": "an", "model": "claude-haiku-4-5"}
    p = await proxy(cfg)
    stream = await p.openai().chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
    assert [c async for c in stream]
    heads = [w for w in sent if b"X-Accel-Buffering: no" in w]  # (only llmproxy's own answer has it)
    assert len(heads) == 1 and b"\r\n\r\n" in heads[0] and b"data: {" in heads[0].split(b"\r\n\r\n", 1)[1]


async def test_relay_is_byte_faithful_with_include_usage(upstream, proxy):
    name = "openai/stream-text-extra-chunk-after-usage.sse"
    up = await upstream({"/v1/chat/completions": _sse(name, "random")})
    p = await proxy(openai_config(up.url))
    import aiohttp

    async with aiohttp.ClientSession() as s:
        body = {"model": "gpt", "stream": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "x"}], "unknown_field": {"a": 1}}
        async with s.post(p.url + "/v1/chat/completions", json=body) as r:
            got = await r.read()
    assert got == fixture_bytes(name)  # untouched, extra chunk after usage included
    assert up.seen[0].body["unknown_field"] == {"a": 1}  # unknown fields pass through
    [row] = await p.rows()
    assert (row["prompt_tokens"], row["completion_tokens"]) == (13, 11)


async def test_usage_chunk_dropped_only_that_chunk(upstream, proxy):
    name = "openai/stream-text-extra-chunk-after-usage.sse"
    up = await upstream({"/v1/chat/completions": _sse(name, 7)})
    p = await proxy(openai_config(up.url))
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(p.url + "/v1/chat/completions", json={"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
            got = await r.read()
    events = [e for e in fixture_bytes(name).split(b"\n\n") if e.strip()]
    kept = [e for e in events if b'"usage":{' not in e]
    assert len(kept) == len(events) - 1
    assert got == b"\n\n".join(kept) + b"\n\n"


@pytest.mark.parametrize("name", ["openai/nonstream-text.json", "openai/nonstream-tool-call.json"])
async def test_nonstream_with_sdk(upstream, proxy, name):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes(name))})
    p = await proxy(openai_config(up.url, models={"gpt": {"backend": "up", "model": "gpt-4o-mini", "params": {"temperature": 0.2, "max_tokens": 5}}}))
    r = await p.openai().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=99,
                                                 tools=[{"type": "function", "function": {"name": "lookup_population", "parameters": {"type": "object", "properties": {}}}}])
    want = orjson.loads(fixture_bytes(name))
    assert r.choices[0].message.content == want["choices"][0]["message"]["content"]
    if r.choices[0].message.tool_calls:
        assert r.choices[0].message.tool_calls[0].id == "call_TTY8UFNo7rNCaOBUNtlRSvMG"
    sent = up.seen[0].body
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 99  # params merged under the client's values
    assert "stream_options" not in sent
    [row] = await p.rows()
    assert row["prompt_tokens"] == want["usage"]["prompt_tokens"]


async def test_embeddings_and_models(upstream, proxy):
    emb = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}], "model": "e", "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    up = await upstream({"/v1/embeddings": Reply(orjson.dumps(emb))})
    p = await proxy(openai_config(up.url, models={"gpt": {"backend": "up"}, "emb": {"backend": "up", "model": "text-embedding-3-small"}, "pat/*": {"backend": "up"}}, aliases={"e": "emb"}))
    c = p.openai()
    r = await c.embeddings.create(model="e", input="hello world")
    assert r.data[0].embedding == [0.1, 0.2]
    assert up.seen[0].body["model"] == "text-embedding-3-small"
    models = [m.id async for m in c.models.list()]
    assert models == ["gpt", "emb", "e"]  # models and aliases, not patterns
    m = await c.models.retrieve("E")
    assert m.id == "E" and m.owned_by == "up"
    with pytest.raises(openai.NotFoundError):
        await c.models.retrieve("nope")


async def test_failover_keeps_the_clients_own_body(upstream, proxy):
    """A second attempt relays what the client sent, not the first attempt's rewritten body."""
    bad = await upstream({"/v1/chat/completions": Reply(b'{"error": {"message": "down"}}', status=500)})
    good = await upstream({"/v1/chat/completions": _sse("openai/stream-text-usage.sse")})
    cfg = {
        "backends": {"bad": {"api": "openai", "url": bad.url + "/v1"}, "good": {"api": "openai", "url": good.url + "/v1"}},
        "models": {"gpt": {"routes": [{"backend": "bad", "model": "m-bad"}, {"backend": "good", "model": "m-good"}]}},
    }
    p = await proxy(cfg)
    stream = await p.openai().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
    usage_seen = [c.usage async for c in stream if c.usage]
    assert usage_seen == []  # the client did not ask for include_usage, on either attempt
    assert bad.seen[0].body["model"] == "m-bad" and good.seen[0].body["model"] == "m-good"
    assert good.seen[0].body["stream_options"] == {"include_usage": True}
    [row] = await p.rows()
    assert row["attempts"] == 2 and row["prompt_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_compressed_answer_is_decoded(upstream, proxy, stream):
    """Providers gzip their answers when the request accepts it (the recorded cassettes were stored so);
    the client must get plain JSON / SSE, and the log the usage read from it."""
    raw = fixture_bytes("openai/stream-text-usage.sse" if stream else "openai/nonstream-text.json")

    async def gzipped(request: web.Request) -> web.StreamResponse:
        resp = web.Response(body=raw, content_type="text/event-stream" if stream else "application/json")
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            resp.enable_compression(web.ContentCoding.gzip)
        return resp

    up = await upstream({"/v1/chat/completions": gzipped})
    p = await proxy(openai_config(up.url))
    c = p.openai()
    if stream:
        chunks = [ch async for ch in await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True)]
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text and up.seen[0].headers.get("Accept-Encoding", "").count("gzip")
    else:
        r = await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == orjson.loads(raw)["choices"][0]["message"]["content"]
    [row] = await p.rows()
    assert row["status"] == 200 and row["prompt_tokens"] > 0
