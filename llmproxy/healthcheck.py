"""Active health checks: ``health_check: {interval, timeout}`` on a backend, off by default.

One background task sends each checked backend a cheap request every ``interval`` seconds: its
model list (``discover.fetch``), or with ``health_check.model`` the smallest completion of that
model.  A failed check sets the backend aside in its breaker (``Balancer.backends``) until the next
check, so requests skip it while another route can be tried (the last route is still never shut);
a good check closes the breaker.  A backend no model routes to is never checked.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from .balance import OPEN, Balancer, Breaker
from .config import Backend, Config
from .discover import fetch
from .errors import ProxyError
from .translate import BACKENDS
from .upstream import Upstream

log = logging.getLogger("llmproxy")


@dataclass
class Check:
    """The last check of one backend."""

    ok: bool | None = None  # None: not checked yet
    at: float | None = None  # wall clock
    error: str | None = None
    next_at: float = 0.0  # monotonic

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": "pending" if self.ok is None else "ok" if self.ok else "failed", "checked_at": self.at}
        if self.error:
            out["error"] = self.error
        out["next_in_s"] = round(max(0.0, self.next_at - time.monotonic()), 1)
        return out


def checked(cfg: Config) -> dict[str, Backend]:
    """The backends to check: those with ``health_check`` that some model routes to (or that discover models)."""
    used = {r.backend.name for m in (*cfg.models.values(), *(m for _, m in cfg.patterns)) for r in m.routes}
    return {b.name: b for b in cfg.backends.values() if b.health_check is not None and (b.name in used or b.discover)}


class HealthChecks:
    def __init__(self) -> None:
        self.last: dict[str, Check] = {}

    async def run(self, config: Callable[[], Config], upstream: Upstream, bal: Balancer) -> None:
        """The background task: check what is due in the running ``config()``, then sleep until the next is due."""
        while True:
            wanted = checked(config())
            for gone in [n for n in self.last if n not in wanted]:
                del self.last[gone]
            now = time.monotonic()
            due = [b for b in wanted.values() if self.last.setdefault(b.name, Check()).next_at <= now]
            if due:
                await asyncio.gather(*(self.check(upstream, bal, b) for b in due))
            wait = min((c.next_at for c in self.last.values()), default=time.monotonic() + 5) - time.monotonic()
            await asyncio.sleep(min(5.0, max(0.05, wait)))  # (at most 5 s: a reload that adds a check is seen soon)

    async def check(self, upstream: Upstream, bal: Balancer, b: Backend) -> None:
        hc = b.health_check
        assert hc is not None
        c = self.last.setdefault(b.name, Check())
        c.next_at = time.monotonic() + hc.interval
        try:
            async with asyncio.timeout(hc.timeout):
                await probe(upstream, b, bal.key_value(b))
        except TimeoutError:
            err = f"no answer within health_check.timeout ({hc.timeout:g} s)"
        except ProxyError as e:
            err = f"HTTP {e.status}: {e.message[:200]}"
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as e:
            err = f"unreadable answer: {e}"
        else:
            if c.ok is False:
                log.info("health check of %s passed: back in use", b.name)
            c.ok, c.at, c.error = True, time.time(), None
            br = bal.backends.get(b.name)
            if br is not None:
                br.success()
            return
        if c.ok is not False:
            log.warning("health check of %s failed, set aside until a check passes: %s", b.name, err)
        c.ok, c.at, c.error = False, time.time(), err[:300]
        br = bal.backends.setdefault(b.name, Breaker())
        br.state, br.until, br.probing = OPEN, bal.clock() + hc.interval + hc.timeout, False
        br.failures += 1
        br.reason = f"health check: {err[:200]}"


async def probe(upstream: Upstream, b: Backend, key: str | None) -> None:
    """One cheap request: the model list, or the smallest completion of ``health_check.model``."""
    hc = b.health_check
    if hc is None or hc.model is None:
        await fetch(upstream, b, key)
        return
    mod = BACKENDS[b.api]
    path, body = mod.request_to_upstream({"model": hc.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}, hc.model, False)
    up = await upstream.open(b, path, orjson.dumps(body), model=hc.model, stream=False, key=key, max_bytes=1 << 20)
    try:
        raw = await up.read()
    finally:
        up.close()
    if up.status >= 400:
        raise mod.error_from_upstream(up.status, raw)
