"""Rate limits and budgets of clients, groups and end users: held in memory, O(1) per request.

``Quota`` lives in ``State`` and so outlives a reload: the limits are read from the config a
request took, the counters and the spend are keyed by name.  ``rpm`` and ``tpm`` are sliding
60-second windows of one-second slots; ``budget`` spend is summed per calendar period (UTC) as
rows are logged, and rebuilt from the log's SQLite file at start.
"""
from __future__ import annotations

import math
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import orjson

from . import rollup
from .config import Budget, Client, Config, Limits
from .errors import ProxyError

SPAN = 60  # seconds of an rpm / tpm window
PERIODS = ("day", "week", "month")


class Window:
    """A sliding window of SPAN one-second slots with a running total: O(1) per request (a roll
    clears at most the slots gone by since the last one), exact to the second."""

    __slots__ = ("slots", "total", "sec")

    def __init__(self, now: float) -> None:
        self.slots, self.total, self.sec = [0] * SPAN, 0, int(now)

    def _roll(self, now: float) -> None:
        s = int(now)
        if s <= self.sec:
            return
        if s - self.sec >= SPAN:
            self.slots, self.total = [0] * SPAN, 0
        else:
            slots = self.slots
            for t in range(self.sec + 1, s + 1):
                self.total -= slots[t % SPAN]
                slots[t % SPAN] = 0
        self.sec = s

    def level(self, now: float) -> int:
        self._roll(now)
        return self.total

    def wait(self, now: float, n: int, limit: int) -> float:
        """Seconds until ``n`` more fit under ``limit`` (0: now). More than the whole limit waits for an empty window."""
        self._roll(now)
        need = self.total + min(n, limit) - limit
        if need <= 0:
            return 0.0
        freed = 0
        for k in range(SPAN):  # (only for a request about to be refused) the oldest slots first
            freed += self.slots[(self.sec + 1 + k) % SPAN]
            if freed >= need:
                return max(self.sec + 1 + k - now, 0.001)  # the second that slot was counted in, SPAN later
        return float(SPAN)

    def take(self, now: float, n: int, limit: int) -> bool:
        """Count ``n`` ≥ 0 now if it fits under ``limit`` (True); else count nothing (False)."""
        if now >= self.sec + 1:  # (a new second: at most once a second per window)
            self._roll(now)
        if self.total + (n if n < limit else limit) > limit:  # (as wait: more than the whole limit waits for an empty window)
            return False
        self.slots[self.sec % SPAN] += n
        self.total += n
        return True

    def add(self, now: float, n: int) -> None:
        """Count ``n`` now; a negative ``n`` (an estimate corrected down) is taken back from the newest slots."""
        if now >= self.sec + 1:
            self._roll(now)
        if n >= 0:
            self.slots[self.sec % SPAN] += n
            self.total += n
            return
        i = self.sec
        while n < 0 and i > self.sec - SPAN:
            take = min(self.slots[i % SPAN], -n)
            self.slots[i % SPAN] -= take
            self.total -= take
            n += take
            i -= 1


def period_start(per: str, now: float) -> float:
    """Start of the calendar period (UTC) ``now`` is in."""
    d = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if per == "week":
        d -= timedelta(days=d.weekday())
    elif per == "month":
        d = d.replace(day=1)
    return d.timestamp()


def period_end(per: str, start: float) -> float:
    d = datetime.fromtimestamp(start, timezone.utc)
    if per == "day":
        d += timedelta(days=1)
    elif per == "week":
        d += timedelta(days=7)
    else:
        d = d.replace(year=d.year + 1, month=1) if d.month == 12 else d.replace(month=d.month + 1)
    return d.timestamp()


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


Scope = tuple[str, object]  # ("client", name) | ("group", name) | ("user", (client, user id))


def _label(scope: Scope, user_name: str | None = None) -> str:
    kind, name = scope
    if kind == "user":
        client, user = name  # type: ignore[misc]
        who = f"'{user_name}' ({user})" if user_name else f"'{user}'"  # (the person reading it in Open-WebUI knows their name, not their id)
        return f"user {who} of client '{client}'"
    return f"{kind} '{name}'"


class Ticket:
    """What one admitted request counted in the tpm windows, to be corrected by its real usage."""

    __slots__ = ("windows", "counted")

    def __init__(self, windows: list[Window], counted: int) -> None:
        self.windows, self.counted = windows, counted


class Plan:
    """What applies to one client (and user) under one config: its budgets, each with the spend entry it reads,
    and its rpm / tpm windows, each with whether it counts tokens (tpm) or requests (rpm)."""

    __slots__ = ("budgets", "checks", "tpm")

    def __init__(self, budgets: list[tuple[list[float], Budget, Scope]], checks: list[tuple[Window, bool, int, Scope, Limits]]) -> None:
        self.budgets, self.checks = budgets, checks
        self.tpm = [w for w, tokens, *_ in checks if tokens]  # the windows a Ticket corrects once the answer's tokens are known


class Quota:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.count_tokens: Callable[[dict], int] | None = None  # the count_tokens estimate (set by make_app: it lives with a front door)
        self.windows: dict[tuple[Scope, str], Window] = {}  # (scope, "rpm" | "tpm") → window
        # (scope, period) → [start, USD, end] of the period it last counted in; changed in place, never replaced,
        # so a Plan and add_cost's cache hold the entries themselves
        self.spend: dict[tuple[Scope, str], list[float]] = {}
        self._spends: dict[tuple[str, str | None, str | None], list[tuple[str, list[float]]]] = {}  # a row's (client, group, user) → its entries
        self._periods: dict[str, tuple[float, float]] = {}  # period → (start, end) of the current one
        # (id of a Client, user) → (that Client, the Config it came in, its Plan): what admit works out once per client
        # and user of one config (the windows it holds are never replaced, so they stay the ones in ``windows``)
        self._plans: dict[tuple[int, str | None], tuple[Client, Config, Plan]] = {}

    def period(self, per: str, now: float) -> tuple[float, float]:
        """(start, end) of the ``per`` period ``now`` is in; worked out once per period, not per request."""
        p = self._periods.get(per)
        if p is None or not p[0] <= now < p[1]:
            start = period_start(per, now)
            p = self._periods[per] = (start, period_end(per, start))
        return p

    # ------------------------------------------------------------------ admission

    def scopes(self, cfg: Config, client: Client, user: str | None) -> Iterator[tuple[Scope, Limits]]:
        """The scopes whose limits apply to a request: the client's, its group's, its user's."""
        if client.limits:
            yield ("client", client.name), client.limits
        if client.group is not None:
            g = cfg.groups.get(client.group)
            if g:
                yield ("group", client.group), g
        if user is not None and client.per_user:
            yield ("user", (client.name, user)), client.per_user

    def _plan(self, cfg: Config, client: Client, user: str | None, now: float) -> Plan:
        key = (id(client), user)
        cached = self._plans.get(key)
        if cached is not None and cached[0] is client and cached[1] is cfg:
            return cached[2]
        scopes = list(self.scopes(cfg, client, user))
        plan = Plan([(self._entry(scope, lim.budget.per), lim.budget, scope) for scope, lim in scopes if lim.budget is not None],
                    [(self._window(scope, kind, now), kind == "tpm", limit, scope, lim)
                     for scope, lim in scopes for kind, limit in (("rpm", lim.rpm), ("tpm", lim.tpm)) if limit])
        if len(self._plans) >= 10_000:  # (reloads and many users: start afresh rather than grow)
            self._plans.clear()
        self._plans[key] = (client, cfg, plan)
        return plan

    def admit(self, cfg: Config, client: Client, user: str | None, body: dict, user_name: str | None = None) -> Ticket | None:
        """Count one request in, or raise the 429 of the tightest limit it is over (budgets first); ``body`` is estimated
        (``estimate``) only when a tpm limit applies; ``user_name`` is for its message."""
        now = self.clock()
        plan = self._plan(cfg, client, user, now)
        for entry, budget, scope in plan.budgets:
            if (entry[1] if entry[0] <= now < entry[2] else 0.0) >= budget.usd:
                raise self._over_budget(scope, budget, now, user_name)
        if not plan.checks:
            return None
        tokens = self.estimate(body) if plan.tpm else 0
        for check in plan.checks:  # each window counts the request if it has room
            if not check[0].take(now, tokens if check[1] else 1, check[2]):
                raise self._refuse(plan.checks, check, now, tokens, user_name)
        return Ticket(plan.tpm, tokens) if plan.tpm else None

    def _refuse(self, checks: list[tuple[Window, bool, int, Scope, Limits]], over: tuple, now: float, tokens: int, user_name: str | None) -> ProxyError:
        """The windows counted before ``over`` (the first that had no room) take their count back; the 429 names the longest wait."""
        for w, is_tokens, *_ in checks:
            if w is over[0]:
                break
            w.add(now, -(tokens if is_tokens else 1))
        worst: tuple[float, Scope, Limits] | None = None
        for w, is_tokens, limit, scope, lim in checks:
            wait = w.wait(now, tokens if is_tokens else 1, limit)
            if wait > 0 and (worst is None or wait > worst[0]):
                worst = (wait, scope, lim)
        assert worst is not None
        return self._limited(*worst, now, tokens, user_name)

    def estimate(self, body: dict) -> int:
        """A request's prompt tokens, estimated as /v1/messages/count_tokens does (its JSON bytes / 4 for a body without messages)."""
        if self.count_tokens is not None and isinstance(body.get("messages"), list):
            try:
                return self.count_tokens(body)
            except (ProxyError, TypeError, ValueError, RecursionError):
                pass
        try:
            return max(1, math.ceil(len(orjson.dumps(body)) / 4))
        except (TypeError, orjson.JSONEncodeError):
            return 1

    def settle(self, ticket: Ticket | None, tokens: int | None) -> None:
        """The answer ended: replace the estimate by the real count (prompt + completion)."""
        if ticket is None or tokens is None:
            return
        now = self.clock()
        for w in ticket.windows:
            w.add(now, tokens - ticket.counted)

    def _window(self, scope: Scope, kind: str, now: float) -> Window:
        w = self.windows.get((scope, kind))
        if w is None:
            w = self.windows[(scope, kind)] = Window(now)
        return w

    def _limited(self, wait: float, scope: Scope, lim: Limits, now: float, tokens: int, user_name: str | None = None) -> ProxyError:
        headers: dict[str, str] = {}
        parts = []
        if lim.rpm:
            left = max(0, math.floor(lim.rpm - self._window(scope, "rpm", now).level(now)))
            headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"] = str(lim.rpm), str(left)
            parts.append(f"rpm {lim.rpm}")
        if lim.tpm:
            left = max(0, math.floor(lim.tpm - self._window(scope, "tpm", now).level(now)))
            headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"] = str(lim.tpm), str(left)
            parts.append(f"tpm {lim.tpm} (this request: ~{tokens:,} tokens)")
        return ProxyError(429, f"rate limit of {_label(scope, user_name)} reached ({', '.join(parts)}); retry in {math.ceil(wait)} s",
                          code="rate_limit_exceeded", retry_after=wait, headers=headers)

    # ------------------------------------------------------------------ budgets

    def _entry(self, scope: Scope, per: str) -> list[float]:
        e = self.spend.get((scope, per))
        if e is None:
            e = self.spend[(scope, per)] = [0.0, 0.0, 0.0]  # (no period yet: it reads as nothing spent)
        return e

    def spent(self, scope: Scope, per: str, now: float) -> tuple[float, float]:
        """(USD spent in the current ``per`` period of ``scope``, the period's start)."""
        e = self.spend.get((scope, per))
        return (e[1] if e is not None and e[0] <= now < e[2] else 0.0), self.period(per, now)[0]

    def _over_budget(self, scope: Scope, budget: Budget, now: float, user_name: str | None = None) -> ProxyError:
        spent, start = self.spent(scope, budget.per, now)
        end = self.period(budget.per, now)[1]
        return ProxyError(429, f"insufficient_quota: the budget of {_label(scope, user_name)} (${budget.usd:.2f} per {budget.per}) is used up: "
                               f"${spent:.4f} spent since {_utc(start)}; it resets at {_utc(end)}",
                          type="insufficient_quota", code="insufficient_quota", retry_after=end - now)

    def add_cost(self, client: str | None, group: str | None, user: str | None, usd: float | None, ts: float) -> None:
        """A logged row's cost, added to its client's, group's and user's spend in every period (a row of a period
        before the one an entry counts in is not added)."""
        if not usd or client is None:
            return
        entries = self._spends.get((client, group, user))
        if entries is None:
            scopes: list[Scope] = [("client", client)]
            if group is not None:
                scopes.append(("group", group))
            if user is not None:
                scopes.append(("user", (client, user)))
            if len(self._spends) >= 10_000:  # (many users: start afresh rather than grow; the entries stay in ``spend``)
                self._spends.clear()
            entries = self._spends[(client, group, user)] = [(per, self._entry(scope, per)) for per in PERIODS for scope in scopes]
        for per, e in entries:
            if e[0] <= ts < e[2]:
                e[1] += usd
            elif ts >= e[2]:  # the first row of a new period
                e[0], e[2] = self.period(per, ts)
                e[1] = usd

    def rebuild(self, db: Path) -> None:
        """The spend of the current periods, per UTC day from the log's hourly rollup (at start, after the
        log's migrations).  The rollup outlives the rows ``log.keep_days`` deletes, so pruning never
        lowers a running period's spend."""
        if not db.exists():
            return
        now = self.clock()
        since = min(period_start(per, now) for per in PERIODS)  # (a UTC midnight: whole hours of the rollup)
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            if not rollup.present(con):
                return
            rows = con.execute(
                """SELECT client, client_group, user_id, hour / 86400 * 86400 AS day, sum(cost_usd)
                   FROM usage_hourly WHERE hour >= ? AND cost_usd > 0 AND client IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY day""",
                (since,)).fetchall()
        finally:
            con.close()
        for client, group, user, day, usd in rows:
            self.add_cost(client, group, user, usd, day)
