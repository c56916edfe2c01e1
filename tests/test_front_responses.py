"""The Responses door end to end: the official ``openai`` SDK's ``client.responses`` → llmproxy → fake upstreams.

To a ``responses: relay`` backend the body and the answer pass untouched (bytes compared with the
recorded OpenAI streams in tests/fixtures/responses/), and llmproxy remembers which backend made
each response id.  To OpenAI (chat completions), Anthropic, Gemini and Ollama backends the request
is translated, each fake replaying its provider's recorded traffic, and llmproxy keeps the state.
"""
from __future__ import annotations

import asyncio

import aiohttp
import openai
import orjson
import pytest

from conftest import Reply, fixture_bytes, sse_wire
from llmproxy.config import ConfigError, load_config

SECRET = "sk-upstream-secret-0123456789"
TOOLS = [{"type": "function", "name": "get_capital", "description": "", "strict": True,
          "parameters": {"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"], "additionalProperties": False}}]
RELAY_STREAMS = ["stream-function-call.sse", "stream-text-after-function-call-output.sse", "stream-reasoning-function-call.sse"]


def wire(name: str) -> bytes:
    return sse_wire(f"responses/{name}")


def events(raw: bytes) -> list[dict]:
    return [orjson.loads(line[6:]) for line in raw.splitlines() if line.startswith(b"data: ")]


def sse(name: str, split=None) -> Reply:  # noqa: ANN001
    return Reply(wire(name), content_type="text/event-stream; charset=utf-8", split=split)


def relay_config(url: str, **model_extra) -> dict:  # noqa: ANN003
    return {"backends": {"oa": {"api": "openai", "url": url + "/v1", "responses": "relay", "headers": {"Authorization": f"Bearer {SECRET}"}}},
            "models": {"gpt": {"backend": "oa", "model": "gpt-upstream", **model_extra}}}


# ------------------------------------------------------------------ relay to a backend that serves /v1/responses


@pytest.mark.parametrize("name", RELAY_STREAMS)
@pytest.mark.parametrize("split", [None, "random", 1])
async def test_relay_stream_is_byte_faithful(upstream, proxy, name, split):
    up = await upstream({"/v1/responses": sse(name, split)})
    p = await proxy(relay_config(up.url, params={"max_tokens": 500, "temperature": 0.5}, price={"input": 1, "output": 2}))
    extra = {"include": ["reasoning.encrypted_content"], "prompt_cache_key": "k1", "client_metadata": {"a": "b"},
             "unknown_future_field": [1, {"x": None}]}
    async with p.openai().responses.with_streaming_response.create(
            model="gpt", input="What is the capital of France?", tools=TOOLS, stream=True, temperature=0.9, extra_body=extra) as resp:
        got = b"".join([piece async for piece in resp.iter_bytes()])
    assert got == wire(name)
    seen = up.seen[0]
    assert seen.path == "/v1/responses" and seen.headers["Authorization"] == f"Bearer {SECRET}"
    body = seen.body
    assert body["model"] == "gpt-upstream" and body["input"] == "What is the capital of France?" and body["tools"] == TOOLS
    assert body["temperature"] == 0.9 and body["max_output_tokens"] == 500  # params under the client's values, by their Responses names
    for k, v in extra.items():
        assert body[k] == v, k  # passed on as it came
    [row] = await p.rows()
    usage = events(wire(name))[-1]["response"]["usage"]
    assert (row["front"], row["endpoint"], row["status"], row["stream"], row["backend"]) == ("responses", "responses", 200, 1, "oa")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
    assert row["reasoning_tokens"] == usage["output_tokens_details"]["reasoning_tokens"]
    assert row["cached_tokens"] == usage["input_tokens_details"]["cached_tokens"]
    assert row["cost_usd"] == pytest.approx((usage["input_tokens"] * 1 + usage["output_tokens"] * 2) / 1e6)


async def test_relay_stream_through_the_sdk_stream_helper(upstream, proxy):
    up = await upstream({"/v1/responses": sse("stream-reasoning-function-call.sse", "random")})
    p = await proxy(relay_config(up.url))
    async with p.openai().responses.stream(model="gpt", input="Calculate 100 * 200 / 3", tools=[{
            "type": "function", "name": "final_result", "strict": True, "description": "The final response",
            "parameters": {"type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"], "additionalProperties": False}}]) as stream:
        final = await stream.get_final_response()
    assert [o.type for o in final.output] == ["reasoning", "function_call"]
    assert final.output[1].arguments == '{"result":6666}' and final.usage.output_tokens_details.reasoning_tokens == 448


async def test_relay_nonstream(upstream, proxy):
    up = await upstream({"/v1/responses": Reply(fixture_bytes("responses/nonstream-text.json"))})
    p = await proxy(relay_config(up.url))
    raw = await p.openai().responses.with_raw_response.create(model="gpt", input="What is the capital of France?")
    assert raw.http_response.content == fixture_bytes("responses/nonstream-text.json")
    answer = raw.parse()
    assert answer.output_text == "The capital of France is Paris."
    [row] = await p.rows()
    assert (row["front"], row["stream"], row["prompt_tokens"], row["completion_tokens"]) == ("responses", 0, 14, 8)


async def test_relay_upstream_error_before_the_first_byte(upstream, proxy):
    up = await upstream({"/v1/responses": Reply(fixture_bytes("responses/error-400-invalid-temperature.json"), status=400)})
    p = await proxy(relay_config(up.url))
    with pytest.raises(openai.BadRequestError) as e:
        await p.openai().responses.create(model="gpt", input="hi", temperature=-1, stream=True)
    assert e.value.body["param"] == "temperature" and "decimal below minimum value" in e.value.body["message"]
    [row] = await p.rows()
    assert row["status"] == 400 and "temperature" in row["error"]


async def test_relay_error_after_the_first_byte_passes_and_is_logged(upstream, proxy):
    name = "stream-error-insufficient-quota.chunks.jsonl"
    up = await upstream({"/v1/responses": sse(name, "random")})
    p = await proxy(relay_config(up.url))
    async with p.openai().responses.with_streaming_response.create(model="gpt", input="hi", stream=True) as resp:
        got = b"".join([piece async for piece in resp.iter_bytes()])
    assert got == wire(name)
    [row] = await p.rows()
    assert row["status"] == 429 and row["error"].startswith("You exceeded your current quota")


async def test_relay_follow_up_goes_to_the_backend_that_made_the_response(upstream, proxy):
    """round_robin would alternate; the follow-ups, and GET/DELETE of the id, stay on the backend that has its state."""
    a = await upstream({"/v1/responses": sse("stream-function-call.sse")})
    b = await upstream({"/v1/responses": sse("stream-function-call.sse")})
    rid = events(wire("stream-function-call.sse"))[0]["response"]["id"]
    a.routes[f"/v1/responses/{rid}"] = Reply(b'{"id": "%s", "object": "response", "from": "a"}' % rid.encode())
    cfg = {"backends": {name: {"api": "openai", "url": u.url + "/v1", "responses": "relay"} for name, u in (("a", a), ("b", b))},
           "models": {"gpt": {"strategy": "round_robin", "routes": [{"backend": "a", "model": "m"}, {"backend": "b", "model": "m"}]}}}
    p = await proxy(cfg)
    client = p.openai()
    first = await client.responses.create(model="gpt", input="hi", tools=TOOLS, stream=True)
    async for _ in first:
        pass
    maker, other = (a, b) if a.seen else (b, a)
    assert maker is a  # round_robin starts with the first route
    for _ in range(3):
        follow = await client.responses.create(model="gpt", input="more", previous_response_id=rid, stream=True)
        async for _ in follow:
            pass
    assert len(a.seen) == 4 and not b.seen
    assert [s.body.get("previous_response_id") for s in a.seen] == [None, rid, rid, rid]
    await p.state.responses.flush()
    assert p.state.responses.count == 1
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{p.url}/v1/responses/{rid}?include[]=x") as r:
            assert r.status == 200 and (await r.json())["from"] == "a"
        assert a.seen[-1].path == f"/v1/responses/{rid}" and a.seen[-1].query == "include%5B%5D=x"  # the query string as the client sent it
        a.routes[f"/v1/responses/{rid}"] = Reply(b'{"id": "%s", "object": "response.deleted", "deleted": true}' % rid.encode())
        async with s.delete(f"{p.url}/v1/responses/{rid}") as r:
            assert r.status == 200 and (await r.json())["deleted"] is True
        async with s.get(f"{p.url}/v1/responses/{rid}") as r:
            assert r.status == 404 and (await r.json())["error"]["type"] == "invalid_request_error"
    assert p.state.responses.count == 0


async def test_relay_follow_up_for_a_backend_the_model_cannot_reach_is_400(upstream, proxy):
    up = await upstream({"/v1/responses": sse("stream-function-call.sse")})
    cfg = relay_config(up.url)
    cfg["backends"]["other"] = {"api": "openai", "url": up.url + "/v1", "responses": "relay"}
    cfg["models"]["elsewhere"] = {"backend": "other", "model": "m"}
    p = await proxy(cfg)
    client = p.openai()
    answer = await client.responses.create(model="gpt", input="hi", stream=True)
    async for _ in answer:
        pass
    rid = events(wire("stream-function-call.sse"))[0]["response"]["id"]
    with pytest.raises(openai.BadRequestError) as e:
        await client.responses.create(model="elsewhere", input="more", previous_response_id=rid)
    assert e.value.body["param"] == "previous_response_id" and "backend 'oa'" in e.value.body["message"]
    # store: false leaves nothing to remember
    up.routes["/v1/responses"] = sse("stream-text-after-function-call-output.sse")
    answer = await client.responses.create(model="gpt", input="hi", stream=True, store=False)
    async for _ in answer:
        pass
    await p.state.responses.flush()
    assert p.state.responses.count == 1


async def test_unknown_previous_response_id_is_404_in_openai_shape(upstream, proxy):
    up = await upstream({"/v1/responses": sse("stream-function-call.sse")})
    cfg = relay_config(up.url)
    cfg["backends"]["plain"] = {"api": "openai", "url": up.url + "/v1"}
    cfg["models"]["plain"] = {"backend": "plain", "model": "m"}
    p = await proxy(cfg)
    with pytest.raises(openai.NotFoundError) as e:
        await p.openai().responses.create(model="plain", input="more", previous_response_id="resp_nobody_knows")
    assert e.value.body["code"] == "previous_response_not_found" and e.value.body["param"] == "previous_response_id"
    assert not up.seen
    # to a relay backend an id llmproxy never saw is passed on: the backend may know it
    answer = await p.openai().responses.create(model="gpt", input="more", previous_response_id="resp_made_before", stream=True)
    async for _ in answer:
        pass
    assert up.seen[0].body["previous_response_id"] == "resp_made_before"
    rows = await p.rows()
    assert [r["status"] for r in rows] == [404, 200]


async def test_bad_fields_are_400_naming_the_field(upstream, proxy):
    up = await upstream({})
    p = await proxy(relay_config(up.url))
    async with aiohttp.ClientSession() as s:
        for body, param in (({"input": "x"}, "model"), ({"model": "gpt", "input": 3}, "input"),
                            ({"model": "gpt", "input": "x", "stream": "yes"}, "stream"),
                            ({"model": "gpt", "input": "x", "previous_response_id": 7}, "previous_response_id")):
            async with s.post(f"{p.url}/v1/responses", json=body) as r:
                err = (await r.json())["error"]
                assert r.status == 400 and err["param"] == param, body
    assert not up.seen


def test_responses_relay_is_only_for_openai_backends(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text("backends: {a: {api: anthropic, url: 'http://127.0.0.1:1', responses: relay}}\nmodels: {m: {backend: a}}\n")
    with pytest.raises(ConfigError, match="backends.a.responses: only an api: openai backend"):
        load_config(path)
    path.write_text("backends: {a: {api: openai, url: 'http://127.0.0.1:1/v1', responses: relay}}\nmodels: {m: {backend: a}}\nresponses_keep_days: 2\n")
    cfg = load_config(path)
    assert cfg.backends["a"].responses == "relay" and cfg.responses_keep_days == 2


# ------------------------------------------------------------------ every other backend: through the hub


UPSTREAM = {"openai": "gpt-test", "anthropic": "claude-test", "gemini": "gemini-test", "ollama": "llama3.2"}
CTYPE = {"openai": "text/event-stream", "anthropic": "text/event-stream; charset=utf-8", "gemini": "text/event-stream",
         "ollama": "application/x-ndjson"}
# per backend: a recorded tool call, the recorded answer after the tool result, a recorded non-stream answer
TOOL_LOOP = {"openai": ("openai/stream-tool-call-usage.sse", "openai/stream-text-usage.sse", "openai/nonstream-tool-call.json"),
             "anthropic": ("anthropic/stream-tool-use-docs.sse", "anthropic/stream-text-after-tool-result.sse", "anthropic/nonstream-text-and-tool-use.json"),
             "gemini": ("gemini/stream-function-call.sse", "gemini/stream-text-after-function-response.sse", "gemini/nonstream-function-call.json"),
             "ollama": ("ollama/stream-tool-call-docs.ndjson", "ollama/stream-text-tail.ndjson", "ollama/nonstream-tool-call.json")}
WEATHER = [{"type": "function", "name": "get_weather", "description": "Weather for a place.",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
           {"type": "web_search"}]


def hub_config(url: str, **top) -> dict:  # noqa: ANN003
    """One backend per api at the fake upstream, model = api name; one attempt each, so failover stays out."""
    return {"backends": {"openai": {"api": "openai", "url": url + "/v1", "headers": {"Authorization": f"Bearer {SECRET}"}},
                         "anthropic": {"api": "anthropic", "url": url, "headers": {"x-api-key": SECRET}},
                         "gemini": {"api": "gemini", "url": url, "headers": {"x-goog-api-key": SECRET}},
                         "ollama": {"api": "ollama", "url": url}},
            "models": {api: {"routes": [{"backend": api, "model": m}], "max_attempts": 1} for api, m in UPSTREAM.items()}, **top}


def path_of(api: str, stream: bool) -> str:
    return {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "ollama": "/api/chat",
            "gemini": f"/v1beta/models/gemini-test:{'streamGenerateContent' if stream else 'generateContent'}"}[api]


def stream_reply(fixture: str, split="random") -> Reply:  # noqa: ANN001
    return Reply(fixture_bytes(fixture), content_type=CTYPE[fixture.split("/")[0]], split=split)


def tool_result_sent(api: str, body: dict) -> tuple[str | None, str]:
    """The tool call id (where the format has one) and the result text the backend got in a follow-up."""
    if api == "openai":
        m = body["messages"][-1]
        return m["tool_call_id"], m["content"]
    if api == "anthropic":
        block = body["messages"][-1]["content"][0]
        return block["tool_use_id"], block["content"]
    if api == "gemini":
        part = body["contents"][-1]["parts"][0]["functionResponse"]
        return part.get("id"), orjson.dumps(part["response"]).decode()
    m = body["messages"][-1]
    return None, m["content"]


async def drain(stream) -> list:  # noqa: ANN001
    return [e async for e in stream]


@pytest.mark.parametrize("api", list(UPSTREAM))
async def test_two_turn_tool_loop_streamed(upstream, proxy, api):
    first, second, _ = TOOL_LOOP[api]
    up = await upstream({path_of(api, True): stream_reply(first)})
    p = await proxy(hub_config(up.url))
    client = p.openai()
    events1 = await drain(await client.responses.create(model=api, input="Weather in Paris?", tools=WEATHER, stream=True,
                                                         instructions="Use the tools."))
    assert [e.sequence_number for e in events1] == list(range(len(events1)))
    done = events1[-1]
    assert done.type == "response.completed" and done.response.model == UPSTREAM[api]
    calls = [o for o in done.response.output if o.type == "function_call"]
    assert calls and all(orjson.loads(c.arguments) for c in calls)
    call = calls[0]
    up.routes[path_of(api, True)] = stream_reply(second)
    conversation = [{"role": "user", "content": "Weather in Paris?"}] + [o.model_dump(exclude_none=True) for o in done.response.output]
    outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": "18 degrees, clear"} for c in calls]
    events2 = await drain(await client.responses.create(model=api, input=conversation + outputs, tools=WEATHER, stream=True, store=False))
    answer = events2[-1].response
    assert answer.output_text and answer.output[-1].type == "message"
    call_id, result = tool_result_sent(api, up.seen[1].body)
    assert "18 degrees, clear" in result and call_id in (None, call.call_id)
    rows = await p.rows()
    assert [(r["front"], r["endpoint"], r["status"], r["stream"], r["backend"]) for r in rows] == [("responses", "responses", 200, 1, api)] * 2
    assert rows[0]["note"] == f"left out on api: {api}: tools web_search"
    assert rows[1]["completion_tokens"] == answer.usage.output_tokens and rows[1]["prompt_tokens"] == answer.usage.input_tokens
    assert (rows[1]["prompt_tokens"] or 0) > 0 or api == "ollama"  # the Ollama excerpt has no prompt count
    sent = up.seen[0].body
    assert "web_search" not in orjson.dumps(sent).decode()
    await p.state.responses.flush()
    assert p.state.responses.count == 1  # the first answer is kept; the second said store: false


@pytest.mark.parametrize("api", list(UPSTREAM))
async def test_nonstream(upstream, proxy, api):
    up = await upstream({path_of(api, False): Reply(fixture_bytes(TOOL_LOOP[api][2]))})
    p = await proxy(hub_config(up.url))
    answer = await p.openai().responses.create(model=api, input="hi", tools=WEATHER)
    assert answer.object == "response" and answer.status == "completed" and answer.id.startswith("resp_")
    assert any(o.type == "function_call" for o in answer.output)
    [row] = await p.rows()
    assert (row["front"], row["stream"], row["status"]) == ("responses", 0, 200)
    assert row["completion_tokens"] == answer.usage.output_tokens
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{p.url}/v1/responses/{answer.id}") as r:
            assert r.status == 200 and (await r.json()) == answer.model_dump(mode="json", exclude_unset=True)


async def test_previous_response_id_rebuilds_the_conversation(upstream, proxy):
    """Anthropic keeps no state: the second turn carries the first one's conversation, thinking signature included."""
    up = await upstream({"/v1/messages": stream_reply("anthropic/stream-thinking.sse")})
    p = await proxy(hub_config(up.url))
    client = p.openai()
    async with client.responses.stream(model="anthropic", input="Two names for a pet pelican", instructions="Be brief.",
                                       reasoning={"effort": "low"}, max_output_tokens=4000) as stream:
        first = await stream.get_final_response()
    assert [o.type for o in first.output] == ["reasoning", "message"]
    assert first.output[0].summary[0].text.startswith("The user wants two names")
    assert up.seen[0].body["system"] == "Be brief." and up.seen[0].body["thinking"]["type"] == "enabled"
    up.routes["/v1/messages"] = stream_reply("anthropic/stream-text.sse")
    async with client.responses.stream(model="anthropic", input="Shorter, please", previous_response_id=first.id,
                                       max_output_tokens=4000) as stream:
        second = await stream.get_final_response()
    assert second.previous_response_id == first.id and second.output_text
    sent = up.seen[1].body
    assert "system" not in sent  # instructions are not carried over, as OpenAI does it
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    thinking, text = sent["messages"][1]["content"]
    assert thinking["type"] == "thinking" and thinking["signature"].startswith("EuYDCmMIDBgCKkC05Zda")
    assert text == {"type": "text", "text": first.output_text}
    assert sent["messages"][2]["content"] == "Shorter, please"
    # a third turn continues the second: the whole chain comes along
    await drain(await client.responses.create(model="anthropic", input="Thanks", previous_response_id=second.id, stream=True))
    assert [m["role"] for m in up.seen[2].body["messages"]] == ["user", "assistant", "user", "assistant", "user"]


async def test_previous_response_id_of_another_client_or_expired_is_404(upstream, proxy):
    up = await upstream({"/api/chat": Reply(fixture_bytes("ollama/nonstream-text.json"))})
    keys = {"clients": [{"name": "a", "key": "key-a-0123456789"}, {"name": "b", "key": "key-b-0123456789"}], "admin_key": "admin-key-0123456789"}
    p = await proxy(hub_config(up.url, access=keys, responses_keep_days=0.00002))  # about 1.7 s
    a, b = p.openai(api_key="key-a-0123456789"), p.openai(api_key="key-b-0123456789")
    first = await a.responses.create(model="ollama", input="hi")
    for client, param in ((b, "previous_response_id"),):
        with pytest.raises(openai.NotFoundError) as e:
            await client.responses.create(model="ollama", input="more", previous_response_id=first.id)
        assert e.value.body["param"] == param and e.value.body["code"] == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        await b.responses.retrieve(first.id)
    assert (await a.responses.retrieve(first.id)).id == first.id
    await a.responses.create(model="ollama", input="more", previous_response_id=first.id)
    await p.state.responses.flush()
    assert p.state.responses.count == 2
    await asyncio.sleep(2)
    with pytest.raises(openai.NotFoundError):
        await a.responses.create(model="ollama", input="more", previous_response_id=first.id)
    assert await p.state.responses.purge() == 2 and p.state.responses.count == 0
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer admin-key-0123456789"}) as s:  # /health's details
        async with s.get(f"{p.url}/health") as r:
            assert (await r.json())["responses"] == {"kept": 0, "keep_days": 0.00002}
    assert len(up.seen) == 2


async def test_delete_a_kept_response(upstream, proxy):
    up = await upstream({"/api/chat": Reply(fixture_bytes("ollama/nonstream-text.json"))})
    p = await proxy(hub_config(up.url))
    client = p.openai()
    first = await client.responses.create(model="ollama", input="hi")
    assert (await client.responses.retrieve(first.id)).output_text == first.output_text
    async with aiohttp.ClientSession() as s:
        async with s.delete(f"{p.url}/v1/responses/{first.id}") as r:
            assert r.status == 200 and await r.json() == {"id": first.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="ollama", input="more", previous_response_id=first.id)


@pytest.mark.parametrize("api", ["anthropic", "openai"])
async def test_json_schema_output(upstream, proxy, api):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}
    up = await upstream({path_of(api, False): Reply(fixture_bytes({"anthropic": "anthropic/nonstream-text.json",
                                                                   "openai": "openai/nonstream-text.json"}[api]))})
    p = await proxy(hub_config(up.url))
    answer = await p.openai().responses.create(model=api, input="Capital of France as JSON",
                                               text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}})
    assert answer.text.format.type == "json_schema"
    sent = up.seen[0].body
    if api == "anthropic":
        assert sent["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    else:
        assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}}


async def test_upstream_error_before_the_first_byte(upstream, proxy):
    up = await upstream({"/v1/messages": Reply(fixture_bytes("anthropic/error-529-overloaded.json"), status=529)})
    p = await proxy(hub_config(up.url))
    with pytest.raises(openai.APIStatusError) as e:
        await p.openai().responses.create(model="anthropic", input="hi", stream=True)
    assert e.value.status_code == 529 and e.value.body["message"] == "Overloaded" and SECRET not in str(e.value.body)
    [row] = await p.rows()
    assert (row["front"], row["status"]) == ("responses", 529)


async def test_upstream_error_after_the_first_byte_ends_with_response_failed(upstream, proxy):
    """A text delta, then the backend breaks off: error and response.failed, in sequence, with the output so far."""
    raw = fixture_bytes("anthropic/stream-text.sse")
    cut = raw.index(b"event: content_block_stop")
    up = await upstream({"/v1/messages": Reply(raw[:cut], content_type=CTYPE["anthropic"])})
    p = await proxy(hub_config(up.url))
    async with p.openai().responses.with_streaming_response.create(model="anthropic", input="hi", stream=True) as resp:
        got = [orjson.loads(line[6:]) for line in (await resp.read()).splitlines() if line.startswith(b"data: ")]
    assert [e["type"] for e in got][-3:] == ["response.output_text.delta", "error", "response.failed"]
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    failed = got[-1]["response"]
    assert failed["status"] == "failed" and failed["id"] == got[0]["response"]["id"] and failed["output"] == []
    assert failed["error"]["code"] == "server_error" and "message_stop" in failed["error"]["message"]
    assert got[-2]["error"]["message"] == failed["error"]["message"]
    with pytest.raises(openai.APIError, match="message_stop"):
        await drain(await p.openai().responses.create(model="anthropic", input="hi", stream=True))
    rows = await p.rows()
    assert rows[0]["status"] == 502 and "message_stop" in rows[0]["error"]


async def test_anthropic_in_band_error_event(upstream, proxy):
    up = await upstream({"/v1/messages": stream_reply("anthropic/stream-text.sse")})
    p = await proxy(hub_config(up.url))
    raw = fixture_bytes("anthropic/stream-text.sse")
    cut = raw.index(b"event: content_block_stop")
    up.routes["/v1/messages"] = Reply(raw[:cut] + fixture_bytes("anthropic/stream-error-event-docs.sse"), content_type=CTYPE["anthropic"])
    async with p.openai().responses.with_streaming_response.create(model="anthropic", input="hi", stream=True) as resp:
        got = [orjson.loads(line[6:]) for line in (await resp.read()).splitlines() if line.startswith(b"data: ")]
    assert got[-1]["type"] == "response.failed" and got[-1]["response"]["error"]["message"] == "Overloaded"
    [row] = await p.rows()
    assert row["status"] == 529


async def test_a_relay_route_takes_a_kept_conversation_inline(upstream, proxy):
    """The first turn was translated (kept here); the model's other route relays: the backend gets the conversation, not an id it cannot know."""
    up = await upstream({"/api/chat": Reply(fixture_bytes("ollama/nonstream-text.json")),
                         "/v1/responses": Reply(fixture_bytes("responses/nonstream-text.json"))})
    cfg = hub_config(up.url)
    cfg["backends"]["oa"] = {"api": "openai", "url": up.url + "/v1", "responses": "relay"}
    cfg["models"]["mixed"] = {"strategy": "fallback", "routes": [{"backend": "oa", "model": "gpt-up"}]}
    p = await proxy(cfg)
    client = p.openai()
    first = await client.responses.create(model="ollama", input="hi")
    await client.responses.create(model="mixed", input="more", previous_response_id=first.id)
    sent = up.seen[-1].body
    assert "previous_response_id" not in sent
    assert [i.get("role") or i["type"] for i in sent["input"]] == ["user", "assistant", "user"]
    assert sent["input"][-1] == {"type": "message", "role": "user", "content": "more"}


# ------------------------------------------------------------------ Codex CLI, as it sends (recorded from codex exec 0.171.0)


CODEX = orjson.loads(fixture_bytes("responses/request-codex-tool-loop.json"))
CODEX_HEADERS = {"Accept": "text/event-stream", "originator": "codex_exec", "Authorization": "Bearer sk-test",
                 "User-Agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.171.0)"}


@pytest.fixture
async def mock(aiohttp_server):
    """``llmproxy mock`` on a real socket, recording (path, JSON body) of every request it gets."""
    from aiohttp import web

    from llmproxy.mock import make_mock_app

    seen: list[tuple[str, dict]] = []

    @web.middleware
    async def record(request: web.Request, handler):  # noqa: ANN001, ANN202
        seen.append((request.path, orjson.loads(await request.read())))
        return await handler(request)

    app = make_mock_app(chunks=3)
    app.middlewares.append(record)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), seen


async def codex_turn(p, body: dict) -> list[dict]:  # noqa: ANN001
    """POST a Codex request as Codex does; the events of the answer, each checked to be framed ``event:`` = ``type``."""
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{p.url}/v1/responses", json=body, headers=CODEX_HEADERS) as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
            raw = await r.read()
    out = []
    for block in raw.split(b"\n\n")[:-1]:
        name, data = block.split(b"\n")
        ev = orjson.loads(data.removeprefix(b"data: "))
        assert name == b"event: " + ev["type"].encode()
        out.append(ev)
    return out


@pytest.mark.parametrize("api", ["anthropic", "ollama"])
async def test_codex_turns_cross_to_llmproxy_mock(proxy, mock, api):
    """Codex's first turn gets the mock's call of its shell tool with arguments Codex accepts; its second turn
    (its own reasoning, message and function_call items back, the command's output) gets the answer."""
    url, seen = mock
    p = await proxy({"backends": {"up": {"api": api, "url": url}}, "models": {"gpt-5.5": {"backend": "up", "model": "mock-small"}}})
    first = {**CODEX, "input": CODEX["input"][:4]}  # developer x2, environment, the task
    evs = await codex_turn(p, first)
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    call = evs[-1]["response"]["output"][-1]
    assert (call["type"], call["name"], orjson.loads(call["arguments"])) == ("function_call", "exec_command", {"cmd": "mock"})
    assert [e["type"] for e in evs if e["type"].startswith("response.output_item")] == ["response.output_item.added", "response.output_item.done"] * len(evs[-1]["response"]["output"])
    evs = await codex_turn(p, CODEX)
    assert evs[-1]["type"] == "response.completed" and evs[-1]["response"]["output"][-1]["content"][0]["text"].startswith("Hello from the llmproxy mock")
    path, sent = seen[-1]
    if api == "anthropic":
        system, messages = [b["text"] for b in sent["system"]], sent["messages"]
        assert system[0].startswith("You are Codex, a coding agent") and system[1].startswith("<skills_instructions>")  # developer messages
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert [b["type"] for b in messages[1]["content"]] == ["thinking", "text", "tool_use"]  # Codex's reasoning item, back as a signed block
        assert messages[1]["content"][0]["signature"] == "c2NyaXB0ZWQ="
        assert messages[2]["content"][0]["type"] == "tool_result" and messages[2]["content"][0]["tool_use_id"] == "toolu_scripted_1"
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 8192}  # reasoning.effort: medium
        tools = {t["name"]: t for t in sent["tools"]}
    else:
        assert [m["role"] for m in sent["messages"]] == ["system", "system", "user", "user", "assistant", "tool"]
        assert sent["messages"][-1]["tool_call_id"] == "toolu_scripted_1" and sent["think"] == "medium"
        tools = {t["function"]["name"]: t["function"] for t in sent["tools"]}
        tools = {k: {"input_schema": v["parameters"]} for k, v in tools.items()}
    assert list(tools) == ["exec_command", "write_stdin", "request_user_input", "apply_patch", "view_image", "get_goal", "create_goal", "update_goal"]
    assert tools["apply_patch"]["input_schema"]["required"] == ["input"]  # Codex's free-form tool, as one string
    assert "tool_search" not in tools and "web_search" not in str(sent)
    rows = await p.rows()
    assert [r["note"] for r in rows] == [f"left out on api: {api}: tools tool_search, web_search"] * 2
    assert all(r["front"] == "responses" and r["status"] == 200 and r["stream"] == 1 for r in rows)
    await p.state.responses.flush()
    assert p.state.responses.count == 0  # store: false
