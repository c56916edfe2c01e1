"""Choosing among routes: strategies, circuit breakers (cooldowns), key rotation, attempt plans.

Everything here is runtime state held by ``State.balance`` and keyed by names — a backend name,
``(backend, upstream model)`` for a route, ``(backend, key index)`` for a key — never by config
objects, so it survives a reload for whatever still exists.  Keys are only ever named by their
1-based position in ``keys:`` ("key #2"); a key's value never leaves ``Upstream``.

A breaker moves closed → open (after ``cooldown.failures`` consecutive failures; the interval
doubles with each opening up to ``cooldown.max``) → half-open (the interval passed: exactly one
request probes) → closed on success, open again (longer) on failure.
"""
from __future__ import annotations

import asyncio
import email.utils
import hashlib
import math
import random
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from .config import WEIGHT_DEFAULTS, Backend, Config, Failover
from .errors import ProxyError
from .resolve import Resolved, Target

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# What to do after an attempt failed (see ``classify``).
RETRY, CONTEXT, KEY, FINAL, ELSEWHERE = "retry", "context", "key", "final", "elsewhere"

_CONTEXT = re.compile(
    r"context[ _-]?(length|window)|maximum context|prompt is too long|too many tokens|input is too long|reduce the length",
    re.IGNORECASE,
)


def classify(err: ProxyError) -> str:
    """RETRY (try again/elsewhere), CONTEXT (context too long), KEY (the credential), ELSEWHERE (this route's
    config is wrong: another route, never this one again), or FINAL (the client's fault)."""
    if err.code == "upstream_redirect":
        return ELSEWHERE
    if err.code == "max_time":  # the request's own time ran out: no route's fault, nothing more to try
        return FINAL
    s = err.status
    text = f"{err.type} {err.code or ''} {err.message}"
    if s in (408, 409, 429) or (s >= 500 and s != 501) or "overloaded" in text.lower():
        return RETRY
    if s in (401, 402, 403):
        return KEY
    if s in (400, 413, 422) and _CONTEXT.search(text):
        return CONTEXT
    return FINAL


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def sticky_hash(body: dict) -> int | None:
    """A number for the conversation: a hash of its first messages, up to its first user message (at most
    two), so each turn of one conversation has the same (None without messages)."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return None
    head = msgs[:1] if isinstance(msgs[0], dict) and msgs[0].get("role") == "user" else msgs[:2]
    try:
        raw = orjson.dumps(head, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


# ------------------------------------------------------------------ strategy: auto

STALE = 60.0  # seconds: a route's statistics older than this no longer count (auto tries it again, so it earns fresh ones)
ERROR_HALF_LIFE = 60.0  # seconds: how fast a route's past failures fade from its error rate


@dataclass(frozen=True, slots=True)
class RouteStats:
    """What ``strategy: auto`` knows of one route now."""

    errors: float | None = None  # recent error rate, 0..1, decayed (None: no recent outcome)
    latency: float | None = None  # first-byte moving average, ms (None: no recent success)
    load: int = 0  # requests in flight
    price: float = math.inf  # input + output per 1M tokens (inf: no price)

    @property
    def cold(self) -> bool:
        return self.errors is None and self.latency is None


def _scaled(xs: list[float | None]) -> list[float]:
    """Each value over the largest finite one: 0..1; None (unknown) is 0, inf (no price) is 1."""
    top = max((x for x in xs if x is not None and x != math.inf), default=0.0)
    return [0.0 if x is None else 1.0 if x == math.inf else (x / top if top > 0 else 0.0) for x in xs]


def auto_scores(stats: list[RouteStats], weights: tuple[float, float, float, float]) -> list[float]:
    """One score per route, lower is better: errors, latency, load and price, each scaled across the
    routes, mixed by ``weights`` (errors, latency, load, cost). Pure."""
    we, wl, wn, wc = weights
    cols = (_scaled([s.errors for s in stats]), _scaled([s.latency for s in stats]),
            _scaled([float(s.load) for s in stats]), _scaled([s.price for s in stats]))
    return [we * e + wl * lat + wn * n + wc * c for e, lat, n, c in zip(*cols)]


def auto_order(stats: list[RouteStats], weights: tuple[float, float, float, float], turn: int = 0) -> list[int]:
    """Route indices best first: routes with no recent data first (so they earn some), then by score;
    among equals, round robin from ``turn``. Pure."""
    scores = auto_scores(stats, weights)
    n = len(stats)
    rotated = [(i + turn) % n for i in range(n)]
    return sorted(rotated, key=lambda i: (not stats[i].cold, round(scores[i], 9)))


# ------------------------------------------------------------------ breakers and keys


@dataclass(slots=True)
class Breaker:
    """One circuit breaker (a backend's or a route's)."""

    state: str = CLOSED
    failures: int = 0  # consecutive
    trips: int = 0  # consecutive openings; each doubles the interval
    until: float = 0.0  # monotonic end of the open interval
    reason: str | None = None
    probing: bool = False

    def allow(self, now: float) -> bool:
        """Whether a request may go now; in half-open, the one that may becomes the probe."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now < self.until:
                return False
            self.state, self.probing = HALF_OPEN, False
        if self.probing:
            return False
        self.probing = True
        return True

    def success(self) -> None:
        self.state, self.failures, self.trips, self.reason, self.probing = CLOSED, 0, 0, None, False

    def failure(self, reason: str, now: float, s: Failover, at_least: float = 0.0) -> None:
        """Count a failure; open at the threshold, when a probe fails, or when the upstream said how long."""
        self.failures += 1
        self.reason = reason
        if self.state == OPEN:  # a request that started before the opening, or went anyway (the last route): no new trip
            if at_least > 0:  # but the upstream said how long: not before then
                self.until = max(self.until, now + min(at_least, s.cooldown_max))
            return
        if self.state == HALF_OPEN or self.failures >= s.failures:
            secs = max(min(s.cooldown * 2**self.trips, s.cooldown_max), min(at_least, s.cooldown_max))
            self.state, self.until, self.probing = OPEN, now + secs, False
            self.trips += 1
        elif at_least > 0:  # the upstream said how long (Retry-After): exactly that, no growth
            self.state, self.until, self.probing = OPEN, now + min(at_least, s.cooldown_max), False

    def release(self) -> None:
        """A probe ended without a verdict (client gone, client error): let another request probe."""
        self.probing = False

    def view(self, now: float) -> dict[str, Any]:
        state = HALF_OPEN if self.state == OPEN and now >= self.until else self.state
        out: dict[str, Any] = {"state": state, "failures": self.failures}
        if self.reason:
            out["reason"] = self.reason
        if state == OPEN:
            out["seconds_left"] = round(self.until - now, 1)
        return out


@dataclass(slots=True)
class KeyState:
    until: float = 0.0  # monotonic; math.inf: until reload
    reason: str | None = None
    strikes: int = 0  # consecutive 429s: the cooldown grows

    def view(self, n: int, now: float) -> dict[str, Any]:
        if self.until <= now:
            return {"key": n, "state": "ok"}
        if self.until == math.inf:
            return {"key": n, "state": "disabled", "reason": f"{self.reason} — until reload"}
        return {"key": n, "state": "cooling", "reason": self.reason, "seconds_left": round(self.until - now, 1)}


def _connect_level(err: ProxyError) -> bool:
    """The backend itself is unreachable (every model on it is down), not one model."""
    return err.code == "upstream_unreachable" or (err.code == "upstream_timeout" and "timeout.connect" in err.message)


def _reason(err: ProxyError) -> str:
    return f"HTTP {err.status}: {err.message[:200]}"


class Balancer:
    """Breakers, key cooldowns and route statistics of a running llmproxy."""

    def __init__(self, settings: Failover | None = None, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.s = settings or Failover()
        self.clock = clock
        self.rng = rng or random.Random()
        self.backends: dict[str, Breaker] = {}
        self.routes: dict[tuple[str, str], Breaker] = {}
        self.keys: dict[tuple[str, int], KeyState] = {}
        self.in_flight: dict[tuple[str, str], int] = {}
        self.first_byte: dict[tuple[str, str], float] = {}  # moving average, ms
        self.first_byte_at: dict[tuple[str, str], float] = {}  # when it last moved (monotonic)
        self.errors: dict[tuple[str, str], tuple[float, float]] = {}  # route → (error rate, when), for auto
        self._rr: dict[str, int] = {}
        # strategy: designator — (model, conversation) → the route chosen, (backend, upstream model); oldest first
        self.designated: OrderedDict[tuple[str, int], tuple[str, str]] = OrderedDict()

    def configure(self, cfg: Config) -> None:
        """On start and reload: new settings; forget backends that are gone (but count what still runs on them); key cooldowns reset."""
        self.s = cfg.failover
        names = set(cfg.backends)
        for d in (self.routes, self.first_byte, self.first_byte_at, self.errors):
            for k in [k for k in d if k[0] not in names]:
                del d[k]
        for k in [k for k, n in self.in_flight.items() if k[0] not in names and n <= 0]:  # (busy() ends the others)
            del self.in_flight[k]
        for k in [k for k in self.backends if k not in names]:
            del self.backends[k]
        self.keys.clear()

    # -------------------------------------------------------------- strategies

    def order(self, res: Resolved) -> list[Target]:
        """The targets in the order the model's strategy wants them tried."""
        ts = list(res.targets)
        if len(ts) < 2:
            return ts
        strategy = res.strategy
        if strategy == "round_robin":
            i = self._rr.get(res.name, 0)
            self._rr[res.name] = i + 1
            i %= len(ts)
            return ts[i:] + ts[:i]
        if strategy == "weighted":
            # Efraimidis–Spirakis: sorting by u^(1/w) draws without replacement in proportion to weight.
            rnd = self.rng.random
            return sorted(ts, key=lambda t: rnd() ** (1 / t.route.weight) if t.route.weight > 0 else -1.0, reverse=True)
        if strategy == "least_busy":
            rnd = self.rng.random
            return sorted(ts, key=lambda t: (self.in_flight.get(t.key, 0), rnd()))
        if strategy == "fastest":
            if self.rng.random() < self.s.explore:  # now and then, let another route show it recovered
                self.rng.shuffle(ts)
                return ts
            return sorted(ts, key=lambda t: self.first_byte.get(t.key, 0.0))
        if strategy == "cheapest":
            return sorted(ts, key=_price)
        if strategy == "auto":
            now = self.clock()
            turn = self._rr.get(res.name, 0)
            self._rr[res.name] = turn + 1
            return [ts[i] for i in auto_order([self.stats(t, now) for t in ts], res.weights or tuple(WEIGHT_DEFAULTS.values()), turn)]
        return ts  # fallback (and designator: its choice already put first)

    def stats(self, t: Target, now: float) -> RouteStats:
        """What ``auto`` scores ``t`` by: its decayed error rate (an open breaker: 1), recent first-byte time, load, price."""
        rk = t.key
        errors = None
        if rk in self.errors:
            rate, at = self.errors[rk]
            if now - at <= STALE:
                errors = rate * 0.5 ** ((now - at) / ERROR_HALF_LIFE)
        for br in (self.backends.get(t.backend.name), self.routes.get(rk)):
            if br is not None and br.state == OPEN and now < br.until:
                errors = 1.0
        latency = self.first_byte.get(rk) if now - self.first_byte_at.get(rk, -math.inf) <= STALE else None
        return RouteStats(errors, latency, self.in_flight.get(rk, 0), _price(t))

    def _outcome(self, rk: tuple[str, str], failed: bool) -> None:
        """Move a route's error rate (decayed to now) towards this outcome."""
        now = self.clock()
        rate, at = self.errors.get(rk, (0.0, now))
        self.errors[rk] = (rate * 0.5 ** ((now - at) / ERROR_HALF_LIFE) * 0.7 + (0.3 if failed else 0.0), now)

    # -------------------------------------------------------------- keys

    def pick_key(self, backend: Backend, sticky: int | None = None, exclude: frozenset[int] | set[int] = frozenset()) -> int | None:
        """0-based index of the key to use: the conversation's own if it is usable, else the next usable one.

        None when the backend has no keys or every key is cooling down.
        """
        n = len(backend.keys)
        if not n:
            return None
        if sticky is None:
            sticky = self._rr.get("key:" + backend.name, 0)
            self._rr["key:" + backend.name] = sticky + 1
        now = self.clock()
        for j in range(n):
            i = (sticky + j) % n
            if i in exclude:
                continue
            ks = self.keys.get((backend.name, i))
            if ks is None or ks.until <= now:
                return i
        return None

    def key_value(self, backend: Backend, key: int | None = None) -> str | None:
        """The value of key #``key`` (0-based), or of the key to use next when None; None without keys.

        With every key cooling down, the one that frees up first rather than none.
        """
        if not backend.keys:
            return None
        if key is None:
            key = self.pick_key(backend)
            if key is None:
                key = self.soonest_key(backend)
        return backend.keys[key % len(backend.keys)]

    def soonest_key(self, backend: Backend) -> int:
        """The key whose cooldown ends first."""
        return min(range(len(backend.keys)), key=lambda i: self.keys.get((backend.name, i), KeyState()).until)

    def key_wait(self, backend: Backend) -> float:
        """Seconds until the first of the backend's keys is usable again (inf: none before a reload)."""
        now = self.clock()
        return min((self.keys.get((backend.name, i), KeyState()).until - now for i in range(len(backend.keys))), default=0.0)

    def key_failed(self, backend: Backend, i: int, err: ProxyError) -> None:
        ks = self.keys.setdefault((backend.name, i), KeyState())
        if err.status in (401, 402, 403):
            ks.until, ks.reason = math.inf, f"HTTP {err.status}"
            return
        ks.strikes += 1
        secs = err.retry_after if err.retry_after else self.s.cooldown * 2 ** (ks.strikes - 1)
        ks.until, ks.reason = self.clock() + min(secs, self.s.cooldown_max), _reason(err)

    # -------------------------------------------------------------- outcomes

    def busy(self, t: Target) -> _Busy:
        """Count a request in flight on ``t``'s route while the ``with`` block runs (``least_busy`` reads it)."""
        return _Busy(self.in_flight, t.key)

    def down(self, t: Target) -> bool:
        """Whether ``t``'s backend or route is set aside now (nothing changes: for listings)."""
        now = self.clock()
        return any(br is not None and br.state == OPEN and now < br.until
                   for br in (self.backends.get(t.backend.name), self.routes.get(t.key)))

    def blocked(self, t: Target, probes: list[Breaker]) -> tuple[str, float] | None:
        """Why ``t`` may not be tried now and for how long (None: it may; a probe it takes goes to ``probes``)."""
        now = self.clock()
        for label, br in (("backend", self.backends.get(t.backend.name)), ("route", self.routes.get(t.key))):
            if br is None or br.state == CLOSED:
                continue
            if not br.allow(now):
                left = br.until - now if br.state == OPEN else 1.0
                more = f" {left:.0f} s more" if br.state == OPEN else " (a probe is in flight)"
                return f"{label} cooling down{more} ({(br.reason or '').split(':')[0]})", left
            probes.append(br)
        return None

    def succeeded(self, t: Target, key: int | None, first_byte_ms: float | None) -> None:
        """The upstream answered with a success status."""
        for br in (self.backends.get(t.backend.name), self.routes.get(t.key)):
            if br is not None and (br.state != CLOSED or br.failures):
                br.success()
        if key is not None:
            ks = self.keys.get((t.backend.name, key))
            if ks is not None and ks.until != math.inf:
                ks.strikes = 0
        rk = t.key
        self._outcome(rk, False)
        if first_byte_ms is not None:
            prev, now = self.first_byte.get(rk), self.clock()
            stale = now - self.first_byte_at.get(rk, now) > STALE  # (an old average says nothing of the route now)
            self.first_byte[rk] = first_byte_ms if prev is None or stale else prev * 0.7 + first_byte_ms * 0.3
            self.first_byte_at[rk] = now

    def failed(self, t: Target, key: int | None, err: ProxyError) -> None:
        """An attempt failed with ``err``: cool down the key, the route or the whole backend."""
        kind = classify(err)
        if kind in (RETRY, KEY, ELSEWHERE):
            self._outcome(t.key, True)
        if kind in (FINAL, CONTEXT, ELSEWHERE):
            return
        if key is not None and (kind == KEY or err.status == 429):
            self.key_failed(t.backend, key, err)
            return
        now = self.clock()
        if _connect_level(err):
            self.backends.setdefault(t.backend.name, Breaker()).failure(_reason(err), now, self.s)
            return
        at_least = (err.retry_after or self.s.cooldown) if err.status == 429 and err.retry_after else 0.0
        self.routes.setdefault(t.key, Breaker()).failure(_reason(err), now, self.s, at_least)

    def backoff(self, n: int, err: ProxyError) -> float:
        """Seconds to wait before retry ``n`` (1-based) of the same route: Retry-After, or exponential with jitter."""
        if err.retry_after is not None:
            return err.retry_after
        return self.s.backoff * 2 ** (n - 1) * (0.5 + self.rng.random() / 2)

    # -------------------------------------------------------------- /health

    def view_backend(self, b: Backend) -> dict[str, Any]:
        now = self.clock()
        br = self.backends.get(b.name)
        out: dict[str, Any] = br.view(now) if br else {"state": CLOSED, "failures": 0}
        if b.keys:
            out["keys"] = [self.keys.get((b.name, i), KeyState()).view(i + 1, now) for i in range(len(b.keys))]
        return out

    def models_seen(self, backend: str) -> list[str]:
        """Upstream models of ``backend`` that have a breaker or statistics."""
        return sorted({m for b, m in (*self.routes, *self.first_byte) if b == backend})

    def view_route(self, b: Backend, model: str) -> dict[str, Any]:
        """A route's breaker, the backend's (if not closed), usable keys, requests in flight, first-byte average."""
        now = self.clock()
        rk = (b.name, model)
        br = self.routes.get(rk)
        out: dict[str, Any] = {"backend": b.name, "model": model}
        out.update(br.view(now) if br else {"state": CLOSED, "failures": 0})
        bb = self.backends.get(b.name)
        if bb is not None and bb.state != CLOSED and out["state"] == CLOSED:  # the whole backend is set aside
            out.update(bb.view(now), set_aside="backend")
        if b.keys:
            usable = sum(1 for i in range(len(b.keys)) if self.keys.get((b.name, i), KeyState()).until <= now)
            out["keys_usable"] = f"{usable}/{len(b.keys)}"
        out["in_flight"] = self.in_flight.get(rk, 0)
        if rk in self.first_byte:
            out["first_byte_ms"] = round(self.first_byte[rk], 1)
        return out


def _price(t: Target) -> float:
    """Cost of a typical request (1 input + 1 output token-million); a route without ``price`` comes last."""
    p = t.route.price
    if not p:
        return math.inf
    return float(p.get("input", 0)) + float(p.get("output", 0))


# ------------------------------------------------------------------ one request's plan


@dataclass
class Step:
    target: Target
    key: int | None


class _Busy:
    """What ``Balancer.busy`` returns: a plain object, not a generator-based context manager (two objects fewer a request)."""

    __slots__ = ("counts", "rk")

    def __init__(self, counts: dict[tuple[str, str], int], rk: tuple[str, str]) -> None:
        self.counts, self.rk = counts, rk

    def __enter__(self) -> None:
        self.counts[self.rk] = self.counts.get(self.rk, 0) + 1

    def __exit__(self, *exc: object) -> None:
        self.counts[self.rk] = self.counts.get(self.rk, 1) - 1  # (a reload keeps a count above 0: configure())


@dataclass
class Plan:
    """One request's way through its routes: which target next, with which key, after what wait."""

    bal: Balancer
    res: Resolved
    sticky: int | None = None
    queue: list[Target] = field(default_factory=list)
    tried: int = 0
    deadline: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    probes: list[Breaker] = field(default_factory=list)
    cur: Step | None = None
    _keys_tried: dict[str, set[int]] = field(default_factory=dict)
    _retries: int = 0
    _anyway: bool = False  # this request went to a cooling-down route, every route being one

    def __post_init__(self) -> None:
        self.queue = self.bal.order(self.res)
        self.deadline = self.bal.clock() + self.bal.s.max_time

    def first(self) -> Step:
        """The first attempt (no waiting involved, so no coroutine); a route cooling down if every route is."""
        step = self._pick()
        assert step is not None  # a model has at least one route, and the last is never shut
        return step

    async def next(self, err: ProxyError | None) -> Step | None:
        """The next attempt after ``err`` (None for the first), waiting out a backoff first; None: stop."""
        bal = self.bal
        if err is not None:
            kind = classify(err)
            if kind == FINAL or self.tried >= self.res.max_attempts or bal.clock() >= self.deadline:
                return None
            cur = self.cur
            assert cur is not None
            if kind == CONTEXT:
                self.queue = [t for t in self.queue if t.route.context_fallback]
            elif cur.key is not None and (kind == KEY or err.status == 429):
                # Another key on the same route, at once.
                k = bal.pick_key(cur.target.backend, self.sticky, self._keys_tried.get(cur.target.backend.name, set()))
                if k is not None:
                    return self._go(cur.target, k)
            elif kind == RETRY and not self.queue and len(self.res.targets) == 1 and not self._anyway and err.code != "upstream_timeout":
                # (a route that timed out is not asked again: that would multiply the timeout)
                self._retries += 1
                wait = bal.backoff(self._retries, err)
                if wait > bal.s.max_backoff or bal.clock() + wait >= self.deadline:
                    return None
                if wait > 0:
                    await asyncio.sleep(wait)
                self.queue = [cur.target]
        return self._pick()

    def _pick(self) -> Step | None:
        """The first target left in the queue that may be tried now, with a key if its backend has keys.

        The last route is never shut: when no attempt was made yet and every route is cooling down,
        the one whose cooldown ends first goes anyway (once, not retried), so the client gets that
        upstream's own answer — and the upstream's recovery is seen at once.
        """
        bal = self.bal
        cooling: list[tuple[float, Target, dict[str, Any]]] = []
        while self.queue:
            t = self.queue.pop(0)
            blocked = bal.blocked(t, self.probes)
            key = None
            if blocked is None and t.backend.keys:
                key = bal.pick_key(t.backend, self.sticky, self._keys_tried.get(t.backend.name, set()))
                if key is None:
                    blocked = f"all {len(t.backend.keys)} keys are cooling down", bal.key_wait(t.backend)
            if blocked is not None:
                why, left = blocked
                skip = {"backend": t.backend.name, "model": t.upstream_model, "skipped": why}
                cooling.append((left, t, skip))
                self.log.append(skip)
                continue
            return self._go(t, key)
        if not cooling or self.tried:
            return None
        _, t, skip = min(cooling, key=lambda c: c[0])  # (the first in the strategy's order among equals)
        self.log = [a for a in self.log if a is not skip]
        self._anyway = True
        key = None
        if t.backend.keys:
            key = bal.pick_key(t.backend, self.sticky)
            if key is None:
                key = bal.soonest_key(t.backend)
        return self._go(t, key)

    def _go(self, t: Target, key: int | None) -> Step:
        self.tried += 1
        if key is not None:
            self._keys_tried.setdefault(t.backend.name, set()).add(key)
        self.cur = Step(t, key)
        return self.cur

    def record(self, step: Step, status: int | None, ms: float, err: ProxyError | None) -> None:
        """Append one attempt to the log row's story (keys by 1-based number, never by value)."""
        a: dict[str, Any] = {"backend": step.target.backend.name, "model": step.target.upstream_model, "status": status, "ms": round(ms, 1)}
        if step.key is not None:
            a["key"] = step.key + 1
        if err is not None:
            a["error"] = err.message[:300]
        self.log.append(a)

    def release(self) -> None:
        """Probes this request took and gave no verdict on go back (the breaker may probe again)."""
        for br in self.probes:
            if br.state == HALF_OPEN:
                br.release()
        self.probes.clear()
