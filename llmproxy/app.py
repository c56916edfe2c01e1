"""make_app(config_path) → web.Application: routes, lifecycles (log, upstream, signals), reload."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import AsyncIterator

import orjson
from aiohttp import web

from . import __version__, access, admin, console, designate, service  # noqa: F401 - designate: strategy: designator (pipeline.CHOOSERS)
from .config import Backend, Config, ConfigError, load_config
from .handlers import anthropic as anthropic_handlers
from .handlers import ollama as ollama_handlers
from .handlers import openai as openai_handlers
from .handlers import responses as responses_handlers
from .headers import redact
from .requestlog import RequestLog
from .state import STATE, Snapshot, State
from .store import ResponseStore

log = logging.getLogger("llmproxy")


NOTIFIER = web.AppKey("notifier", service.Notifier)


def make_app(config_path: str | Path, *, signals: bool = True, watch: bool = False) -> web.Application:
    """Build the app; raises ConfigError on a bad file (nothing is started yet).

    ``signals``: SIGHUP reloads, systemd is told (``$NOTIFY_SOCKET``) and the pid file written (``llmproxy serve``);
    ``watch``: a change of the file on disk reloads too."""
    cfg = load_config(config_path)
    state = State(snap=Snapshot.build(cfg), log=RequestLog(cfg.log_path, cfg.log_queue))
    state.responses = ResponseStore(cfg.log_path, lambda: state.snap.config.responses_keep_days)
    state.quota.count_tokens = anthropic_handlers.estimate_tokens  # tpm counts a prompt as count_tokens estimates it
    app = web.Application(client_max_size=1 << 40)  # body limits are enforced per request, from config
    app[STATE] = state
    app.cleanup_ctx.append(_request_log)
    app.cleanup_ctx.append(_responses)  # after the log: its migrations make the table
    app.cleanup_ctx.append(_upstream)
    app.cleanup_ctx.append(_retention)
    app.cleanup_ctx.append(_discovery)
    app.cleanup_ctx.append(_health_checks)
    app.on_shutdown.append(stopping)
    app.on_shutdown.append(_grace)
    app[NOTIFIER] = service.Notifier(os.environ if signals else {})
    app[_RELOADING] = asyncio.Lock()
    if signals:
        app.cleanup_ctx.append(_sighup)
        app.cleanup_ctx.append(_service)
    if watch:
        app.cleanup_ctx.append(_watch)
    openai_handlers.add_routes(app)
    anthropic_handlers.add_routes(app)
    ollama_handlers.add_routes(app)
    responses_handlers.add_routes(app)
    app.router.add_get("/health", health)
    admin.add_routes(app)
    app.router.add_get("/metrics", metrics)
    return app


async def _request_log(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    await state.log.start()
    await asyncio.to_thread(state.quota.rebuild, state.snap.config.log_path)  # budgets' spend so far, from the log
    await _record(state, "start", state.snap.config.sha256, None)
    yield
    await state.log.close()


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """log.keep_days: request rows older than that are deleted at start, then hourly (in small batches)."""
    state = app[STATE]

    async def run() -> None:
        while True:
            days = state.snap.config.log_keep_days
            if days is not None:
                try:
                    n = await state.log.prune(time.time() - days * 86400)
                    if n:
                        log.info("request log: deleted %d rows older than %g days (log.keep_days)", n, days)
                except Exception:  # a disk error: try again next hour
                    log.exception("request log: deleting old rows failed")
            await asyncio.sleep(3600)

    task = asyncio.create_task(run(), name="log-retention")
    yield
    task.cancel()


async def _responses(app: web.Application) -> AsyncIterator[None]:
    store = app[STATE].responses
    assert store is not None
    await store.start()
    yield
    await store.close()


async def _upstream(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    await state.upstream.start()
    yield
    await state.upstream.close()


async def _discovery(app: web.Application) -> AsyncIterator[None]:
    """List the models of ``discover: true`` backends in the background (never awaited by a request)."""
    state = app[STATE]
    async for _ in _background(state.discovery.run(lambda: state.snap.config, state.upstream, state.balance.key_value), "discovery"):
        yield


async def _health_checks(app: web.Application) -> AsyncIterator[None]:
    """Backends with ``health_check:`` are checked in the background (never awaited by a request)."""
    state = app[STATE]
    async for _ in _background(state.checks.run(lambda: state.snap.config, state.upstream, state.balance), "health checks"):
        yield


async def _background(coro, name: str) -> AsyncIterator[None]:  # noqa: ANN001 - a coroutine
    """Run ``coro`` as a task for the app's life (one yield), then cancel it."""
    task = asyncio.create_task(coro, name=name)
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def _grace(app: web.Application) -> None:
    """SIGTERM (aiohttp's on_shutdown: no new connections; requests in flight may finish): after
    limits.shutdown_grace, the requests still running are ended, each told why (``State.end_running``),
    before aiohttp would close their connections."""
    state = app[STATE]
    # (left pending when every request ended in time: it then ends nothing, and the loop ends with the app)
    asyncio.get_running_loop().call_later(state.snap.config.shutdown_grace, state.end_running)


_PENDING: set[asyncio.Task] = set()  # reloads under way (a reference keeps each task alive)
_RELOADING = web.AppKey("reloading", asyncio.Lock)


def _reload_soon(app: web.Application, trigger: str = "signal") -> None:
    """What SIGHUP does (and ``--watch`` on a change): a reload in the background."""
    t = asyncio.get_running_loop().create_task(reload(app, trigger))
    _PENDING.add(t)
    t.add_done_callback(_PENDING.discard)


async def _sighup(app: web.Application) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, _reload_soon, app)
    yield
    loop.remove_signal_handler(signal.SIGHUP)


async def _watch(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    task = asyncio.create_task(service.watch(state.snap.config.path, lambda: state.snap.config.sha256, lambda: _reload_soon(app, "watch")), name="watch")
    yield
    task.cancel()


async def _service(app: web.Application) -> AsyncIterator[None]:
    """The pid file ``llmproxy reload`` signals, and systemd's watchdog and STATUS= while the loop runs."""
    state, notifier = app[STATE], app[NOTIFIER]
    pid = service.pid_path(state.snap.config.log_path)
    service.write_pid(pid)
    task = asyncio.create_task(service.keepalive(notifier, lambda: status_line(app)), name="keepalive")
    yield
    task.cancel()
    service.remove_pid(pid)
    notifier.close()


def listening(app: web.Application) -> None:
    """Sockets bound and serving: ``READY=1`` (called by ``llmproxy serve`` once aiohttp's sites started)."""
    app[NOTIFIER].send("READY=1", "STATUS=" + status_line(app))


async def stopping(app: web.Application) -> None:
    app[NOTIFIER].send("STOPPING=1", "STATUS=stopping")


def status_line(app: web.Application) -> str:
    """systemd's one-line STATUS=: models, requests served, last reload."""
    state = app[STATE]
    cfg = state.snap.config
    served = state.log.written + state.log.queue.qsize()
    loaded = time.strftime("%H:%M:%S", time.localtime(cfg.loaded_at))
    line = f"{len(cfg.models)} models, {served} requests served, config {cfg.sha256[:12]} loaded {loaded}"
    if state.reload_error_at is not None:
        line += f"; reload FAILED at {time.strftime('%H:%M:%S', time.localtime(state.reload_error_at))}, old config kept"
    return line


async def _record(state: State, trigger: str, sha256: str | None, error: str | None) -> None:
    """A config load in ``reloads`` (SQLite), ``/health``'s ``config.last_reload`` and the reload counts."""
    rec = {"ts": time.time(), "trigger": trigger, "sha256": sha256, "ok": error is None, "error": error}
    state.last_reload = rec
    if trigger != "start":
        state.reloads["ok" if error is None else "failed"] += 1
    await state.log.record_reload(rec)


async def reload(app: web.Application, trigger: str = "reload") -> bool:
    """Read, validate, build, swap in one step; a bad file keeps the old config. Flushes the log.

    systemd hears ``RELOADING=1`` before and ``READY=1`` after, whether the file was good or not."""
    async with app[_RELOADING]:  # (SIGHUP and --watch at once: one after the other)
        notifier = app[NOTIFIER]
        notifier.reloading()
        try:
            return await _reload(app, trigger)
        finally:
            console.flush()  # what the reload said is written before systemd hears READY=1 (and logs "Reloaded")
            notifier.send("READY=1", "STATUS=" + status_line(app))


async def _reload(app: web.Application, trigger: str) -> bool:
    state = app[STATE]
    path = state.snap.config.path
    try:
        cfg = await asyncio.to_thread(load_config, path)
        snap = Snapshot.build(cfg, state.discovery)
    except ConfigError as e:
        state.reload_error, state.reload_error_at = str(e), time.time()
        log.error("reload of %s failed, keeping the running config:\n%s", path, e)
        await _record(state, trigger, await asyncio.to_thread(service.file_digest, path), redact(str(e), state.snap.secrets))
        await state.log.flush()
        return False
    old = state.snap.config
    state.snap = snap  # the swap: requests already running keep the snapshot they took
    state.balance.configure(cfg)  # breakers of backends still there survive; key cooldowns reset
    state.discovery.kick()
    state.reload_error = state.reload_error_at = None
    if cfg.log_path != old.log_path:
        log.warning("log.path changed to %s; it takes effect on restart", cfg.log_path)
    log.info("reloaded %s (sha256 %s…, %d models, %d backends)", path.name, cfg.sha256[:12], len(cfg.models), len(cfg.backends))
    log_notes(cfg)
    await _record(state, trigger, cfg.sha256, None)
    await state.log.flush()
    return True


def log_notes(cfg: Config) -> None:
    """At start and after a reload: the fields not active yet, and what is unsafe (tls.verify: false)."""
    for note in cfg.pending:
        log.warning("not yet active: %s", note)
    for warning in cfg.warnings:
        log.warning("warning: %s", warning)


async def health(request: web.Request) -> web.Response:
    """Liveness for anyone; with ``access:`` set, the details only for the admin key (without ``access:``, for anyone)."""
    state = request.app[STATE]
    cfg = state.snap.config
    secrets = state.snap.secrets
    status = "ok" if state.reload_error is None else "degraded"
    if cfg.clients is not None and not access.is_admin(cfg, request):
        return web.json_response({"status": status, "version": __version__, "config_loaded": state.reload_error is None})
    body = {
        "status": status,
        "version": __version__,
        "uptime_s": round(time.time() - state.started, 1),
        "in_flight": state.in_flight,
        "config": {
            "path": str(cfg.path),
            "sha256": cfg.sha256,
            "loaded_at": cfg.loaded_at,
            "reload_error": redact(state.reload_error, secrets) if state.reload_error else None,
            "reload_error_at": state.reload_error_at,
            "last_reload": state.last_reload,
            "not_yet_active": list(cfg.pending),
        },
        "log": {
            "path": str(cfg.log_path),
            "written": state.log.written,
            "queued": state.log.queue.qsize(),
            "dropped": state.log.dropped,
        },
        "responses": {"kept": state.responses.count if state.responses else 0, "keep_days": cfg.responses_keep_days},
        "backends": {b.name: _backend_health(state, b) for b in cfg.backends.values()},
        "models": {m.name: _model_health(state, m.name) for m in cfg.models.values() if len(m.routes) > 1},
    }
    return web.Response(body=orjson.dumps(body, option=orjson.OPT_INDENT_2), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics`` (Prometheus text format); with ``access:`` set, only for the admin key or ``metrics_key``."""
    state = request.app[STATE]
    cfg = state.snap.config
    if cfg.clients is not None and not (access.is_admin(cfg, request) or access.key_matches(cfg.metrics_key, access.presented_key(request))):
        return web.json_response({"error": {"message": "/metrics needs access.admin_key or metrics_key (Authorization: Bearer …)",
                                            "type": "authentication_error"}}, status=401)
    return web.Response(text=state.metrics.render(state), content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})  # (text format 0.0.4's content type)


def _backend_health(state: State, b: Backend) -> dict:
    """A backend's breaker (connect-level failures), its keys by number, and its discovery listing."""
    secrets = state.snap.secrets
    out = {"api": b.api, "url": redact(b.url, secrets), "keys": len(b.keys)}
    out.update(state.balance.view_backend(b))
    routes = {m: state.balance.view_route(b, m) for m in state.balance.models_seen(b.name)}
    if routes:
        out["routes"] = routes
    if b.name in state.checks.last:
        out["health_check"] = state.checks.last[b.name].view()
    if b.discover:
        listing = state.discovery.lists.get(b.name)
        out["discovery"] = listing.view() if listing else {"state": "listing", "models": 0}
    return _redacted(out, secrets)


def _model_health(state: State, name: str) -> dict:
    """A model with several routes: its strategy and each route's state, in configured order."""
    res = state.snap.resolver.resolve(name, default=False)
    return _redacted({"strategy": res.strategy, "routes": [state.balance.view_route(t.backend, t.upstream_model) for t in res.targets]}, state.snap.secrets)


def _redacted(node, secrets):  # noqa: ANN001, ANN202 - JSON-like
    if isinstance(node, str):
        return redact(node, secrets)
    if isinstance(node, dict):
        return {k: _redacted(v, secrets) for k, v in node.items()}
    if isinstance(node, list):
        return [_redacted(v, secrets) for v in node]
    return node
