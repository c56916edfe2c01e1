"""balance.py directly: strategy distributions, the breaker state machine, keys, classification, plans."""
from __future__ import annotations

import email.utils
import random
import time
from collections import Counter

import pytest

from conftest import Reply, fixture_bytes
from llmproxy.balance import CLOSED, CONTEXT, FINAL, HALF_OPEN, KEY, OPEN, RETRY, Balancer, Breaker, Plan, classify, parse_retry_after, sticky_hash
from llmproxy.config import Backend, Failover, Route, Timeout
from llmproxy.errors import ProxyError
from llmproxy.resolve import Resolved, Target

T = Timeout(1, 1, 1, 1)


def backend(name: str, keys: tuple[str, ...] = ()) -> Backend:
    return Backend(name, "openai", "http://x", (), keys, False, True, T)


def target(name: str, weight: float = 1.0, price: dict | None = None, context_fallback: bool = False, keys: tuple[str, ...] = ()) -> Target:
    return Target("m", Route(backend(name, keys), name, {}, price, weight, context_fallback), name)


def resolved(*ts: Target, strategy: str = "fallback", max_attempts: int = 3) -> Resolved:
    return Resolved("m", "m", ts, strategy, max_attempts)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def firsts(bal: Balancer, res: Resolved, n: int) -> Counter:
    return Counter(bal.order(res)[0].backend.name for _ in range(n))


def test_weighted_distribution_within_5_percent():
    bal = Balancer(rng=random.Random(7))
    res = resolved(target("a", 1), target("b", 3), target("c", 6), target("zero", 0), strategy="weighted")
    got = firsts(bal, res, 2000)
    for name, share in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        assert abs(got[name] / 2000 - share) < 0.05, (name, got)
    assert got["zero"] == 0
    assert bal.order(res)[-1].backend.name == "zero"  # weight 0: only as the last resort


def test_round_robin_cycles_and_fallback_keeps_order():
    bal = Balancer()
    rr = resolved(target("a"), target("b"), target("c"), strategy="round_robin")
    assert [bal.order(rr)[0].backend.name for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    assert [t.backend.name for t in bal.order(rr)] == ["a", "b", "c"]
    fb = resolved(target("a"), target("b"))
    assert {tuple(t.backend.name for t in bal.order(fb)) for _ in range(20)} == {("a", "b")}


def test_least_busy_fastest_cheapest():
    bal = Balancer(rng=random.Random(1))
    a, b, c = target("a", price={"input": 3, "output": 15}), target("b", price={"input": 0.1, "output": 0.4}), target("c")
    bal.in_flight.update({("a", "a"): 5, ("b", "b"): 1, ("c", "c"): 3})
    assert [t.backend.name for t in bal.order(resolved(a, b, c, strategy="least_busy"))] == ["b", "c", "a"]
    assert [t.backend.name for t in bal.order(resolved(a, b, c, strategy="cheapest"))] == ["b", "a", "c"]  # unpriced last
    bal.first_byte.update({("a", "a"): 900.0, ("b", "b"): 120.0, ("c", "c"): 400.0})
    got = firsts(bal, resolved(a, b, c, strategy="fastest"), 2000)
    assert got["b"] / 2000 > 0.9 and got["a"] > 0 and got["c"] > 0  # mostly the fastest, sometimes exploring
    bal.succeeded(b, None, 2000.0)  # b got slow: the moving average moves
    assert bal.first_byte[("b", "b")] == pytest.approx(120 * 0.7 + 2000 * 0.3)


def test_breaker_state_machine():
    s = Failover(failures=3, cooldown=10, cooldown_max=35)
    br, now = Breaker(), 0.0
    for i in range(2):
        br.failure("HTTP 500: boom", now, s)
        assert br.state == CLOSED and br.allow(now)
    br.failure("HTTP 500: boom", now, s)
    assert br.state == OPEN and not br.allow(now + 9.9)
    assert br.view(now + 4)["seconds_left"] == 6.0 and br.view(now + 4)["reason"] == "HTTP 500: boom"
    # the interval passed: exactly one probe
    assert br.allow(now + 10) and br.state == HALF_OPEN
    assert not br.allow(now + 10.1)
    br.failure("HTTP 502: still down", now + 11, s)  # the probe failed: open again, twice as long
    assert br.state == OPEN and br.until == now + 11 + 20
    assert br.allow(now + 31) and br.state == HALF_OPEN
    br.failure("x", now + 31, s)
    assert br.until == now + 31 + 35  # capped at cooldown.max
    assert br.allow(now + 66)
    br.release()  # a probe without verdict (client went away): another may probe
    assert br.allow(now + 66)
    br.success()
    assert (br.state, br.failures, br.trips) == (CLOSED, 0, 0) and br.allow(now + 66)
    # a success in between resets the count
    br.failure("x", 100, s), br.failure("x", 100, s), br.success(), br.failure("x", 100, s)
    assert br.state == CLOSED


def test_retry_after_opens_for_exactly_that_long():
    s = Failover(failures=3, cooldown=10)
    br = Breaker()
    br.failure("HTTP 429", 0.0, s, at_least=2.0)
    assert br.state == OPEN and br.until == 2.0 and br.trips == 0
    br.failure("HTTP 429", 1.0, s, at_least=5.0)  # asked while open (the last route goes anyway): that long, no trip
    assert br.state == OPEN and br.until == 6.0 and br.trips == 0


def test_balancer_breakers_per_backend_and_route():
    clock = Clock()
    bal = Balancer(Failover(failures=2, cooldown=5), clock=clock)
    a, b = target("a"), target("b")
    unreachable = ProxyError(502, "backend 'a' is unreachable", code="upstream_unreachable")
    bal.failed(a, None, unreachable), bal.failed(a, None, unreachable)
    assert bal.backends["a"].state == OPEN and ("a", "a") not in bal.routes
    bal.failed(b, None, ProxyError(400, "bad temperature"))  # the client's fault: no count
    assert ("b", "b") not in bal.routes
    res = resolved(a, b)
    plan = Plan(bal, res)
    import asyncio

    step = asyncio.run(plan.next(None))
    assert step.target is b and plan.log[0]["skipped"].startswith("backend cooling down 5 s more")
    plan.release()
    clock.t += 5  # half-open: this plan probes a, the next one skips it
    p1, p2 = Plan(bal, res), Plan(bal, res)
    assert asyncio.run(p1.next(None)).target is a
    assert asyncio.run(p2.next(None)).target is b and "probe is in flight" in p2.log[0]["skipped"]
    bal.succeeded(a, None, 10.0)
    assert bal.backends["a"].state == CLOSED
    # every route cooling down: the one whose cooldown ends first goes anyway (the last route is never
    # shut), once; the other is told as skipped
    for _ in range(2):
        bal.failed(a, None, ProxyError(500, "x"))
    clock.t += 1
    for _ in range(2):
        bal.failed(b, None, ProxyError(529, "Overloaded"))
    plan = Plan(bal, res)
    assert plan.first().target is a and [e["backend"] for e in plan.log] == ["b"]
    assert asyncio.run(plan.next(ProxyError(500, "x"))) is None
    plan = Plan(bal, resolved(b))
    assert plan.first().target is b and plan.log == []
    assert asyncio.run(plan.next(ProxyError(529, "Overloaded"))) is None  # not retried: it is cooling down


def test_keys_sticky_skip_cooling_disable_until_reload():
    clock = Clock()
    bal = Balancer(Failover(cooldown=10), clock=clock)
    b = backend("k", ("k0", "k1", "k2", "k3"))
    h1 = sticky_hash({"messages": [{"role": "user", "content": "hello"}]})
    h1b = sticky_hash({"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "more"}]})
    assert h1 == h1b  # up to the first user message: the first turn and the next share a key...
    h2 = sticky_hash({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "1"}]})
    h2b = sticky_hash({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "2"}]})
    assert h2 == h2b  # ...and nothing after it: a conversation keeps its key as it grows
    assert h1 != sticky_hash({"messages": [{"role": "user", "content": "other"}]})
    assert sticky_hash({"input": "x"}) is None
    k = bal.pick_key(b, h2)
    assert all(bal.pick_key(b, h2) == k for _ in range(10))
    spread = Counter(bal.pick_key(b, sticky_hash({"messages": [{"role": "user", "content": str(i)}]})) for i in range(400))
    assert len(spread) == 4 and min(spread.values()) > 60
    # 429 on the conversation's key: skipped while others are usable, back after the cooldown
    bal.key_failed(b, k, ProxyError(429, "slow down", retry_after=3))
    assert bal.pick_key(b, h2) == (k + 1) % 4
    clock.t += 3
    assert bal.pick_key(b, h2) == k
    # 401: until reload
    bal.key_failed(b, k, ProxyError(401, "bad key"))
    clock.t += 10_000
    assert bal.pick_key(b, h2) != k and bal.view_backend(b)["keys"][k] == {"key": k + 1, "state": "disabled", "reason": "HTTP 401 — until reload"}
    for i in range(4):
        bal.key_failed(b, i, ProxyError(402, "no credit"))
    assert bal.pick_key(b, h2) is None
    # without a conversation: round-robin
    bal.keys.clear()
    assert [bal.pick_key(b) for _ in range(5)] == [0, 1, 2, 3, 0]


@pytest.mark.parametrize("status,message,code,kind", [
    (429, "rate limited", None, RETRY), (408, "timeout", None, RETRY), (409, "conflict", None, RETRY),
    (500, "x", None, RETRY), (502, "unreachable", "upstream_unreachable", RETRY), (504, "timeout", None, RETRY),
    (529, "Overloaded", None, RETRY), (400, "The server is overloaded, try later", None, RETRY),
    (401, "bad key", None, KEY), (402, "no credit", None, KEY), (403, "forbidden", None, KEY),
    (400, "This model's maximum context length is 8192 tokens", "context_length_exceeded", CONTEXT),
    (400, "prompt is too long: 210000 tokens > 200000 maximum", None, CONTEXT),
    (400, "Invalid value for 'temperature'", None, FINAL), (404, "model not found", None, FINAL), (501, "not supported", None, FINAL),
])
def test_classify(status, message, code, kind):
    assert classify(ProxyError(status, message, code=code)) == kind


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0 and parse_retry_after("1.5") == 1.5
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after(later) <= 30
    assert parse_retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_is_exponential_with_jitter_and_honours_retry_after():
    bal = Balancer(Failover(backoff=1.0), rng=random.Random(3))
    e = ProxyError(500, "x")
    for n in (1, 2, 3):
        assert 0.5 * 2 ** (n - 1) <= bal.backoff(n, e) <= 2 ** (n - 1)
    assert len({bal.backoff(1, e) for _ in range(10)}) > 1
    assert bal.backoff(1, ProxyError(429, "x", retry_after=4.0)) == 4.0


async def test_plan_stops_at_max_attempts_and_on_client_errors():
    bal = Balancer(Failover(backoff=0.0))
    res = resolved(target("a"), strategy="fallback", max_attempts=3)
    plan = Plan(bal, res)
    steps = [await plan.next(None)]
    while (s := await plan.next(ProxyError(503, "x"))) is not None:
        steps.append(s)
    assert len(steps) == 3
    plan = Plan(bal, resolved(target("a"), target("b")))
    await plan.next(None)
    assert await plan.next(ProxyError(400, "bad request")) is None
    # a Retry-After longer than failover.max_backoff is returned to the client rather than waited out
    plan = Plan(bal, resolved(target("c")))
    await plan.next(None)
    assert await plan.next(ProxyError(429, "x", retry_after=60)) is None


async def test_plan_total_time_cap():
    clock = Clock()
    bal = Balancer(Failover(max_time=5), clock=clock)
    plan = Plan(bal, resolved(target("a"), target("b"), target("c")))
    assert (await plan.next(None)).target.backend.name == "a"
    clock.t += 5  # the first attempt took all the time there was: no new attempt starts
    assert await plan.next(ProxyError(504, "timeout")) is None


async def test_weighted_end_to_end(upstream, proxy):
    body = Reply(fixture_bytes("openai/nonstream-text.json"))
    a, b = await upstream({"/v1/chat/completions": body}), await upstream({"/v1/chat/completions": body})
    cfg = {"backends": {n: {"api": "openai", "url": u.url + "/v1"} for n, u in (("a", a), ("b", b))},
           "models": {"m": {"strategy": "weighted", "routes": [{"backend": "a", "model": "x", "weight": 1}, {"backend": "b", "model": "x", "weight": 3}]}}}
    p = await proxy(cfg)
    c = p.openai()
    for _ in range(60):
        await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert len(a.seen) + len(b.seen) == 60 and 5 <= len(a.seen) <= 28  # expected 15
    rows = await p.rows()
    assert {r["backend"] for r in rows} == {"a", "b"} and all(r["attempts"] == 1 for r in rows)
    assert all(r["attempt_log"] is None for r in rows)  # one attempt, nothing skipped: the row's own columns say it
