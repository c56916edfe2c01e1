"""Failover, retries, cooldowns and key rotation, end to end: fault-injecting fake upstreams on real sockets."""
from __future__ import annotations

import asyncio
import socket
import time
from typing import Callable

import aiohttp
import openai
import orjson
import pytest
import yaml
from aiohttp import web

from conftest import Reply, fixture_bytes
from test_openai_relay import _expected_text
from llmproxy.app import reload

STREAM = "openai/stream-text-usage.sse"
SECRET = "sk-upstream-secret-0123456789"
MSGS = [{"role": "user", "content": "hi"}]


def _sse(**kw) -> Reply:  # noqa: ANN003
    return Reply(fixture_bytes(STREAM), content_type="text/event-stream; charset=utf-8", **kw)


def _events_split() -> list[int]:
    """Offsets after each SSE event of STREAM, so ``split`` sends one event per piece."""
    data, out, i = fixture_bytes(STREAM), [], 0
    while (j := data.find(b"\n\n", i)) != -1:
        out.append(j + 2)
        i = j + 2
    return out[:-1]


def _text() -> str:
    return _expected_text(STREAM)


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def _backend(url: str, **kw) -> dict:  # noqa: ANN003
    return {"api": "openai", "url": url + "/v1", "headers": {"Authorization": f"Bearer {SECRET}"},
            "timeout": {"connect": 1, "first_byte": 0.5, "idle": 0.5, "total": 10}, **kw}


def config(backends: dict[str, str], routes: list, **model) -> dict:  # noqa: ANN003
    """Backends by name → base url; model 'm' with ``routes`` (backend names or route dicts)."""
    rs = [{"backend": r, "model": f"up-{r}"} if isinstance(r, str) else r for r in routes]
    return {"backends": {n: _backend(u) for n, u in backends.items()},
            "models": {"m": {"routes": rs, **model}},
            "failover": {"backoff": 0.05, "cooldown": {"seconds": 5}}}


async def _stream_text(p, model: str = "m", messages=MSGS) -> str:  # noqa: ANN001
    client = p.clients[0] if p.clients else p.openai()
    stream = await client.chat.completions.create(model=model, messages=messages, stream=True)
    return "".join([ch.delta.content or "" async for chunk in stream for ch in chunk.choices])


async def _health(p) -> dict:  # noqa: ANN001
    async with aiohttp.ClientSession() as s, s.get(p.url + "/health") as r:
        return await r.json()


async def _post(p, body: dict) -> tuple[int, bytes, dict]:  # noqa: ANN001
    async with aiohttp.ClientSession() as s, s.post(p.url + "/v1/chat/completions", json=body) as r:
        return r.status, await r.read(), dict(r.headers)


ERR = orjson.dumps({"error": {"message": "boom", "type": "server_error"}})
FAULTS = {
    "refused": None,
    "hang_before_headers": _sse(hang_before=3),
    "hang_before_first_byte": _sse(hang_after=0),
    "reset_before_first_byte": _sse(reset_after=0),
    "429_retry_after": Reply(orjson.dumps({"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}), status=429, headers={"Retry-After": "30"}),
    "500": Reply(ERR, status=500),
    "529_overloaded": Reply(orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}), status=529),
    "garbage": Reply(b"<html><body>502 Bad Gateway (nginx)</body></html>", content_type="text/html"),
}
STATUS = {"refused": 502, "hang_before_headers": 504, "hang_before_first_byte": 504, "reset_before_first_byte": 502,
          "429_retry_after": 429, "500": 500, "529_overloaded": 529, "garbage": 502}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_before_first_byte_fails_over(upstream, proxy, fault):
    good = await upstream({"/v1/chat/completions": _sse()})
    bad_url = closed_port_url() if FAULTS[fault] is None else (await upstream({"/v1/chat/completions": FAULTS[fault]})).url
    p = await proxy(config({"bad": bad_url, "good": good.url}, ["bad", "good"]))
    t0 = time.monotonic()
    assert await _stream_text(p) == _text()
    assert time.monotonic() - t0 < 3, "a multi-route model does not wait out Retry-After or backoff"
    [row] = await p.rows()
    assert (row["status"], row["backend"], row["upstream_model"], row["attempts"]) == (200, "good", "up-good", 2)
    first, second = orjson.loads(row["attempt_log"])
    assert (first["backend"], first["status"]) == ("bad", STATUS[fault]) and first["error"]
    assert (second["backend"], second["status"], second.get("error")) == ("good", 200, None)
    assert SECRET not in row["attempt_log"]
    assert await _stream_text(p) == _text()  # the process keeps serving


async def test_hang_mid_stream_is_in_band_and_not_retried(upstream, proxy):
    bad = await upstream({"/v1/chat/completions": _sse(split=_events_split(), hang_after=2)})
    good = await upstream({"/v1/chat/completions": _sse()})
    p = await proxy(config({"bad": bad.url, "good": good.url}, ["bad", "good"]))
    status, body, _ = await _post(p, {"model": "m", "stream": True, "messages": MSGS})
    assert status == 200
    events = [e for e in body.split(b"\n\n") if e]
    assert len(events) == 3 and events[-1].startswith(b'data: {"error"')
    assert b"timeout.idle" in events[-1]
    assert good.seen == []  # bytes reached the client: never retried
    [row] = await p.rows()
    assert (row["status"], row["backend"], row["attempts"]) == (504, "bad", 1)
    assert "timeout.idle" in row["error"] and row["attempt_log"] is None  # one attempt: the row's columns tell it


async def test_reset_mid_stream_is_in_band_and_not_retried(upstream, proxy):
    bad = await upstream({"/v1/chat/completions": _sse(split=_events_split(), reset_after=2)})
    good = await upstream({"/v1/chat/completions": _sse()})
    cfg = config({"bad": bad.url, "good": good.url}, ["bad", "good"])
    cfg["models"]["fine"] = {"backend": "good"}
    p = await proxy(cfg)
    stream = await p.openai().chat.completions.create(model="m", messages=MSGS, stream=True)
    with pytest.raises(openai.APIError, match="broke off"):
        async for _ in stream:
            pass
    assert good.seen == []
    [row] = await p.rows()
    assert (row["status"], row["attempts"]) == (502, 1)
    assert await _stream_text(p, "fine") == _text()  # still serving


async def test_only_route_retried_after_retry_after(upstream, proxy):
    calls = []

    async def flaky(request: web.Request) -> web.StreamResponse:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return web.json_response({"error": {"message": "slow down", "type": "rate_limit_error"}}, status=429, headers={"Retry-After": "1"})
        return web.Response(body=fixture_bytes(STREAM), content_type="text/event-stream")

    up = await upstream({"/v1/chat/completions": flaky})
    p = await proxy(config({"up": up.url}, ["up"]))
    assert await _stream_text(p) == _text()
    assert calls[1] - calls[0] >= 0.95  # Retry-After honoured
    [row] = await p.rows()
    assert row["attempts"] == 2 and [a["status"] for a in orjson.loads(row["attempt_log"])] == [429, 200]


async def test_only_route_backs_off_then_gives_up_then_still_reaches_the_upstream(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(ERR, status=500)})
    p = await proxy(config({"up": up.url}, ["up"]))
    status, body, _ = await _post(p, {"model": "m", "messages": MSGS})
    assert status == 500 and orjson.loads(body)["error"]["message"].startswith("boom")
    assert len(up.seen) == 3  # max_attempts, with backoff between
    h = await _health(p)
    route = h["backends"]["up"]["routes"]["up-up"]
    assert route["state"] == "open" and route["reason"].startswith("HTTP 500") and 0 < route["seconds_left"] <= 5
    # three failures in a row set the route aside, but it is the model's last: the next request still
    # goes to it, once (no retries), and the client gets the upstream's own answer, not a 503 of ours
    status, body, _ = await _post(p, {"model": "m", "messages": MSGS})
    assert status == 500 and orjson.loads(body)["error"]["message"].startswith("boom")
    assert len(up.seen) == 4
    rows = await p.rows()
    assert [r["attempts"] for r in rows] == [3, 1] and rows[1]["attempt_log"] is None


def _switchable() -> tuple[list, Callable]:
    """A handler answering ``mode[0]`` (a callable making a response; None: the stream) and counting calls."""
    mode: list = [None]
    calls: list[float] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        calls.append(time.monotonic())
        return mode[0]() if mode[0] is not None else web.Response(body=fixture_bytes(STREAM), content_type="text/event-stream")

    handle.calls = calls  # type: ignore[attr-defined]
    return mode, handle


def _rate_limited() -> web.Response:
    return web.json_response({"error": {"message": "Rate limit reached, retry in 30s", "type": "rate_limit_error"}}, status=429, headers={"Retry-After": "30"})


def _overloaded() -> web.Response:
    return web.json_response({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529)


async def test_last_route_cooling_down_still_gets_the_request_and_its_429(upstream, proxy):
    mode, handle = _switchable()
    mode[0] = _rate_limited
    up = await upstream({"/v1/chat/completions": handle})
    p = await proxy(config({"up": up.url}, ["up"]))
    c = p.openai()
    with pytest.raises(openai.RateLimitError) as ei:
        await c.chat.completions.create(model="m", messages=MSGS)  # Retry-After 30 > max_backoff: returned at once
    assert ei.value.response.headers["Retry-After"] == "30" and len(handle.calls) == 1
    assert (await _health(p))["backends"]["up"]["routes"]["up-up"]["state"] == "open"
    # the route is cooling down for 30 s, but it is the only one: the request reaches the upstream,
    # and the client gets its 429 with its Retry-After (not a 503 "no route available")
    with pytest.raises(openai.RateLimitError) as ei:
        await c.chat.completions.create(model="m", messages=MSGS)
    assert len(handle.calls) == 2
    assert ei.value.response.headers["Retry-After"] == "30" and "Rate limit reached" in str(ei.value)
    # the upstream recovered: the very next request is served, and the breaker closes
    mode[0] = None
    assert await _stream_text(p) == _text()
    assert (await _health(p))["backends"]["up"]["routes"]["up-up"]["state"] == "closed"
    assert [r["status"] for r in await p.rows()] == [429, 429, 200]


async def test_last_route_overloaded_client_sees_overloaded(upstream, proxy):
    mode, handle = _switchable()
    mode[0] = _overloaded
    up = await upstream({"/v1/chat/completions": handle})
    p = await proxy(config({"up": up.url}, ["up"]))
    for n in (3, 4):  # then the route is set aside; still the only one, so still asked
        status, body, _ = await _post(p, {"model": "m", "messages": MSGS})
        assert (status, orjson.loads(body)["error"]["message"]) == (529, "Overloaded")
        assert len(handle.calls) == n
    assert (await _health(p))["backends"]["up"]["routes"]["up-up"]["state"] == "open"


async def test_cooling_route_is_skipped_while_another_works(upstream, proxy):
    mode, handle = _switchable()
    mode[0] = _rate_limited
    rl = await upstream({"/v1/chat/completions": handle})
    good = await upstream({"/v1/chat/completions": _sse()})
    p = await proxy(config({"rl": rl.url, "good": good.url}, ["rl", "good"]))
    for _ in range(3):
        assert await _stream_text(p) == _text()
    assert len(handle.calls) == 1 and len(good.seen) == 3  # set aside after its 429: somewhere else to go
    last = (await p.rows())[-1]
    assert [a.get("skipped", "")[:19] for a in orjson.loads(last["attempt_log"])] == ["route cooling down ", ""]


@pytest.mark.parametrize("fault", ["hang_before_headers", "hang_before_first_byte"])
async def test_timeout_is_not_retried_on_the_only_route(upstream, proxy, fault):
    up = await upstream({"/v1/chat/completions": FAULTS[fault]})
    p = await proxy(config({"up": up.url}, ["up"]))  # timeout.first_byte 0.5, max_attempts 3
    t0 = time.monotonic()
    status, body, _ = await _post(p, {"model": "m", "messages": MSGS})
    took = time.monotonic() - t0
    assert status == 504 and "timeout.first_byte" in orjson.loads(body)["error"]["message"]
    assert len(up.seen) == 1 and took < 1.0, f"{len(up.seen)} attempts in {took:.1f} s: the timeout was multiplied"
    [row] = await p.rows()
    assert (row["status"], row["attempts"]) == (504, 1)


@pytest.mark.parametrize("stream", [False, True])
async def test_max_time_cuts_the_attempt_still_running(upstream, proxy, stream):
    slow = {"a": FAULTS["hang_before_headers"], "b": _sse(hang_after=0) if stream else FAULTS["hang_before_headers"]}
    ups = {n: await upstream({"/v1/chat/completions": r}) for n, r in slow.items()}
    cfg = config({n: u.url for n, u in ups.items()}, ["a", "b"])
    cfg["failover"]["max_time"] = 1.0
    for b in cfg["backends"].values():
        b["timeout"]["first_byte"] = 0.7  # a times out at 0.7 s; b would at 1.4 s, past max_time
    p = await proxy(cfg)
    t0 = time.monotonic()
    status, body, _ = await _post(p, {"model": "m", "stream": stream, "messages": MSGS})
    took = time.monotonic() - t0
    msg = orjson.loads(body)["error"]["message"]
    assert status == 504 and "failover.max_time" in msg and "tried: a/up-a 504, b/up-b 504" in msg
    assert 0.95 < took < 1.3, took
    [row] = await p.rows()
    assert row["status"] == 504 and "failover.max_time" in row["error"] and row["attempts"] == 2
    h = await _health(p)
    assert "up-b" not in h["backends"]["b"].get("routes", {}) or h["backends"]["b"]["routes"]["up-b"]["failures"] == 0  # not b's fault


async def test_max_time_does_not_cut_a_stream_that_started(upstream, proxy):
    up = await upstream({"/v1/chat/completions": _sse(split=300, gap=0.06)})  # about 1.7 s of streaming
    cfg = config({"up": up.url}, ["up"])
    cfg["failover"]["max_time"] = 0.5
    p = await proxy(cfg)
    assert await _stream_text(p) == _text()
    [row] = await p.rows()
    assert row["status"] == 200 and row["total_ms"] > 1000


async def test_client_error_is_returned_not_retried(upstream, proxy):
    bad = await upstream({"/v1/chat/completions": Reply(orjson.dumps({"error": {"message": "Invalid value for 'temperature'", "type": "invalid_request_error", "param": "temperature"}}), status=400)})
    good = await upstream({"/v1/chat/completions": _sse()})
    p = await proxy(config({"bad": bad.url, "good": good.url}, ["bad", "good"]))
    with pytest.raises(openai.BadRequestError) as ei:
        await p.openai().chat.completions.create(model="m", messages=MSGS, temperature=9)
    assert "temperature" in str(ei.value)
    assert good.seen == [] and len(bad.seen) == 1


async def test_context_length_error_goes_to_context_fallback_route(upstream, proxy):
    small = await upstream({"/v1/chat/completions": Reply(orjson.dumps({"error": {"message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}), status=400)})
    other = await upstream({"/v1/chat/completions": _sse()})
    big = await upstream({"/v1/chat/completions": _sse()})
    p = await proxy(config({"small": small.url, "other": other.url, "big": big.url},
                           ["small", "other", {"backend": "big", "model": "up-big", "context_fallback": True}]))
    assert await _stream_text(p) == _text()
    assert other.seen == [] and len(big.seen) == 1
    [row] = await p.rows()
    assert row["backend"] == "big" and [a["status"] for a in orjson.loads(row["attempt_log"])] == [400, 200]


async def test_every_route_failing_gives_a_clear_error_and_keeps_serving(upstream, proxy):
    bad = await upstream({"/v1/chat/completions": Reply(ERR, status=500)})
    ok = await upstream({"/v1/chat/completions": _sse()})
    cfg = config({"dead": closed_port_url(), "bad": bad.url, "ok": ok.url}, ["dead", "bad"])
    cfg["models"]["fine"] = {"backend": "ok"}
    p = await proxy(cfg)
    with pytest.raises(openai.InternalServerError) as ei:
        await p.openai().chat.completions.create(model="m", messages=MSGS, stream=True)
    assert "tried: dead/up-dead 502, bad/up-bad 500" in str(ei.value)
    assert await _stream_text(p, "fine") == _text()
    rows = await p.rows()
    assert rows[0]["status"] == 500 and rows[0]["attempts"] == 2 and rows[1]["status"] == 200


async def test_key_rotation_401_sets_key_aside_until_reload(upstream, proxy):
    used = []

    async def keyed(request: web.Request) -> web.StreamResponse:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        used.append(key)
        if key == "key-aaaa-0":
            return web.json_response({"error": {"message": "Incorrect API key provided: key-aaaa-0", "type": "invalid_request_error"}}, status=401)
        if key == "key-bbbb-1":
            return web.json_response({"error": {"message": "quota", "type": "rate_limit_error"}}, status=429, headers={"Retry-After": "20"})
        return web.Response(body=fixture_bytes(STREAM), content_type="text/event-stream")

    up = await upstream({"/v1/chat/completions": keyed})
    cfg = config({"up": up.url}, ["up"])
    cfg["backends"]["up"]["keys"] = ["key-aaaa-0", "key-bbbb-1", "key-cccc-2"]
    cfg["backends"]["up"]["headers"] = {"Authorization": "Bearer {key}"}
    p = await proxy(cfg)
    for i in range(6):  # different conversations start on different keys; all end on key #3
        assert await _stream_text(p, messages=[{"role": "user", "content": f"conversation {i}"}]) == _text()
    assert used.count("key-aaaa-0") == 1 and used.count("key-bbbb-1") == 1  # each bad key tried once, then skipped
    h = await _health(p)
    keys = h["backends"]["up"]["keys"]
    assert keys[0] == {"key": 1, "state": "disabled", "reason": "HTTP 401 — until reload"}
    assert keys[1]["state"] == "cooling" and 15 < keys[1]["seconds_left"] <= 20 and keys[2] == {"key": 3, "state": "ok"}
    raw = orjson.dumps(h).decode() + "".join(str(r) for r in await p.rows())
    assert "key-aaaa" not in raw and "key-bbbb" not in raw and "key-cccc" not in raw
    story = [orjson.loads(r["attempt_log"]) for r in await p.rows()]
    assert all((s[-1]["key"], s[-1]["status"]) == (3, 200) for s in story)
    assert sorted((a["key"], a["status"]) for s in story for a in s[:-1]) == [(1, 401), (2, 429)]
    assert await reload(p.app)
    h = await _health(p)
    assert [k["state"] for k in h["backends"]["up"]["keys"]] == ["ok", "ok", "ok"]


async def test_sticky_keys_keep_a_conversation_on_one_key(upstream, proxy):
    up = await upstream({"/v1/chat/completions": _sse()})
    cfg = config({"up": up.url}, ["up"])
    cfg["backends"]["up"]["keys"] = [f"key-{i}-xxxxxxxx" for i in range(4)]
    cfg["backends"]["up"]["headers"] = {"Authorization": "Bearer {key}"}
    p = await proxy(cfg)
    convo = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    for turn in range(4):
        convo = convo + [{"role": "assistant", "content": f"a{turn}"}, {"role": "user", "content": f"q{turn}"}]
        await _stream_text(p, messages=convo)
    keys = [s.headers["Authorization"] for s in up.seen]
    assert len(set(keys)) == 1
    for i in range(12):
        await _stream_text(p, messages=[{"role": "user", "content": f"other {i}"}])
    assert len({s.headers["Authorization"] for s in up.seen}) >= 3


async def test_burst_three_routes_dead_and_rate_limited(upstream, proxy):
    """The issue's 'done when', in small: a dead route, a rate-limited one, one that answers."""
    rl = await upstream({"/v1/chat/completions": Reply(orjson.dumps({"error": {"message": "Rate limit", "type": "rate_limit_error"}}), status=429)})
    good = await upstream({"/v1/chat/completions": _sse(split="random")})
    p = await proxy(config({"dead": closed_port_url(), "rl": rl.url, "good": good.url}, ["dead", "rl", "good"]))
    texts = await asyncio.gather(*(_stream_text(p, messages=[{"role": "user", "content": f"n{i}"}]) for i in range(60)))
    assert all(t == _text() for t in texts)
    h = await _health(p)
    assert h["backends"]["dead"]["state"] == "open" and "unreachable" in h["backends"]["dead"]["reason"]
    routes = {r["backend"]: r for r in h["models"]["m"]["routes"]}
    assert routes["rl"]["state"] == "open" and routes["rl"]["reason"].startswith("HTTP 429")
    assert routes["good"]["state"] == "closed"
    assert (routes["dead"]["state"], routes["dead"]["set_aside"]) == ("open", "backend") and "unreachable" in routes["dead"]["reason"]
    # once set aside, routes are skipped without an attempt
    assert await _stream_text(p) == _text()
    last = (await p.rows())[-1]
    assert last["attempts"] == 1 and [a.get("skipped", "")[:5] for a in orjson.loads(last["attempt_log"])] == ["backe", "route", ""]


async def test_reload_dropping_a_backend_mid_stream_keeps_the_stream_and_its_count(upstream, proxy, caplog):
    """A SIGHUP that removes (and another that brings back) the backend of a stream in flight."""
    slow = await upstream({"/v1/chat/completions": _sse(split=300, gap=0.06)})  # about 1.7 s of streaming
    other = await upstream({"/v1/chat/completions": _sse()})
    both = config({"slow": slow.url, "other": other.url}, ["slow", "other"])
    p = await proxy(both)
    running = asyncio.create_task(_stream_text(p))
    while not slow.seen:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # under way
    p.path.write_text(yaml.safe_dump(config({"other": other.url}, ["other"])))
    assert await reload(p.app)
    assert await _stream_text(p) == _text()  # served by the new config meanwhile
    p.path.write_text(yaml.safe_dump(both))
    assert await reload(p.app)
    routes = {r["backend"]: r for r in (await _health(p))["models"]["m"]["routes"]}
    assert routes["slow"]["in_flight"] == 1, "the stream still running on 'slow' is counted (least_busy reads it)"
    assert not running.done()
    assert await running == _text()
    rows = await p.rows()
    assert [(r["backend"], r["status"], r["error"]) for r in rows] == [("slow", 200, None), ("other", 200, None)]
    routes = {r["backend"]: r for r in (await _health(p))["models"]["m"]["routes"]}
    assert routes["slow"]["in_flight"] == 0
    assert "KeyError" not in caplog.text and "unexpected error" not in caplog.text
