"""``GET /metrics``: counters kept from each finished request's log row, written in Prometheus's text format.

A request costs a handful of dict increments when its row is put (``observe``), nothing per
streamed event; everything else (in-flight, cooldowns, the log queue, reloads) is read when
scraped.  Written by hand: per request, prometheus-client's
``labels(...).inc()`` / ``observe()`` took 14.5 µs for the same updates, these 1.9 µs.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

from .errors import ProxyError
from .requestlog import LogRow

# Histogram bucket bounds, in ms as the row has them; written as seconds.
BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000)
_N = len(BUCKETS_MS) + 1  # the last count is +Inf's own


class Metrics:
    """Counters of a running llmproxy since start (a reload keeps them)."""

    __slots__ = ("requests", "tokens", "cost", "first_byte", "total", "upstream_errors")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, int], int] = {}  # (front, model, backend, status)
        self.tokens: dict[tuple[str, str], int] = {}  # (model, kind)
        self.cost: dict[str, float] = {}  # model → USD
        self.first_byte: dict[str, list[float]] = {}  # model → [count per bucket …, sum ms]
        self.total: dict[str, list[float]] = {}
        self.upstream_errors: dict[tuple[str, str], int] = {}  # (backend, kind)

    def observe(self, row: LogRow) -> None:
        """One finished request (called where its row is put)."""
        model = row.model or row.requested_model or ""
        key = (row.front, model, row.backend or "", row.status or 0)
        self.requests[key] = self.requests.get(key, 0) + 1
        if row.prompt_tokens is not None:
            t = self.tokens
            for kind, n in (("prompt", row.prompt_tokens), ("completion", row.completion_tokens), ("cached", row.cached_tokens),
                            ("cache_write", row.cache_write_tokens), ("reasoning", row.reasoning_tokens)):
                if n:
                    k = (model, kind)
                    t[k] = t.get(k, 0) + n
        if row.cost_usd:
            self.cost[model] = self.cost.get(model, 0.0) + row.cost_usd
        if row.first_byte_ms is not None:
            _hist(self.first_byte, model, row.first_byte_ms)
        if row.total_ms is not None:
            _hist(self.total, model, row.total_ms)

    def upstream_error(self, backend: str, err: ProxyError) -> None:
        """One failed attempt on a backend (failover may have hidden it from the client)."""
        k = (backend, err.code or f"http_{err.status}")
        self.upstream_errors[k] = self.upstream_errors.get(k, 0) + 1

    def render(self, state: Any) -> str:
        """The text for a scrape; ``state`` is the running ``State`` (in-flight, balancer, log, reloads)."""
        out: list[str] = []
        _family(out, "llmproxy_requests_total", "counter", "Requests finished, by front door, model, backend and status.",
                [((("front", f), ("model", m), ("backend", b), ("status", str(s))), n) for (f, m, b, s), n in self.requests.items()])
        _family(out, "llmproxy_tokens_total", "counter", "Tokens by model and kind (prompt, completion, cached, cache_write, reasoning).",
                [((("model", m), ("kind", k)), n) for (m, k), n in self.tokens.items()])
        _family(out, "llmproxy_cost_usd_total", "counter", "Cost in US dollars, by model (routes with a price).",
                [((("model", m),), v) for m, v in self.cost.items()])
        _histogram(out, "llmproxy_first_byte_seconds", "Time to the answer's first byte, by model.", self.first_byte)
        _histogram(out, "llmproxy_request_duration_seconds", "Whole request time, by model.", self.total)
        _family(out, "llmproxy_upstream_errors_total", "counter", "Failed attempts on a backend, by kind (its error code, or http_<status>).",
                [((("backend", b), ("kind", k)), n) for (b, k), n in self.upstream_errors.items()])
        _family(out, "llmproxy_in_flight", "gauge", "Requests being served now.", [((), state.in_flight)])
        bal, now = state.balance, state.balance.clock()
        cooling = [
            ((("what", "backend"),), sum(1 for b in bal.backends.values() if b.state != "closed")),
            ((("what", "route"),), sum(1 for b in bal.routes.values() if b.state != "closed")),
            ((("what", "key"),), sum(1 for k in bal.keys.values() if k.until > now)),
        ]
        _family(out, "llmproxy_cooling_down", "gauge", "Backends, routes and keys set aside now (breaker open or half-open; key cooling or disabled).", cooling)
        log = state.log
        _family(out, "llmproxy_log_queue_depth", "gauge", "Log rows waiting for the writer.", [((), log.queue.qsize())])
        _family(out, "llmproxy_log_written_total", "counter", "Log rows written.", [((), log.written)])
        _family(out, "llmproxy_log_dropped_total", "counter", "Log rows dropped (queue full or a write failed).", [((), log.dropped)])
        _family(out, "llmproxy_reloads_total", "counter", "Config reload attempts since start, by result.",
                [((("result", "ok"),), state.reloads["ok"]), ((("result", "failed"),), state.reloads["failed"])])
        _family(out, "llmproxy_config_loaded_timestamp_seconds", "gauge", "When the config in force was loaded.", [((), state.snap.config.loaded_at)])
        _family(out, "llmproxy_start_time_seconds", "gauge", "When this process started.", [((), state.started)])
        return "".join(out)


def _hist(h: dict[str, list[float]], model: str, ms: float) -> None:
    counts = h.get(model)
    if counts is None:
        counts = h[model] = [0] * (_N + 1)
    counts[bisect_left(BUCKETS_MS, ms)] += 1
    counts[_N] += ms


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in pairs) + "}" if pairs else ""


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else repr(float(v)) if math.isfinite(v) else ("+Inf" if v > 0 else "-Inf")


def _family(out: list[str], name: str, kind: str, help_: str, samples) -> None:  # noqa: ANN001 - iterable of (labels, value)
    out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
    out.extend(f"{name}{_labels(lab)} {_num(v)}\n" for lab, v in samples)


def _histogram(out: list[str], name: str, help_: str, h: dict[str, list[float]]) -> None:
    out.append(f"# HELP {name} {help_}\n# TYPE {name} histogram\n")
    for model, counts in h.items():
        m = _esc(model)
        running = 0
        for bound, n in zip((*BUCKETS_MS, math.inf), counts):
            running += n
            le = "+Inf" if bound == math.inf else repr(bound / 1000)
            out.append(f'{name}_bucket{{model="{m}",le="{le}"}} {running}\n')
        out.append(f'{name}_count{{model="{m}"}} {running}\n{name}_sum{{model="{m}"}} {counts[_N] / 1000!r}\n')
