"""Routes that choose themselves: strategy auto (scoring), strategy designator, active health checks, list_unhealthy."""
from __future__ import annotations

import math
import random

import pytest

from llmproxy.balance import STALE, Balancer, RouteStats, auto_order, auto_scores
from llmproxy.config import Failover
from llmproxy.errors import ProxyError
from test_balance import Clock, resolved, target

W = (4.0, 2.0, 1.0, 1.0)  # the defaults: errors, latency, load, cost


# ------------------------------------------------------------------ auto: the scoring table

# (routes' stats, weights, the route that must win)
TABLE = [
    # healthy beats fast: errors weigh 4, latency 2
    ([RouteStats(errors=0.5, latency=100), RouteStats(errors=0.0, latency=400)], W, 1),
    # latency decides when both are healthy
    ([RouteStats(errors=0.0, latency=900), RouteStats(errors=0.0, latency=120), RouteStats(errors=0.0, latency=400)], W, 1),
    # load decides between equals
    ([RouteStats(errors=0.0, latency=200, load=5), RouteStats(errors=0.0, latency=200, load=1)], W, 1),
    # price decides between equals; a route without a price counts as the dearest
    ([RouteStats(errors=0.0, latency=200), RouteStats(errors=0.0, latency=200, price=18.0), RouteStats(errors=0.0, latency=200, price=0.5)], W, 2),
    # a route with no data yet goes first, whatever the others' numbers
    ([RouteStats(errors=0.0, latency=50, price=0.1), RouteStats()], W, 1),
    # weights change the mix: cost alone
    ([RouteStats(errors=0.0, latency=100, price=18.0), RouteStats(errors=0.9, latency=3000, price=0.5)], (0, 0, 0, 1), 1),
    # latency alone: the slower but error-free route loses
    ([RouteStats(errors=0.0, latency=3000), RouteStats(errors=0.9, latency=100)], (0, 1, 0, 0), 1),
]


@pytest.mark.parametrize("stats, weights, winner", TABLE)
def test_auto_scoring_table(stats, weights, winner):
    assert auto_order(stats, weights)[0] == winner
    scores = auto_scores(stats, weights)
    assert min(range(len(stats)), key=scores.__getitem__) == winner or stats[winner].cold


def test_auto_scores_are_normalised_across_routes():
    # Each measure is scaled by the routes' largest value: only ratios matter, not units.
    a = auto_scores([RouteStats(errors=0.0, latency=100), RouteStats(errors=0.0, latency=400)], W)
    b = auto_scores([RouteStats(errors=0.0, latency=1000), RouteStats(errors=0.0, latency=4000)], W)
    assert a == pytest.approx(b) and a[1] - a[0] == pytest.approx(2 * 0.75)


def test_auto_ties_go_round_robin():
    same = [RouteStats(errors=0.0, latency=200)] * 3
    assert [auto_order(same, W, turn)[0] for turn in range(6)] == [0, 1, 2, 0, 1, 2]


def test_auto_balancer_with_a_fake_clock():
    clock = Clock()
    bal = Balancer(Failover(failures=2), clock=clock, rng=random.Random(1))
    a, b = target("a"), target("b")
    res = resolved(a, b, strategy="auto")
    names = lambda: [t.backend.name for t in bal.order(res)]  # noqa: E731
    # no data at all: round robin between the two cold routes
    assert {names()[0] for _ in range(4)} == {"a", "b"}
    bal.succeeded(a, None, 100.0)
    assert names()[0] == "b"  # b has no data yet: it is tried so it earns some
    bal.succeeded(b, None, 2000.0)
    assert all(names()[0] == "a" for _ in range(5))  # both known: the fast one
    # a starts failing: its decayed error rate outweighs b's slowness
    bal.failed(a, None, ProxyError(500, "boom"))
    bal.failed(a, None, ProxyError(500, "boom"))
    assert all(names()[0] == "b" for _ in range(5))
    s = bal.stats(a, clock())
    assert s.errors == 1.0  # the open breaker counts as all errors
    # time passes with no traffic on a: its data goes stale, it is cold again and gets tried
    clock.t += STALE + 1
    bal.succeeded(b, None, 2000.0)  # b stays fresh
    assert bal.stats(a, clock()).cold and names()[0] == "a"
    # a client's own error (400) does not count against the route
    bal.succeeded(a, None, 100.0)
    before = bal.stats(a, clock()).errors
    bal.failed(a, None, ProxyError(400, "bad request"))
    assert bal.stats(a, clock()).errors == before < 0.5


def test_auto_error_rate_decays():
    clock = Clock()
    bal = Balancer(Failover(failures=100), clock=clock)
    a = target("a")
    bal.failed(a, None, ProxyError(503, "down"))
    r0 = bal.stats(a, clock()).errors
    clock.t += 30
    assert bal.stats(a, clock()).errors == pytest.approx(r0 * 0.5 ** 0.5)
    assert math.isinf(bal.stats(a, clock()).price)


async def test_auto_moves_traffic_off_a_slow_backend_and_back(upstream, proxy, monkeypatch):
    import asyncio

    from test_failover import _post, _sse, config

    monkeypatch.setattr("llmproxy.balance.STALE", 0.6)
    fast = await upstream({"/v1/chat/completions": _sse()})
    slow = await upstream({"/v1/chat/completions": _sse(hang_before=0.3)})
    p = await proxy(config({"fast": fast.url, "slow": slow.url}, ["slow", "fast"], strategy="auto"))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    for _ in range(8):
        assert (await _post(p, body))[0] == 200
    rows = await p.rows()
    assert [r["backend"] for r in rows[2:]] == ["fast"] * 6  # both tried once (no data yet), then the fast one
    slow.routes["/v1/chat/completions"] = _sse()  # the slow one recovers
    await asyncio.sleep(0.7)  # its numbers go stale: it is tried again, and found fast
    for _ in range(12):
        assert (await _post(p, body))[0] == 200
    later = [r["backend"] for r in (await p.rows())[8:]]
    assert later[0] == "slow", later
    assert p.state.balance.first_byte[("slow", "up-slow")] < 150  # a fresh measure, not blended with the slow past
    # And back: the other one turns slow.  Of two equals, which one wins turns on a few ms, so the one winning now
    # may not be tried for a while, and then at any point (in 1 run of ~12 on a loaded machine, the 3rd or 4th of the
    # six below): once the numbers of both are stale, each is tried again, and the traffic stays on the one now fast
    slow.routes["/v1/chat/completions"], fast.routes["/v1/chat/completions"] = _sse(), _sse(hang_before=0.3)
    await asyncio.sleep(0.7)
    for _ in range(6):
        assert (await _post(p, body))[0] == 200
    assert [r["backend"] for r in (await p.rows())[-4:]] == ["slow"] * 4


# ------------------------------------------------------------------ designator

def _answer(text: str, delay: float = 0.0):  # noqa: ANN202
    """A designator fake: an OpenAI chat completion saying ``text`` (after ``delay`` seconds)."""
    import asyncio

    import orjson
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.json_response({"id": "c1", "object": "chat.completion", "created": 1, "model": "picker-mini",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 57, "completion_tokens": 1, "total_tokens": 58}})
    assert orjson
    return handle


async def _designator_setup(upstream, proxy, answer: str, delay: float = 0.0):  # noqa: ANN001, ANN202
    from test_failover import _backend, _sse

    big = await upstream({"/v1/chat/completions": _sse()})
    local = await upstream({"/v1/chat/completions": _sse()})
    picker = await upstream({"/v1/chat/completions": _answer(answer, delay)})
    cfg = {
        "backends": {"big": _backend(big.url), "local": _backend(local.url), "picker": _backend(picker.url)},
        "models": {
            "picker-mini": {"backend": "picker", "price": {"input": 1, "output": 2}},
            "claude": {"backend": "big", "model": "claude-big"},
            "llama": {"backend": "local", "model": "llama-local"},
            "pick": {"strategy": "designator", "designator": "picker-mini", "designator_timeout": 0.5,
                     "routes": [{"model": "claude", "description": "hard reasoning, long code"},
                                {"model": "llama", "description": "chit-chat, short answers"}]},
        },
    }
    p = await proxy(cfg)
    return p, picker


TURN1 = [{"role": "user", "content": "hello there!"}]
TURN2 = TURN1 + [{"role": "assistant", "content": "Hi! How can I help?"}, {"role": "user", "content": "write a B-tree in Rust"}]


async def _ask(p, messages):  # noqa: ANN001, ANN202
    from test_failover import _post

    status, _, _ = await _post(p, {"model": "pick", "messages": messages, "stream": True})
    return status


async def test_designator_answering_route_2_sends_there_and_keeps_the_conversation(upstream, proxy):
    p, picker = await _designator_setup(upstream, proxy, "2")
    assert await _ask(p, TURN1) == 200
    rows = await p.rows()
    [main] = [r for r in rows if r["endpoint"] != "designate"]
    [des] = [r for r in rows if r["endpoint"] == "designate"]
    assert (main["backend"], main["upstream_model"], main["model"]) == ("local", "llama-local", "pick")
    assert main["route_choice"] == "route 2 (llama), chosen by picker-mini"
    assert des["parent_id"] == main["id"] and des["status"] == 200 and des["backend"] == "picker"
    assert (des["prompt_tokens"], des["completion_tokens"]) == (57, 1) and des["cost_usd"] == pytest.approx((57 * 1 + 1 * 2) / 1e6)
    asked = picker.seen[0].body
    assert "1. claude: hard reasoning, long code" in asked["messages"][0]["content"]
    assert "2. llama: chit-chat, short answers" in asked["messages"][0]["content"]
    assert "hello there!" in asked["messages"][1]["content"] and asked["stream"] is False
    # The second turn of the same conversation stays on the model chosen, without asking again
    assert await _ask(p, TURN2) == 200
    rows = await p.rows()
    assert len(picker.seen) == 1 and len(rows) == 3
    assert rows[-1]["backend"] == "local" and rows[-1]["route_choice"] == "route 2 (llama), kept for this conversation"


async def test_designator_garbage_goes_to_the_first_route_and_says_so(upstream, proxy):
    p, picker = await _designator_setup(upstream, proxy, "I think the best model is probably the second one")
    assert await _ask(p, TURN1) == 200
    rows = await p.rows()
    main = next(r for r in rows if r["endpoint"] != "designate")
    des = next(r for r in rows if r["endpoint"] == "designate")
    assert main["backend"] == "big" and main["route_choice"].startswith("first route: the designator answered 'I think")
    assert des["parent_id"] == main["id"] and des["status"] == 200
    # a fallback is not kept: the next turn asks again
    assert await _ask(p, TURN2) == 200
    assert len(picker.seen) == 2


async def test_designator_too_slow_times_out_to_the_first_route(upstream, proxy):
    import time

    p, picker = await _designator_setup(upstream, proxy, "2", delay=3)
    t0 = time.monotonic()
    assert await _ask(p, TURN1) == 200
    assert time.monotonic() - t0 < 2
    rows = await p.rows()
    main = next(r for r in rows if r["endpoint"] != "designate")
    des = next(r for r in rows if r["endpoint"] == "designate")
    assert main["backend"] == "big"
    assert main["route_choice"] == "first route: the designator picker-mini did not answer within designator_timeout (0.5 s)"
    assert (des["parent_id"], des["status"], des["error_type"]) == (main["id"], 504, "timeout")


def test_designator_prompt_and_parse_are_strict():
    from llmproxy.config import Route
    from llmproxy.designate import parse, prompt
    from llmproxy.resolve import Target
    from test_balance import backend

    ts = [Target("pick", Route(backend("big"), "claude-big", {}, None, description="code", name="claude"), "claude-big"),
          Target("pick", Route(backend("local"), "llama-local", {}, None, name="llama"), "llama-local")]
    assert [parse(a, ts) for a in ("2", " 1\n", "`llama`", "Claude.", "claude-big", "3", "0", "two", "model 2", "")] == \
        [1, 0, 1, 0, 0, None, None, None, None, None]
    msgs = prompt(ts, "x" * 5000, limit=100)
    assert "1. claude: code\n2. llama\n" in msgs[0]["content"] and len(msgs[1]["content"]) < 140


def test_designator_config_errors(tmp_path):
    import yaml

    from llmproxy.config import ConfigError, load_config

    def load(models: dict) -> None:
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump({"backends": {"b": {"api": "openai", "url": "http://x/v1"}}, "models": {"a": {"backend": "b"}, **models}}))
        load_config(path)

    with pytest.raises(ConfigError, match=r"models.p.designator: strategy: designator needs"):
        load({"p": {"strategy": "designator", "routes": ["a"]}})
    with pytest.raises(ConfigError, match=r"models.p.designator: only used with strategy: designator"):
        load({"p": {"designator": "a", "routes": ["a"]}})
    with pytest.raises(ConfigError, match=r"picks routes itself"):
        load({"p": {"strategy": "designator", "designator": "q", "routes": ["a"]}, "q": {"strategy": "designator", "designator": "a", "routes": ["a"]}})


# ------------------------------------------------------------------ health checks

async def test_health_check_marks_a_dead_backend_down_and_brings_it_back(upstream, proxy):
    import asyncio

    import orjson

    from conftest import Reply
    from test_failover import _backend, _health, _post, _sse

    models = Reply(orjson.dumps({"object": "list", "data": [{"id": "up-a"}]}))
    a = await upstream({"/v1/chat/completions": _sse(), "/v1/models": Reply(b'{"error": {"message": "down"}}', status=503)})
    b = await upstream({"/v1/chat/completions": _sse(), "/v1/models": models})
    unused = await upstream({"/v1/models": models})
    hc = {"interval": 1, "timeout": 0.5}
    p = await proxy({"backends": {"a": _backend(a.url, health_check=hc), "b": _backend(b.url, health_check=hc),
                                  "unused": _backend(unused.url, health_check=hc)},
                     "models": {"m": {"routes": [{"backend": "a", "model": "up-a"}, {"backend": "b", "model": "up-b"}]}}})
    await asyncio.sleep(0.3)
    h = await _health(p)
    assert h["backends"]["a"]["state"] == "open" and h["backends"]["a"]["health_check"]["state"] == "failed"
    assert "health check: HTTP 503" in h["backends"]["a"]["reason"]
    assert h["backends"]["b"]["health_check"]["state"] == "ok" and "health_check" not in h["backends"]["unused"]
    assert not unused.seen  # no model routes there: never checked
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    assert (await _post(p, body))[0] == 200
    rows = await p.rows()
    assert rows[-1]["backend"] == "b"  # a is skipped while b can serve
    assert not [s for s in a.seen if s.path == "/v1/chat/completions"]
    a.routes["/v1/models"] = models  # a comes back
    await asyncio.sleep(1.2)
    h = await _health(p)
    assert h["backends"]["a"]["state"] == "closed" and h["backends"]["a"]["health_check"]["state"] == "ok"
    assert (await _post(p, body))[0] == 200
    assert (await p.rows())[-1]["backend"] == "a"
    n = len([s for s in b.seen if s.path == "/v1/models"])
    assert 2 <= n <= 3  # every interval, never more often


async def test_list_unhealthy_false_hides_models_whose_every_route_is_down(upstream, proxy):
    import asyncio

    import aiohttp
    import orjson

    from conftest import Reply
    from test_failover import _backend

    models = Reply(orjson.dumps({"object": "list", "data": [{"id": "x"}]}))
    dead = await upstream({"/v1/models": Reply(b'{"error": {"message": "down"}}', status=503)})
    ok = await upstream({"/v1/models": models})
    hc = {"interval": 30, "timeout": 0.5}
    cfg = {"backends": {"dead": _backend(dead.url, health_check=hc), "ok": _backend(ok.url, health_check=hc)},
           "models": {"gone": {"backend": "dead"}, "fine": {"backend": "ok"},
                      "mixed": {"routes": [{"backend": "dead", "model": "a"}, {"backend": "ok", "model": "b"}]}},
           "list_unhealthy": False}
    p = await proxy(cfg)
    await asyncio.sleep(0.3)
    async with aiohttp.ClientSession() as s:
        async with s.get(p.url + "/v1/models") as r:  # Open-WebUI's OpenAI connection
            ids = [m["id"] for m in (await r.json())["data"]]
        async with s.get(p.url + "/api/tags") as r:  # its Ollama connection
            tags = [m["name"] for m in (await r.json())["models"]]
    assert ids == ["fine", "mixed"] and tags == ["fine", "mixed"]


async def test_health_check_with_a_model_sends_the_smallest_completion_in_the_backends_format(upstream, proxy):
    """``health_check.model``: one non-stream completion of one token, translated to the backend's API
    (here Anthropic's /v1/messages); a 401 sets the backend aside, a good answer brings it back."""
    import asyncio

    from conftest import Reply, fixture_bytes
    from test_failover import _health

    bad = Reply(b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}', status=401)
    up = await upstream({"/v1/messages": bad})
    backend = {"api": "anthropic", "url": up.url, "headers": {"x-api-key": "sk-ant-health-0123"},
               "health_check": {"interval": 1, "timeout": 0.5, "model": "claude-haiku"}}
    p = await proxy({"backends": {"an": backend}, "models": {"m": {"backend": "an", "model": "claude-sonnet"}}})
    await asyncio.sleep(0.3)
    h = await _health(p)
    assert h["backends"]["an"]["health_check"]["state"] == "failed" and "HTTP 401" in h["backends"]["an"]["reason"]
    sent = up.seen[0]
    assert sent.path == "/v1/messages" and sent.body["model"] == "claude-haiku" and sent.body["max_tokens"] == 1
    assert sent.body.get("stream") in (None, False) and sent.headers["x-api-key"] == "sk-ant-health-0123"
    up.routes["/v1/messages"] = Reply(fixture_bytes("anthropic/nonstream-text.json"))
    await asyncio.sleep(1.2)
    h = await _health(p)
    assert h["backends"]["an"]["health_check"]["state"] == "ok" and h["backends"]["an"]["state"] == "closed"
