"""The Responses door end to end: the official ``openai`` SDK's ``client.responses`` → llmproxy → fake upstreams.

To a ``responses: relay`` backend the body and the answer pass untouched (bytes compared with the
recorded OpenAI streams in tests/fixtures/responses/), and llmproxy remembers which backend made
each response id.
"""
from __future__ import annotations

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
    p = await proxy(relay_config(up.url, params={"max_tokens": 500, "temperature": 0.5}))
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
