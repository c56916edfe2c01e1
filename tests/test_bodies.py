"""log.bodies: request and response bodies kept in the table ``bodies`` (capped, no secret in them), off by default."""
from __future__ import annotations

import sqlite3
import time

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from conftest import openai_config
from llmproxy import report

UPSTREAM_SECRET = "sk-upstream-secret-0123456789"  # conftest's openai_config: the backend's Authorization
KEY_A = "client-key-aaaaaaaa"
ADMIN = "admin-key-bbbbbbbbbbbb"
UNCONFIGURED = "sk-some-client-key-nobody-configured"


async def echo(request: web.Request) -> web.StreamResponse:
    """An OpenAI backend that answers with the last message's text (a stream: in pieces of 1,000 characters)."""
    body = await request.json()
    text = body["messages"][-1]["content"]
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    if not body.get("stream"):
        return web.json_response({"id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                                  "usage": usage})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(0, len(text), 1000):
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                 "choices": [{"index": 0, "delta": {"content": text[i:i + 1000]}, "finish_reason": None}]}
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await resp.write(b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                                               "choices": [], "usage": usage}) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def started(upstream, proxy, log: dict | None, access: bool = True):  # noqa: ANN001, ANN201
    up = await upstream({"/v1/chat/completions": echo})
    cfg = openai_config(up.url, **({"log": log} if log is not None else {}))
    if access:
        cfg["access"] = {"clients": [{"name": "webui", "key": KEY_A, "models": ["gpt"]}], "admin_key": ADMIN}
    return await proxy(cfg)


def kept(p, request_id: str | None = None) -> dict | list:  # noqa: ANN001
    con = report.connect(p.state.snap.config.log_path)
    try:
        if request_id is not None:
            return report.bodies(con, request_id)
        return [r[0] for r in con.execute("SELECT id FROM requests ORDER BY ts")]
    finally:
        con.close()


def stored_bytes(p) -> bytes:  # noqa: ANN001
    db = p.state.snap.config.log_path
    return b"".join(f.read_bytes() for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")) if f.exists())


async def test_bodies_are_kept_capped_and_hold_no_secret(upstream, proxy):
    p = await started(upstream, proxy, {"bodies": True, "bodies_max_bytes": 1024})
    c = p.openai(api_key=KEY_A)
    said = f"the keys are {UPSTREAM_SECRET} and {KEY_A}, ok?"
    r = await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": said}])
    assert r.choices[0].message.content == said  # (the client itself gets the answer untouched)
    chunks = [ch async for ch in await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": said}], stream=True)]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == said
    long = "x" * 3000
    await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": long}], stream=True)
    # a secret across the cut is taken out before the cut, not kept in part
    across = "y" * (1024 - len('{"messages":[{"role":"user","content":"') - 5) + UPSTREAM_SECRET
    await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": across}])
    with pytest.raises(openai.NotFoundError):
        await c.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    await p.state.log.flush()
    plain, stream, capped, cut, refused = (kept(p, i) for i in kept(p))

    redacted = "the keys are *** and ***, ok?"
    assert orjson.loads(plain["request"])["messages"][0]["content"] == redacted
    assert orjson.loads(plain["response"])["choices"][0]["message"]["content"] == redacted and not plain["truncated"]
    events = [orjson.loads(line[6:]) for line in stream["response"].splitlines() if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"]["content"] for e in events if e["choices"]) == redacted
    assert stream["response"].endswith("data: [DONE]\n\n") and not stream["truncated"]
    assert capped["truncated"] and len(capped["request"].encode()) == 1024 and len(capped["response"].encode()) == 1024
    assert capped["response"].startswith("data: {")
    assert cut["truncated"] and UPSTREAM_SECRET[:6] not in cut["request"]
    assert orjson.loads(refused["response"])["error"]["message"].startswith("model 'other' not found")  # an error: its body
    for secret in (UPSTREAM_SECRET, KEY_A):
        assert secret.encode() not in stored_bytes(p)
    # the dashboard's request detail carries them
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{p.url}/admin/api/requests/{kept(p)[1]}", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            detail = await r.json()
    assert detail["bodies"] == stream and detail["request"]["stream"] == 1


async def test_a_key_the_client_presented_is_not_kept_even_unconfigured(upstream, proxy):
    p = await started(upstream, proxy, {"bodies": True}, access=False)
    c = p.openai(api_key=UNCONFIGURED)
    await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": f"mine is {UNCONFIGURED}"}])
    async with aiohttp.ClientSession() as s:
        async with s.post(p.url + "/v1/chat/completions", headers={"x-api-key": "another-presented-key-42"},
                          json={"model": "gpt", "messages": [{"role": "user", "content": "x: another-presented-key-42"}]}) as r:
            assert r.status == 200
    await p.state.log.flush()
    first, second = (kept(p, i) for i in kept(p))
    assert "mine is ***" in first["request"] and "mine is ***" in first["response"]
    assert "x: ***" in second["request"]
    assert UNCONFIGURED.encode() not in stored_bytes(p) and b"another-presented-key-42" not in stored_bytes(p)


async def test_bodies_are_off_by_default_and_go_with_their_rows(upstream, proxy):
    p = await started(upstream, proxy, None)
    assert p.state.snap.config.log_bodies is False
    c = p.openai(api_key=KEY_A)
    await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
    await p.state.log.flush()
    ids = kept(p)
    assert len(ids) == 2 and all(kept(p, i) is None for i in ids)
    con = sqlite3.connect(p.state.snap.config.log_path)
    assert con.execute("SELECT count(*) FROM bodies").fetchone()[0] == 0
    con.close()

    p2 = await started(upstream, proxy, {"bodies": True})  # the same file, bodies on: then retention deletes them with the rows
    c2 = p2.openai(api_key=KEY_A)
    await c2.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    await p2.state.log.flush()
    assert kept(p2, kept(p2)[-1])["request"] is not None
    assert await p2.state.log.prune(time.time() + 1) == 3
    con = sqlite3.connect(p2.state.snap.config.log_path)
    assert con.execute("SELECT count(*) FROM bodies").fetchone()[0] == 0
    con.close()
