"""Discovery: upstream model lists routed as backend/name and bare names, in /v1/models, kept when the upstream is down."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from conftest import Reply, fixture_bytes
from llmproxy.app import reload
from llmproxy.discover import parse
from test_failover import closed_port_url

CHAT = Reply(fixture_bytes("openai/nonstream-text.json"))


def models_reply(*ids: str) -> Reply:
    return Reply(orjson.dumps({"object": "list", "data": [{"id": i, "object": "model", "owned_by": "x"} for i in ids]}))


def backend(url: str, **kw) -> dict:  # noqa: ANN003
    return {"api": "openai", "url": url + "/v1", "discover": True, **kw}


async def health(p) -> dict:  # noqa: ANN001
    async with aiohttp.ClientSession() as s, s.get(p.url + "/health") as r:
        return await r.json()


async def until(p, check, timeout: float = 3.0) -> dict:  # noqa: ANN001
    """Poll /health until ``check(health)`` holds."""
    t0 = time.monotonic()
    while True:
        h = await health(p)
        if check(h):
            return h
        assert time.monotonic() - t0 < timeout, h
        await asyncio.sleep(0.02)


def listed(name: str, state: str = "ok"):  # noqa: ANN201
    return lambda h: h["backends"][name]["discovery"]["state"] == state


async def chat(p, model: str):  # noqa: ANN001, ANN201
    return await p.openai().chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


async def test_discovered_models_route_and_list(upstream, proxy):
    one = await upstream({"/v1/models": models_reply("alpha", "beta", "gpt"), "/v1/chat/completions": CHAT})
    two = await upstream({"/v1/models": models_reply("beta", "gamma"), "/v1/chat/completions": CHAT})
    p = await proxy({"backends": {"one": backend(one.url, passthrough=False), "two": backend(two.url)},
                     "models": {"gpt": {"backend": "one", "model": "gpt-4o"}}})
    await until(p, lambda h: listed("one")(h) and listed("two")(h))
    await chat(p, "alpha")  # bare name, listed by one backend only
    assert one.seen[-1].body["model"] == "alpha"
    await chat(p, "GAMMA")
    assert two.seen[-1].body["model"] == "gamma"
    await chat(p, "one/beta")  # passthrough: false, but listed
    assert one.seen[-1].body["model"] == "beta"
    with pytest.raises(openai.NotFoundError, match="several backends.*one/beta.*two/beta"):
        await chat(p, "beta")
    with pytest.raises(openai.NotFoundError):
        await chat(p, "one/unlisted")  # passthrough: false and not listed
    await chat(p, "gpt")  # a configured name wins over a listed one
    assert one.seen[-1].body["model"] == "gpt-4o"
    ids = [m.id async for m in p.openai().models.list()]
    assert ids[0] == "gpt" and set(ids[1:]) == {"alpha", "one/beta", "one/gpt", "two/beta", "gamma"}
    async with aiohttp.ClientSession() as s:  # the Ollama front door lists the same names
        async with s.get(p.url + "/api/tags") as r:
            tags = [(m["name"], m["details"]["family"]) for m in (await r.json())["models"]]
    assert [n for n, _ in tags] == ids and ("gamma", "two") in tags
    rows = await p.rows()
    assert [(r["model"], r["backend"], r["upstream_model"]) for r in rows[:2]] == [("one/alpha", "one", "alpha"), ("two/gamma", "two", "gamma")]
    h = await health(p)
    assert h["backends"]["one"]["discovery"]["models"] == 3 and h["backends"]["one"]["discovery"]["next_in_s"] > 500


async def test_upstream_down_keeps_last_list_and_health_says_so(upstream, proxy):
    state = {"down": False}

    async def models(request: web.Request) -> web.Response:
        if state["down"]:
            return web.json_response({"error": {"message": "maintenance"}}, status=503)
        return web.json_response({"data": [{"id": "llama3.2"}, {"id": "qwen3"}]})

    up = await upstream({"/v1/models": models, "/v1/chat/completions": CHAT})
    p = await proxy({"backends": {"home": backend(up.url), "dead": backend(closed_port_url())},
                     "models": {"x": {"backend": "home", "model": "x"}}})
    h = await until(p, lambda h: listed("home")(h) and listed("dead", "failed")(h))
    assert h["backends"]["dead"]["discovery"]["models"] == 0 and "unreachable" in h["backends"]["dead"]["discovery"]["error"]
    state["down"] = True
    assert await reload(p.app)  # a reload lists again
    h = await until(p, listed("home", "stale"))
    d = h["backends"]["home"]["discovery"]
    assert d["models"] == 2 and "maintenance" in d["error"] and "keeping the 2 models" in d["error"] and d["listed_at"] < d["error_at"]
    await chat(p, "qwen3")  # still routable from the last list
    assert up.seen[-1].body["model"] == "qwen3"
    state["down"] = False
    assert await reload(p.app)
    await until(p, listed("home"))


async def test_discovery_never_blocks_a_request(upstream, proxy):
    up = await upstream({"/v1/models": Reply(b'{"data": []}', hang_before=5), "/v1/chat/completions": CHAT})
    p = await proxy({"backends": {"slow": backend(up.url)}, "models": {"x": {"backend": "slow"}}})
    t0 = time.monotonic()
    await chat(p, "x")
    assert time.monotonic() - t0 < 1
    assert (await health(p))["backends"]["slow"]["discovery"]["state"] == "listing"


async def test_ollama_tags_and_latest(upstream, proxy):
    tags = {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}, {"name": "qwen3:8b", "model": "qwen3:8b"}]}
    up = await upstream({"/api/tags": Reply(orjson.dumps(tags)), "/api/chat": Reply(fixture_bytes("ollama/nonstream-text.json"))})
    p = await proxy({"backends": {"home": {"api": "ollama", "url": up.url, "discover": True}}, "models": {"x": {"backend": "home"}}})
    await until(p, listed("home"))
    await chat(p, "llama3.2")
    assert up.seen[-1].body["model"] == "llama3.2:latest"


def test_parse_each_api():
    assert parse("openai", {"data": [{"id": "a"}, {"id": "b"}]}) == (["a", "b"], None)
    assert parse("ollama", {"models": [{"name": "q:latest", "model": "q:latest"}]}) == (["q:latest"], None)
    assert parse("anthropic", {"data": [{"id": "claude-x"}], "has_more": True, "last_id": "claude-x"}) == (["claude-x"], "/v1/models?limit=1000&after_id=claude-x")
    assert parse("anthropic", {"data": [{"id": "claude-y"}], "has_more": False}) == (["claude-y"], None)
    assert parse("gemini", {"models": [{"name": "models/gemini-2.5-flash"}], "nextPageToken": "t1"}) == (["gemini-2.5-flash"], "/v1beta/models?pageSize=1000&pageToken=t1")
    with pytest.raises(ValueError):
        parse("openai", ["not", "an", "object"])
