"""The admin API under /admin/api/: usage, recent requests and the config in force, for the admin key only."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from . import access, report
from .headers import redact
from .state import STATE

# config fields whose values are secrets whatever they hold (the rest is redacted by value)
_SECRET_FIELDS = frozenset({"key", "keys", "key_sha256", "admin_key", "user_jwt_secret"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/api/usage", _guarded(usage))
    app.router.add_get("/admin/api/requests", _guarded(requests))
    app.router.add_get("/admin/api/config", _guarded(config))


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body, option=orjson.OPT_INDENT_2), content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": {"message": message, "type": "authentication_error" if status == 401 else "permission_error"}}, status)


def _guarded(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """With ``access:`` set, only ``access.admin_key`` opens the admin API (a client key: 403; nothing or another key: 401)."""

    async def guarded(request: web.Request) -> web.Response:
        cfg = request.app[STATE].snap.config
        if cfg.clients is not None and not access.is_admin(cfg, request):
            if not cfg.admin_key:
                return _error(403, "the admin API needs access.admin_key in router.yaml, sent as 'Authorization: Bearer <admin_key>'")
            key = access.presented_key(request)
            try:
                client = access.authenticate(cfg, request) if key else None
            except Exception:
                client = None
            if client is not None:
                return _error(403, f"a client key (client '{client.name}') does not open the admin API; send access.admin_key")
            return _error(401, "the admin API needs access.admin_key: send 'Authorization: Bearer <admin_key>'")
        try:
            return await handler(request)
        except ValueError as e:
            return _json({"error": {"message": str(e), "type": "invalid_request_error"}}, 400)

    return guarded


def since_of(value: str | None, default: str = "7d") -> float:
    """``7d``, ``24h``, ``30m``, ``2w`` (back from now) or unix seconds."""
    s = (value or default).strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        if s and s[-1] in units:
            return time.time() - float(s[:-1]) * units[s[-1]]
        return float(s)
    except ValueError:
        raise ValueError(f"since: expected 7d, 24h, 30m or unix seconds, got {s!r}") from None


async def _query(request: web.Request, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn(connection, …)`` on a read-only connection in a thread, after the rows queued so far are written."""
    state = request.app[STATE]
    await state.log.flush()
    db = state.snap.config.log_path

    def run() -> Any:
        con = report.connect(db)
        try:
            return fn(con, *args, **kw)
        finally:
            con.close()

    return await asyncio.to_thread(run)


async def usage(request: web.Request) -> web.Response:
    by = request.query.get("by", "model")
    if by not in report.KEYS:
        raise ValueError(f"by: expected one of {', '.join(report.KEYS)}, got {by!r}")
    since = since_of(request.query.get("since"))
    return _json({"by": by, "since": int(since), "groups": await _query(request, report.usage, by, since)})


async def requests(request: web.Request) -> web.Response:
    q = request.query
    try:
        limit = min(max(int(q.get("limit", 50)), 1), 1000)
    except ValueError:
        raise ValueError(f"limit: expected a number, got {q.get('limit')!r}") from None
    status = q.get("status") or None
    if status and status != "error" and not status.isdigit():
        raise ValueError(f"status: expected a status code or 'error', got {status!r}")
    rows = await _query(request, report.recent, limit, status=status, model=q.get("model") or None, client=q.get("client") or None)
    return _json({"requests": rows})


async def config(request: web.Request) -> web.Response:
    snap = request.app[STATE].snap
    return _json({"path": str(snap.config.path), "sha256": snap.config.sha256, "loaded_at": snap.config.loaded_at,
                  "config": _hidden(snap.config.raw, snap.secrets)})


def _hidden(node: Any, secrets: tuple[str, ...], name: str | None = None) -> Any:
    """The config with secret fields as ``***`` and every configured secret redacted by value elsewhere (headers, urls)."""
    if name in _SECRET_FIELDS:
        return [_stars(v) for v in node] if isinstance(node, list) else _stars(node)
    if isinstance(node, dict):
        return {k: _hidden(v, secrets, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_hidden(v, secrets) for v in node]
    if isinstance(node, str):
        return redact(node, secrets)
    return node


def _stars(value: Any) -> Any:
    return "***" if value is not None else None
