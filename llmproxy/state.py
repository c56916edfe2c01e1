"""The one mutable holder of a running llmproxy: the current config snapshot and shared services.

The aiohttp app is frozen after start, so a reload swaps ``State.snap`` — one attribute, one step.
A request takes ``state.snap`` once and uses that snapshot to the end.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiohttp import web

from .balance import Balancer
from .config import Config
from .discover import Discovery
from .headers import secrets_of
from .healthcheck import HealthChecks
from .quota import Quota
from .metrics import Metrics
from .requestlog import RequestLog
from .resolve import Resolver
from .store import ResponseStore
from .upstream import Upstream


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything built from one router.yaml, swapped as a whole on reload."""

    config: Config
    resolver: Resolver
    secrets: tuple[str, ...]

    @classmethod
    def build(cls, cfg: Config, discovery: Discovery | None = None) -> "Snapshot":
        return cls(cfg, Resolver(cfg, discovery), secrets_of(cfg))


@dataclass(slots=True)
class State:
    snap: Snapshot
    log: RequestLog
    upstream: Upstream = field(default_factory=Upstream)
    started: float = field(default_factory=time.time)
    reload_error: str | None = None
    reload_error_at: float | None = None
    last_reload: dict | None = None  # the latest config load (start or reload): ts, trigger, sha256, ok, error
    reloads: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})  # reload attempts since start
    running: set[asyncio.Task] = field(default_factory=set)  # the tasks serving a proxied request now
    shutting_down: bool = False  # limits.shutdown_grace ran out: what is still running is being ended
    # Runtime state that outlives a reload (never in the frozen config): breakers, key cooldowns, listings.
    balance: Balancer = field(default_factory=Balancer)
    discovery: Discovery = field(default_factory=Discovery)
    quota: Quota = field(default_factory=Quota)  # rpm/tpm windows and budget spend, by name
    metrics: Metrics = field(default_factory=Metrics)  # counters /metrics shows, kept across reloads
    responses: ResponseStore | None = None  # what /v1/responses leaves behind (set up by make_app, on the log's file)
    checks: HealthChecks = field(default_factory=HealthChecks)
    told: set[tuple[str, str]] = field(default_factory=set)  # (client, what): a half-set-up signed user mode already warned about

    @property
    def in_flight(self) -> int:
        return len(self.running)

    def end_running(self) -> None:
        """After SIGTERM, once limits.shutdown_grace ran out: end every request still running.

        Each is cancelled; ``serve`` (before the answer started) and ``stream_out`` (after) tell this
        from a client hanging up by ``shutting_down``, answer 503 shutting_down (in-band for a stream)
        and log it so, while the connection is still open.
        """
        self.shutting_down = True
        for task in list(self.running):
            task.cancel()

    def __post_init__(self) -> None:
        self.balance.configure(self.snap.config)
        if self.snap.resolver.discovery is None:
            self.snap = Snapshot(self.snap.config, Resolver(self.snap.config, self.discovery), self.snap.secrets)


STATE = web.AppKey("state", State)
