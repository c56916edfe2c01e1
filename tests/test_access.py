"""Client keys: 401 without a valid key, 403 outside the client's globs, filtered /v1/models, name and tags in rows."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import openai
import pytest

from conftest import Reply, fixture_bytes, openai_config

KEY_A = "client-key-aaaaaaaa"
KEY_B = "client-key-bbbbbbbb"


def access_config(url: str) -> dict:
    cfg = openai_config(url, models={"gpt": {"backend": "up"}, "gpt-mini": {"backend": "up"}, "private": {"backend": "up"}},
                        aliases={"mini": "gpt-mini"})
    cfg["access"] = {"clients": [
        {"name": "webui", "key": KEY_A, "models": ["gpt*", "mini"], "tags": ["family", "ui"]},
        {"name": "script", "key_sha256": hashlib.sha256(KEY_B.encode()).hexdigest()},
    ]}
    return cfg


async def test_keys_globs_and_rows(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    p = await proxy(access_config(up.url))
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError):
        await p.openai(api_key="wrong-key-0000").chat.completions.create(model="gpt", messages=msgs)
    with pytest.raises(openai.AuthenticationError):
        await p.openai(api_key="wrong-key-0000").models.list()
    a = p.openai(api_key=KEY_A)
    assert [m.id async for m in a.models.list()] == ["gpt", "gpt-mini", "mini"]
    await a.chat.completions.create(model="mini", messages=msgs)
    with pytest.raises(openai.PermissionDeniedError) as e:
        await a.chat.completions.create(model="private", messages=msgs)
    assert "client 'webui' may not use model 'private'" in e.value.message
    b = p.openai(api_key=KEY_B)  # key_sha256: the file holds no secret; models default to all
    assert len([m async for m in b.models.list()]) == 4
    await b.chat.completions.create(model="private", messages=msgs)
    rows = await p.rows()
    assert [(r["client"], r["tags"], r["status"]) for r in rows] == [
        (None, None, 401), ("webui", "family,ui", 200), ("webui", "family,ui", 403), ("script", None, 200)]
    assert len(up.seen) == 2


async def test_stats_cli(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    p = await proxy(openai_config(up.url, models={"gpt": {"backend": "up", "price": {"input": 1000, "output": 2000}}}))
    c = p.openai()
    for _ in range(3):
        await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    await p.rows()
    db = p.state.snap.config.log_path
    out = subprocess.run([sys.executable, "-m", "llmproxy", "stats", "--db", str(db), "--by", "backend"], capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("up "))
    # 3 requests × (146 prompt, 3 completion) tokens at 1000 / 2000 USD per 1M
    assert line.split()[:3] == ["up", "3", "0"] and "438" in line and "0.4560" in line
    out = subprocess.run([sys.executable, "-m", "llmproxy", "stats", "--db", str(db), "--by", "day", "--since", "1h"], capture_output=True, text=True, check=True).stdout
    assert "requests" in out.splitlines()[0]


async def test_each_door_answers_a_refused_key_in_its_own_shape(upstream, proxy):
    """One error middleware: the same 401 is OpenAI's, Anthropic's or Ollama's error body by the route it came to."""
    import aiohttp

    up = await upstream({})
    p = await proxy(access_config(up.url))
    body = {"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer wrong-key-0000"}) as s:
        async with s.get(p.url + "/v1/models") as r:
            assert r.status == 401 and (await r.json())["error"]["type"] == "authentication_error"
        async with s.post(p.url + "/v1/messages", json=body) as r:
            got = await r.json()
            assert r.status == 401 and got["type"] == "error" and got["error"]["type"] == "authentication_error"
        for method, path in (("GET", "/api/tags"), ("GET", "/api/ps"), ("POST", "/api/show"), ("POST", "/api/chat")):
            async with s.request(method, p.url + path, json=body) as r:
                got = await r.json()
                assert r.status == 401 and isinstance(got["error"], str) and "client key is not valid" in got["error"], path
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY_A}"}) as s:
        async with s.post(p.url + "/api/show", json={"model": "no-such-model"}) as r:
            assert r.status == 404 and isinstance((await r.json())["error"], str)
    assert not up.seen


async def test_default_model_is_held_to_the_allow_list(upstream, proxy):
    """An unknown name that falls to default_model is a request for the default: ``mock-*`` does not reach it."""
    import aiohttp

    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    cfg = openai_config(up.url, models={"mock-small": {"backend": "up"}, "expensive": {"backend": "up", "model": "gpt-4.1"}},
                        aliases={"fallback": "expensive"}, default_model="fallback")
    cfg["access"] = {"clients": [
        {"name": "mocks", "key": KEY_A, "models": ["mock-*"]},
        {"name": "via-alias", "key": KEY_B, "models": ["mock-*", "fallback"]},
    ]}
    p = await proxy(cfg)
    msgs = [{"role": "user", "content": "hi"}]
    calls = (("/v1/chat/completions", {"model": "mock-nonexistent", "messages": msgs}),
             ("/v1/messages", {"model": "mock-nonexistent", "max_tokens": 5, "messages": msgs}),
             ("/api/chat", {"model": "mock-nonexistent", "stream": False, "messages": msgs}))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY_A}"}) as s:
        for path, body in calls:
            async with s.post(p.url + path, json=body) as r:
                assert r.status == 403, (path, await r.text())
                assert "default_model 'fallback'" in await r.text(), path
        async with s.post(p.url + "/v1/chat/completions", json={"model": "mock-small", "messages": msgs}) as r:
            assert r.status == 200  # its own models still work
    assert [x.body["model"] for x in up.seen] == ["mock-small"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY_B}"}) as s:
        for path, body in calls:  # a client allowed the default's name (an alias) may fall to it
            async with s.post(p.url + path, json=body) as r:
                assert r.status == 200, (path, await r.text())
    assert [x.body["model"] for x in up.seen[1:]] == ["gpt-4.1"] * 3
    rows = await p.rows()
    assert [(r["client"], r["status"]) for r in rows] == [("mocks", 403)] * 3 + [("mocks", 200)] + [("via-alias", 200)] * 3


async def test_health_details_need_the_admin_key(upstream, proxy):
    """With access: set, /health answers anyone whether llmproxy is up; backends, breakers and the config only to the admin key."""
    import aiohttp
    import yaml

    from llmproxy import __version__
    from llmproxy.app import reload

    up = await upstream({})
    cfg = access_config(up.url)
    cfg["access"]["admin_key"] = "admin-key-0123456789"
    p = await proxy(cfg)

    async def health(**headers: str) -> dict:
        async with aiohttp.ClientSession() as s, s.get(p.url + "/health", headers=headers) as r:
            assert r.status == 200
            return await r.json()

    live = {"status": "ok", "version": __version__, "config_loaded": True}
    assert await health() == live
    assert await health(Authorization=f"Bearer {KEY_A}") == live  # a client key is not the admin key
    assert await health(Authorization="Bearer wrong-admin-key") == live
    for h in ({"Authorization": "Bearer admin-key-0123456789"}, {"x-api-key": "admin-key-0123456789"}):
        full = await health(**h)
        assert full["status"] == "ok" and full["version"] == __version__ and "up" in full["backends"] and full["config"]["sha256"]
    cfg["models"]["gpt"]["backend"] = "nowhere"
    p.path.write_text(yaml.safe_dump(cfg))
    assert not await reload(p.app)  # a bad edit: the old config runs on, and liveness says the file did not load
    assert await health() == {**live, "status": "degraded", "config_loaded": False}
    assert "nowhere" in (await health(Authorization="Bearer admin-key-0123456789"))["config"]["reload_error"]
