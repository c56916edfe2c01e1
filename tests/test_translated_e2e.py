"""OpenAI SDK → llmproxy → Anthropic / Gemini / Ollama backends, end to end through real sockets.

The fake upstream replays the recorded fixtures (split at random and one byte at a time); what the
SDK receives is checked against the golden hub output of the translator tests (tests/golden/), so a
translation bug and a plumbing bug both show here.  Synthesised tool-call ids embed the response id,
which differs per request: the golden id is rewritten with the id the client actually got.
"""
from __future__ import annotations

from pathlib import Path

import aiohttp
import openai
import orjson
import pytest

from conftest import FIXTURES, Reply, fixture_bytes

GOLDEN = Path(__file__).parent / "golden"
MODEL = {"anthropic": "claude", "gemini": "gem", "ollama": "llama"}
UPSTREAM_MODEL = {"anthropic": "claude-test", "gemini": "gemini-test", "ollama": "llama3.2"}  # as in the golden files
GOLDEN_ID = {"anthropic": "msg_test", "gemini": "chatcmpl-gem1", "ollama": "chatcmpl-ol1"}
GOLDEN_CREATED = {"anthropic": 1700000000, "gemini": 1700000000, "ollama": 1751920939}
SECRET = "sk-upstream-secret-0123456789"
USER = [{"role": "user", "content": "hi"}]


def config(url: str, models: dict | None = None) -> dict:
    """One backend per api at the fake upstream; ``max_attempts: 1`` so failover retries stay out of these tests."""
    models = models or {MODEL[f]: {"backend": f, "model": UPSTREAM_MODEL[f]} for f in MODEL}
    return {
        "backends": {
            "anthropic": {"api": "anthropic", "url": url, "headers": {"x-api-key": SECRET, "anthropic-version": "2023-06-01"}},
            "gemini": {"api": "gemini", "url": url, "headers": {"x-goog-api-key": SECRET}},
            "ollama": {"api": "ollama", "url": url},
        },
        # routes form: config.py ignores max_attempts on a model given with `backend:` directly
        "models": {name: {"routes": [m], "max_attempts": 1} for name, m in models.items()},
    }


def chat_path(fmt: str, stream: bool, model: str | None = None) -> str:
    if fmt == "anthropic":
        return "/v1/messages"
    if fmt == "gemini":
        return f"/v1beta/models/{model or UPSTREAM_MODEL[fmt]}:{'streamGenerateContent' if stream else 'generateContent'}"
    return "/api/chat"


def wire(fmt: str, name: str) -> bytes:
    """A fixture as the bytes the provider sends; data-only ``.chunks.jsonl`` files get their framing back."""
    raw = fixture_bytes(f"{fmt}/{name}")
    if not name.endswith(".chunks.jsonl"):
        return raw
    lines = [line for line in raw.splitlines() if line.strip()]
    if fmt == "anthropic":
        return b"".join(b"event: " + orjson.loads(line)["type"].encode() + b"\ndata: " + line + b"\n\n" for line in lines)
    return b"".join(b"data: " + line + b"\r\n\r\n" for line in lines)


CTYPE = {"anthropic": "text/event-stream; charset=utf-8", "gemini": "text/event-stream", "ollama": "application/x-ndjson"}


def stream_reply(fmt: str, name: str, split="random", **kw) -> Reply:  # noqa: ANN001, ANN003
    return Reply(wire(fmt, name), content_type=CTYPE[fmt], split=split, **kw)


def golden_name(fmt: str, name: str) -> str:
    if fmt == "anthropic":
        return name + ".jsonl"
    return name.removesuffix(".chunks.jsonl").removesuffix(".sse").removesuffix(".ndjson") + ".jsonl"


def _fixtures(fmt: str, *suffixes: str) -> list[str]:
    return sorted(p.name for p in (FIXTURES / fmt).iterdir() if p.name.startswith(("stream-", "vertex-stream-")) and p.name.endswith(suffixes))


# error streams (and an excerpt cut before done:true) are checked by test_midstream_error_ends_stream_cleanly
NOT_CLEAN = {"stream-error-event-docs.sse", "stream-error-midstream-docs.ndjson", "stream-tool-call-blog-excerpt.ndjson"}
STREAMS = [(f, n) for f, sfx in (("anthropic", (".sse", ".chunks.jsonl")), ("gemini", (".sse", ".chunks.jsonl")), ("ollama", (".ndjson",)))
           for n in _fixtures(f, *sfx) if n not in NOT_CLEAN]
NONSTREAMS = [(f, p.name) for f in MODEL for p in sorted((FIXTURES / f).glob("nonstream-*.json"))]
ERRORS = [(f, p.name) for f in MODEL for p in sorted((FIXTURES / f).glob("error-*.json"))]


def fold(chunks: list[dict]) -> dict:
    """What a client makes of a stream of chunk dicts: text, reasoning, tool calls, finish, usage chunks."""
    out = {"text": "", "reasoning": "", "calls": {}, "finish": None, "usage": [], "blocks": []}
    for c in chunks:
        if c.get("usage"):
            out["usage"].append(c["usage"])
        for ch in c.get("choices") or []:
            d = ch.get("delta") or {}
            out["text"] += d.get("content") or ""
            out["reasoning"] += d.get("reasoning_content") or ""
            out["blocks"] += d.get("thinking_blocks") or []
            for tc in d.get("tool_calls") or []:
                slot = out["calls"].setdefault(tc["index"], {"id": None, "name": "", "args": "", "extra": None})
                slot["id"] = tc.get("id") or slot["id"]
                slot["extra"] = tc.get("extra_content") or slot["extra"]
                fn = tc.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["args"] += fn.get("arguments") or ""
            if ch.get("finish_reason"):
                out["finish"] = ch["finish_reason"]
    return out


def golden_lines(fmt: str, name: str, response_id: str) -> list[dict]:
    """The golden hub chunks with the golden response id replaced by the one this request got."""
    raw = (GOLDEN / fmt / golden_name(fmt, name)).read_bytes().replace(GOLDEN_ID[fmt].encode(), response_id.encode())
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


def _usage_cols(u: dict) -> tuple:
    return u["prompt_tokens"], u["completion_tokens"], u["prompt_tokens_details"]["cached_tokens"], u["completion_tokens_details"]["reasoning_tokens"]


# ---------------------------------------------------------------------------------- streams


@pytest.mark.parametrize(("fmt", "name"), STREAMS, ids=[f"{f}/{n}" for f, n in STREAMS])
@pytest.mark.parametrize(("split", "include_usage"), [("random", True), ("random", False), (1, True)], ids=["random+usage", "random", "bytewise+usage"])
async def test_stream_through_sdk(upstream, proxy, fmt, name, split, include_usage):
    up = await upstream({chat_path(fmt, True): stream_reply(fmt, name, split)})
    p = await proxy(config(up.url))
    kw = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = await p.openai().chat.completions.create(model=MODEL[fmt], messages=USER, stream=True, **kw)
    got = [chunk async for chunk in stream]
    rid = got[0].id
    assert rid.startswith("chatcmpl-") and all(c.id == rid for c in got)
    assert {c.model for c in got} == {UPSTREAM_MODEL[fmt]}
    want = fold(golden_lines(fmt, name, rid))
    seen = fold([c.model_dump(exclude_unset=True) for c in got])
    assert seen["text"] == want["text"]
    assert seen["reasoning"] == want["reasoning"]
    assert seen["blocks"] == want["blocks"]  # Anthropic thinking signatures / redacted thinking
    assert seen["calls"] == want["calls"]  # ids, names, argument JSON, Gemini thought signatures
    for call in seen["calls"].values():
        assert isinstance(orjson.loads(call["args"]), dict)
        assert call["id"] and len({c["id"] for c in seen["calls"].values()}) == len(seen["calls"])
    assert seen["finish"] == want["finish"]
    [want_usage] = want["usage"]
    if include_usage:
        [usage] = seen["usage"]
        assert got[-1].choices == [] and got[-1].usage is not None
        assert _usage_cols(usage) == _usage_cols(want_usage)
    else:
        assert seen["usage"] == [] and all(c.usage is None for c in got)
    # reasoning is reachable the way a user of the SDK would reach it
    if want["reasoning"]:
        assert "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in got if c.choices) == want["reasoning"]
    [row] = await p.rows()
    assert (row["status"], row["stream"], row["backend"], row["upstream_model"]) == (200, 1, fmt, UPSTREAM_MODEL[fmt])
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"], row["reasoning_tokens"]) == _usage_cols(want_usage)
    assert row["error"] is None
    _check_upstream_request(fmt, up.seen[0], stream=True)


def _check_upstream_request(fmt: str, seen, stream: bool) -> None:  # noqa: ANN001
    body = seen.body
    if fmt == "anthropic":
        assert seen.headers["x-api-key"] == SECRET and seen.headers["anthropic-version"] == "2023-06-01"
        assert body["model"] == "claude-test" and body["max_tokens"] > 0 and body.get("stream", False) is stream
        assert body["messages"] == [{"role": "user", "content": "hi"}]
    elif fmt == "gemini":
        assert seen.headers["x-goog-api-key"] == SECRET
        assert seen.query == ("alt=sse" if stream else "")
        assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}] and "model" not in body
    else:
        assert body["model"] == "llama3.2" and body["stream"] is stream
        assert body["messages"] == [{"role": "user", "content": "hi"}]


# ---------------------------------------------------------------------------------- non-stream


@pytest.mark.parametrize(("fmt", "name"), NONSTREAMS, ids=[f"{f}/{n}" for f, n in NONSTREAMS])
async def test_nonstream_through_sdk(upstream, proxy, fmt, name):
    up = await upstream({chat_path(fmt, False): Reply(fixture_bytes(f"{fmt}/{name}"), split="random")})
    p = await proxy(config(up.url))
    raw = await p.openai().chat.completions.with_raw_response.create(model=MODEL[fmt], messages=USER)
    body = orjson.loads(raw.content)
    golden = (GOLDEN / fmt / name).read_bytes().replace(GOLDEN_ID[fmt].encode(), body["id"].encode())
    want = orjson.loads(golden)
    assert body["id"].startswith("chatcmpl-") and body["created"] > GOLDEN_CREATED[fmt]
    want["created"] = body["created"]
    assert body == want  # the whole hub response, byte-equivalent to the reviewed golden file
    r = raw.parse()  # ... and the SDK reads it
    msg, wmsg = r.choices[0].message, want["choices"][0]["message"]
    assert msg.content == wmsg["content"] and r.choices[0].finish_reason == want["choices"][0]["finish_reason"]
    assert getattr(msg, "reasoning_content", None) == wmsg.get("reasoning_content")
    assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls or []] == [
        (t["id"], t["function"]["name"], t["function"]["arguments"]) for t in wmsg.get("tool_calls") or []]
    assert r.usage.prompt_tokens == want["usage"]["prompt_tokens"]
    [row] = await p.rows()
    assert (row["status"], row["stream"], row["prompt_tokens"], row["completion_tokens"]) == (200, 0, *_usage_cols(want["usage"])[:2])
    assert 0 < row["first_byte_ms"] <= row["total_ms"]
    _check_upstream_request(fmt, up.seen[0], stream=False)


# ---------------------------------------------------------------------------------- errors


def _error_status(fmt: str, name: str) -> int:
    return {"error-shape-docs.json": 404, "error-docs.json": 500}.get(name) or int(name.split("-")[1])


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
@pytest.mark.parametrize(("fmt", "name"), ERRORS, ids=[f"{f}/{n}" for f, n in ERRORS])
async def test_upstream_error_in_openai_shape(upstream, proxy, fmt, name, stream):
    status = _error_status(fmt, name)
    up = await upstream({chat_path(fmt, stream): Reply(fixture_bytes(f"{fmt}/{name}"), status=status)})
    p = await proxy(config(up.url))
    want = orjson.loads((GOLDEN / fmt / name).read_bytes())
    with pytest.raises(openai.APIStatusError) as info:
        await p.openai().chat.completions.create(model=MODEL[fmt], messages=USER, stream=stream)
    e = info.value
    assert e.status_code == want["status"]
    assert e.body["message"] == want["message"]  # the provider's message, in {"error": {"message", "type", ...}}
    assert e.body["type"] == want["type"]
    assert SECRET not in str(e.body)
    retry = want.get("retry_after")
    assert e.response.headers.get("Retry-After") == (str(int(-(-retry // 1))) if retry else None)
    [row] = await p.rows()
    assert row["status"] == want["status"] and row["error"] == want["message"]


@pytest.mark.parametrize(("fmt", "status", "body", "want_status", "want_message"), [
    ("anthropic", 529, fixture_bytes("anthropic/error-529-overloaded.json"), 529, "Overloaded"),
    ("gemini", 429, fixture_bytes("gemini/error-429-resource-exhausted.json"), 429, "You exceeded your current quota"),
    ("ollama", 404, b'{"error":"model \'llama3.2\' not found"}', 404, "model 'llama3.2' not found"),
], ids=["anthropic-529", "gemini-429", "ollama-404"])
async def test_upstream_status_and_retry_after(upstream, proxy, fmt, status, body, want_status, want_message):
    """Retry-After from the upstream reaches the client; statuses keep their meaning."""
    up = await upstream({chat_path(fmt, True): Reply(body, status=status, headers={"Retry-After": "7"})})
    p = await proxy(config(up.url))
    with pytest.raises(openai.APIStatusError) as info:
        await p.openai().chat.completions.create(model=MODEL[fmt], messages=USER, stream=True)
    assert info.value.status_code == want_status
    assert info.value.body["message"].startswith(want_message)
    assert info.value.response.headers["Retry-After"] == "7"


async def _raw_stream(p, model: str) -> bytes:  # noqa: ANN001
    async with aiohttp.ClientSession() as s:
        async with s.post(p.url + "/v1/chat/completions", json={"model": model, "stream": True, "messages": USER}) as r:
            assert r.status == 200
            return await r.read()


@pytest.mark.parametrize(("fmt", "tail", "message", "status"), [
    ("anthropic", wire("anthropic", "stream-error-event-docs.sse"), "Overloaded", 529),
    ("ollama", b'{"error":"an error was encountered while running the model"}\n', "an error was encountered while running the model", 502),
    ("gemini", b"", "Gemini stream ended", 502),
], ids=["anthropic-event-error", "ollama-error-line", "gemini-eof-without-finish"])
@pytest.mark.parametrize("split", ["random", None], ids=["random-reads", "one-read"])
async def test_midstream_error_ends_stream_cleanly(upstream, proxy, fmt, tail, message, status, split):
    """Text already sent, then the upstream fails: the client gets a final ``data: {"error":…}`` and a clean end.
    In one read with the error too, the text the events before it made still goes out first."""
    if fmt == "anthropic":  # a real stream cut after its first text delta, then the documented error event
        events = wire(fmt, "stream-text.sse").split(b"\n\n")
        head = b"\n\n".join(e for e in events if b"message_delta" not in e and b"message_stop" not in e and b"content_block_stop" not in e) + b"\n\n"
    elif fmt == "ollama":
        head = b"".join(line + b"\n" for line in wire(fmt, "stream-text-tail.ndjson").splitlines()[:3])
    else:
        head = wire(fmt, "stream-text.sse").split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        assert b"finishReason" not in head
    up = await upstream({chat_path(fmt, True): Reply(head + tail, content_type=CTYPE[fmt], split=split)})
    p = await proxy(config(up.url))
    raw = await _raw_stream(p, MODEL[fmt])
    events = [e for e in raw.split(b"\n\n") if e]
    assert raw.endswith(b"\n\n") and b"[DONE]" not in raw
    last = orjson.loads(events[-1].removeprefix(b"data: "))
    assert last["error"]["message"].startswith(message) and set(last) == {"error"}
    text = "".join((orjson.loads(e[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or "" for e in events[:-1])
    assert text  # what came before the error reached the client
    # the SDK raises on the error event after yielding the text
    stream = await p.openai().chat.completions.create(model=MODEL[fmt], messages=USER, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match=message[:20]):
        async for chunk in stream:
            seen.extend(ch.delta.content or "" for ch in chunk.choices)
    assert "".join(seen) == text
    rows = await p.rows()
    assert [(r["status"], r["error"][: len(message)]) for r in rows] == [(status, message)] * 2


# ---------------------------------------------------------------------------------- two-turn tool conversations


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


async def _stream_turn(client, model: str, messages: list, tools: list) -> tuple[dict, dict]:  # noqa: ANN001
    """One streamed turn through the SDK; returns the folded answer and the assistant message to send back."""
    stream = await client.chat.completions.create(model=model, messages=messages, tools=tools, stream=True)
    seen = fold([c.model_dump(exclude_unset=True) async for c in stream])
    calls = []
    for k in sorted(seen["calls"]):
        c = seen["calls"][k]
        call = {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
        if c["extra"]:
            call["extra_content"] = c["extra"]  # Gemini's thought signature, sent back as received
        calls.append(call)
    return seen, {"role": "assistant", "content": seen["text"] or None, "tool_calls": calls}


async def test_two_turn_tools_anthropic(upstream, proxy):
    up = await upstream({"/v1/messages": stream_reply("anthropic", "stream-tool-use-docs.sse")})
    p = await proxy(config(up.url))
    c = p.openai()
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather in SF?"}]
    seen, assistant = await _stream_turn(c, "claude", msgs, TOOLS)
    assert seen["finish"] == "tool_calls"
    [call] = assistant["tool_calls"]
    assert call["id"].startswith("toolu_") and call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    up.routes["/v1/messages"] = stream_reply("anthropic", "stream-text-after-tool-result.sse")
    msgs += [assistant, {"role": "tool", "tool_call_id": call["id"], "content": "68F and sunny"}]
    seen2, _ = await _stream_turn(c, "claude", msgs, TOOLS)
    assert seen2["finish"] == "stop" and seen2["text"]
    sent = up.seen[1].body
    assert sent["system"] == "be brief" and sent["tools"][0]["name"] == "get_weather"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    tool_use = [b for b in sent["messages"][1]["content"] if b["type"] == "tool_use"]
    assert tool_use == [{"type": "tool_use", "id": call["id"], "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "fahrenheit"}}]
    [result] = sent["messages"][2]["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == call["id"]
    assert result["content"] in ("68F and sunny", [{"type": "text", "text": "68F and sunny"}])
    rows = await p.rows()
    assert [r["status"] for r in rows] == [200, 200] and all(r["completion_tokens"] for r in rows)


async def test_two_turn_tools_gemini_with_thought_signature(upstream, proxy):
    name = "stream-function-call-thought-signature.sse"
    up = await upstream({chat_path("gemini", True): stream_reply("gemini", name)})
    p = await proxy(config(up.url))
    c = p.openai()
    tools = [{"type": "function", "function": {"name": "get_country", "parameters": {"type": "object", "properties": {}}}}]
    msgs = [{"role": "user", "content": "which country?"}]
    seen, assistant = await _stream_turn(c, "gem", msgs, tools)
    assert seen["finish"] == "tool_calls"
    [call] = assistant["tool_calls"]
    sig = call["extra_content"]["google"]["thought_signature"]
    assert sig and call["function"]["name"] == "get_country" and call["id"].startswith("call_chatcmpl-")
    up.routes[chat_path("gemini", True)] = stream_reply("gemini", "stream-text-after-function-response.sse")
    msgs += [assistant, {"role": "tool", "tool_call_id": call["id"], "content": '{"country": "Mexico"}'}]
    seen2, _ = await _stream_turn(c, "gem", msgs, tools)
    assert seen2["finish"] == "stop" and "°" in seen2["text"]
    sent = up.seen[1].body
    assert [t["role"] for t in sent["contents"]] == ["user", "model", "user"]
    [fc_part] = sent["contents"][1]["parts"]
    assert fc_part["functionCall"]["name"] == "get_country" and fc_part["thoughtSignature"] == sig
    [fr_part] = sent["contents"][2]["parts"]
    assert fr_part["functionResponse"]["name"] == "get_country"
    assert fr_part["functionResponse"]["response"] == {"country": "Mexico"}
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_country"


async def test_two_turn_tools_gemini_without_signature_nonstream(upstream, proxy):
    up = await upstream({chat_path("gemini", True): stream_reply("gemini", "stream-function-call.sse")})
    p = await proxy(config(up.url))
    c = p.openai()
    msgs = [{"role": "user", "content": "weather?"}]
    seen, assistant = await _stream_turn(c, "gem", msgs, TOOLS)
    assert assistant["tool_calls"] and all("extra_content" not in t for t in assistant["tool_calls"])
    up.routes[chat_path("gemini", False)] = Reply(fixture_bytes("gemini/nonstream-text.json"))
    msgs += [assistant] + [{"role": "tool", "tool_call_id": t["id"], "content": "sunny"} for t in assistant["tool_calls"]]
    r = await c.chat.completions.create(model="gem", messages=msgs, tools=TOOLS)
    assert r.choices[0].finish_reason == "stop"
    sent = up.seen[1].body
    calls = [part["functionCall"]["name"] for part in sent["contents"][1]["parts"]]
    results = [part["functionResponse"] for part in sent["contents"][2]["parts"]]
    assert [fr["name"] for fr in results] == calls and all(fr["response"] == {"result": "sunny"} for fr in results)
    assert all("thoughtSignature" not in part for part in sent["contents"][1]["parts"])


async def test_two_turn_tools_ollama(upstream, proxy):
    up = await upstream({"/api/chat": stream_reply("ollama", "stream-tool-call-docs.ndjson")})
    p = await proxy(config(up.url))
    c = p.openai()
    msgs = [{"role": "user", "content": "weather in Tokyo?"}]
    seen, assistant = await _stream_turn(c, "llama", msgs, TOOLS)
    assert seen["finish"] == "tool_calls"  # Ollama said "stop"
    [call] = assistant["tool_calls"]
    assert call["function"]["name"] == "get_weather" and orjson.loads(call["function"]["arguments"]) == {"city": "Tokyo"}
    up.routes["/api/chat"] = Reply(fixture_bytes("ollama/nonstream-after-tool-result-docs.json"))
    msgs += [assistant, {"role": "tool", "tool_call_id": call["id"], "content": "11 degrees celsius"}]
    r = await c.chat.completions.create(model="llama", messages=msgs, tools=TOOLS)
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content
    sent = up.seen[1].body
    assert sent["stream"] is False and sent["tools"] == TOOLS
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    assert sent["messages"][1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Tokyo"}}
    tool = sent["messages"][2]
    assert tool["tool_name"] == "get_weather" and tool["content"] == "11 degrees celsius"


# ---------------------------------------------------------------------------------- URL safety, embeddings


@pytest.mark.parametrize("model", ["gemini/../../x", "gemini/a%2Fb", "gemini/a/b", "gemini/x?alt=json", "gemini/x#frag",
                                   "gemini/x:streamGenerateContent", "gemini/..", "gemini/%2e%2e", "gemini/ x"])
async def test_gemini_model_cannot_escape_its_path(upstream, proxy, model):
    up = await upstream({})
    p = await proxy(config(up.url))
    c = p.openai()
    with pytest.raises(openai.BadRequestError) as info:
        await c.chat.completions.create(model=model, messages=USER)
    assert "model" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        await c.embeddings.create(model=model, input="x")
    assert up.seen == []  # nothing reached the upstream at all
    rows = await p.rows()
    assert [r["status"] for r in rows] == [400, 400]


@pytest.mark.parametrize(("model", "path"), [("gemini/gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent"),
                                             ("gemini/models/gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent"),
                                             ("gemini/tunedModels/my-tune.v2", "/v1beta/tunedModels/my-tune.v2:generateContent")])
async def test_gemini_passthrough_model_reaches_its_path(upstream, proxy, model, path):
    up = await upstream({path: Reply(fixture_bytes("gemini/nonstream-text.json"))})
    p = await proxy(config(up.url))
    r = await p.openai().chat.completions.create(model=model, messages=USER)
    assert r.choices[0].message.content
    assert [(s.path, s.query) for s in up.seen] == [(path, "")]


async def test_embeddings_gemini_batch(upstream, proxy):
    answer = {"embeddings": [{"values": [0.1, -0.2, 0.3]}, {"values": [0.4, 0.5, -0.6]}]}
    up = await upstream({"/v1beta/models/text-embedding-004:batchEmbedContents": Reply(orjson.dumps(answer))})
    p = await proxy(config(up.url, models={"emb": {"backend": "gemini", "model": "text-embedding-004"}}))
    r = await p.openai().embeddings.create(model="emb", input=["hello", "world"], dimensions=3)
    assert [d.embedding for d in r.data] == [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]] and [d.index for d in r.data] == [0, 1]
    sent = up.seen[0]
    assert sent.headers["x-goog-api-key"] == SECRET
    assert sent.body == {"requests": [{"model": "models/text-embedding-004", "outputDimensionality": 3, "content": {"parts": [{"text": t}]}}
                                      for t in ("hello", "world")]}
    [row] = await p.rows()
    assert (row["status"], row["backend"], row["endpoint"]) == (200, "gemini", "embeddings")


async def test_embeddings_ollama(upstream, proxy):
    answer = {"model": "all-minilm", "embeddings": [[0.01, 0.02], [0.03, 0.04]], "total_duration": 1, "prompt_eval_count": 6}
    up = await upstream({"/api/embed": Reply(orjson.dumps(answer))})
    p = await proxy(config(up.url, models={"emb": {"backend": "ollama", "model": "all-minilm"}}))
    r = await p.openai().embeddings.create(model="emb", input=["a b c", "d e f"])
    assert [d.embedding for d in r.data] == [[0.01, 0.02], [0.03, 0.04]]
    assert r.usage.prompt_tokens == 6
    assert up.seen[0].body == {"model": "all-minilm", "input": ["a b c", "d e f"]}
    [row] = await p.rows()
    assert (row["status"], row["prompt_tokens"], row["endpoint"]) == (200, 6, "embeddings")


async def test_embeddings_ollama_error(upstream, proxy):
    up = await upstream({"/api/embed": Reply(b'{"error":"model \\"nomic\\" not found, try pulling it first"}', status=404)})
    p = await proxy(config(up.url, models={"emb": {"backend": "ollama", "model": "nomic"}}))
    with pytest.raises(openai.NotFoundError) as info:
        await p.openai().embeddings.create(model="emb", input="x")
    assert "try pulling it first" in info.value.body["message"]


async def test_params_price_and_cache_tokens_anthropic(upstream, proxy):
    """Route params merge under the client's values; cache reads and writes reach the row and the cost."""
    up = await upstream({"/v1/messages": Reply(fixture_bytes("anthropic/nonstream-cache-usage.json"))})
    price = {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}
    p = await proxy(config(up.url, models={"claude": {"backend": "anthropic", "model": "claude-test", "price": price,
                                                      "params": {"max_tokens": 8192, "temperature": 0.5, "top_p": 0.9}}}))
    r = await p.openai().chat.completions.create(model="claude", messages=USER, max_tokens=100, top_p=0.8)
    assert r.usage.prompt_tokens == 3 + 418 + 1111 and r.usage.prompt_tokens_details.cached_tokens == 1111
    sent = up.seen[0].body
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (100, 0.5, 0.8)
    [row] = await p.rows()
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (1532, 1111, 418)
    want = (3 * 3 + 1111 * 0.3 + 418 * 3.75 + row["completion_tokens"] * 15) / 1_000_000
    assert row["cost_usd"] == pytest.approx(want)


@pytest.mark.parametrize("fmt, provider", [("anthropic", "Anthropic"), ("gemini", "Gemini"), ("ollama", "Ollama")])
async def test_a_stream_event_that_is_not_json_is_a_502_naming_the_provider(fmt, provider):
    from llmproxy.errors import ProxyError
    from llmproxy.sse import Event
    from llmproxy.translate import BACKENDS, Meta

    with pytest.raises(ProxyError) as e:
        BACKENDS[fmt].FromUpstream(Meta("chatcmpl-x", 0, "m")).event(Event("message_start" if fmt == "anthropic" else None, b"<html>oops</html>"))
    assert e.value.status == 502 and e.value.message.startswith(f"{provider} sent a stream event that is not JSON: b'<html>")


@pytest.mark.parametrize("split", ["random", None], ids=["random-reads", "one-read"])
async def test_a_translator_bug_mid_stream_ends_it_in_band_with_a_500(upstream, proxy, monkeypatch, caplog, split):
    """A bug (not a ValueError, KeyError or TypeError: those are the backend's garbage) once text went out: the text
    from the events before it still reaches the client, a 500 ends the stream in the client's shape, the traceback
    is logged, the ``←`` line and the row say so, and llmproxy goes on serving."""
    from llmproxy.translate import BACKENDS

    decoder = BACKENDS["anthropic"].FromUpstream
    event = decoder.event

    def buggy(self, ev):  # noqa: ANN001, ANN202
        if ev[0] == "content_block_stop":
            raise AttributeError("'NoneType' object has no attribute 'get'")
        return event(self, ev)

    monkeypatch.setattr(decoder, "event", buggy)
    up = await upstream({"/v1/messages": stream_reply("anthropic", "stream-text.sse", split=split)})
    p = await proxy(config(up.url))
    raw = await _raw_stream(p, "claude")
    events = [orjson.loads(e.removeprefix(b"data: ")) for e in raw.split(b"\n\n") if e]
    assert raw.endswith(b"\n\n") and b"[DONE]" not in raw
    assert set(events[-1]) == {"error"} and events[-1]["error"]["message"] == "internal error in llmproxy: AttributeError"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices"))  # the text before it went out
    assert "unexpected error in POST /v1/chat/completions" in caplog.text and "has no attribute 'get'" in caplog.text
    assert "← anthropic ✗ 200 first byte" in caplog.text and ": internal error in llmproxy: AttributeError" in caplog.text  # (the backend's status)
    [row] = await p.rows()
    assert (row["status"], row["error"]) == (500, "internal error in llmproxy: AttributeError")
    monkeypatch.setattr(decoder, "event", event)
    assert (await _raw_stream(p, "claude")).endswith(b"data: [DONE]\n\n")
